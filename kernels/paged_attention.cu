// Paged attention: one block per (query token, kv head, split). The block holds the group's
// query heads (GQA: each K/V row loaded once serves every query head of the group), stages
// kAttnTileKeys keys of K and V in shared memory, and runs an online softmax over its split.
// Splits are combined in index order by a second kernel (see attention_split.h).
#include "attention_split.h"
#include "common.cuh"
#include "paged_attention.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

size_t SmemBytes(int group, int head_dim) {
  const size_t floats = 2ull * group * head_dim + static_cast<size_t>(group) * kAttnTileKeys;
  const size_t k_words = static_cast<size_t>(kAttnTileKeys) * (head_dim / 2 + 1);
  const size_t v_bytes = static_cast<size_t>(kAttnTileKeys) * head_dim * 2;
  return floats * 4 + k_words * 4 + v_bytes;
}

__device__ __forceinline__ float2 UnpackBf16x2(uint32_t w) {
  __nv_bfloat162 b = *reinterpret_cast<__nv_bfloat162*>(&w);
  return __bfloat1622float2(b);
}

__global__ void __launch_bounds__(kThreads)
    PagedAttentionSplitKernel(PagedAttentionArgs a) {
  extern __shared__ float4 smem4[];
  __shared__ float m_s[kAttnMaxGroup];
  __shared__ float l_s[kAttnMaxGroup];
  __shared__ float alpha_s[kAttnMaxGroup];

  const int t = blockIdx.x;
  const int kvh = blockIdx.y;
  const int z = blockIdx.z;
  const int hd = a.head_dim;
  const int group = a.num_heads / a.num_kv_heads;
  const int context = a.positions[t] + 1;
  const AttnSplit split = AttnSplitFor(context);
  if (z >= split.num_splits) return;
  const int key_begin = z * split.split_len;
  const int key_end = min(context, key_begin + split.split_len);

  float* q_s = reinterpret_cast<float*>(smem4);   // [group, hd]
  float* acc_s = q_s + group * hd;                  // [group, hd]
  float* s_s = acc_s + group * hd;                  // [group, kAttnTileKeys]
  uint32_t* k_s = reinterpret_cast<uint32_t*>(s_s + group * kAttnTileKeys);
  const int k_row_words = hd / 2 + 1;  // NOTE: one word of padding: conflict-free row reads
  __nv_bfloat16* v_s = reinterpret_cast<__nv_bfloat16*>(k_s + kAttnTileKeys * k_row_words);

  const __nv_bfloat16* q = static_cast<const __nv_bfloat16*>(a.q) + t * a.q_stride +
                           static_cast<int64_t>(kvh) * group * hd;
  for (int e = threadIdx.x; e < group * hd; e += kThreads) {
    q_s[e] = Bf16ToF32(q[e]);
    acc_s[e] = 0.0f;
  }
  if (threadIdx.x < group) {
    m_s[threadIdx.x] = -INFINITY;
    l_s[threadIdx.x] = 0.0f;
  }

  const int32_t* table = a.block_tables + static_cast<int64_t>(a.token_seq[t]) *
                                              a.block_table_stride;
  const int chunks_per_key = hd / 8;
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * hd;
  const uint4* k_cache = static_cast<const uint4*>(a.k_cache);
  const uint4* v_cache = static_cast<const uint4*>(a.v_cache);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;

  for (int tile = key_begin; tile < key_end; tile += kAttnTileKeys) {
    const int n = min(kAttnTileKeys, key_end - tile);
    __syncthreads();  // previous tile fully consumed; q_s/acc_s/m_s initialised
    for (int c = threadIdx.x; c < n * chunks_per_key; c += kThreads) {
      const int kk = c / chunks_per_key;
      const int ch = c % chunks_per_key;
      const int pos = tile + kk;
      const int64_t block = table[pos / a.block_size];
      const int64_t elem = ((block * a.block_size + pos % a.block_size) * kv_row +
                            static_cast<int64_t>(kvh) * hd) + ch * 8;
      const uint4 kv = k_cache[elem / 8];
      const uint4 vv = v_cache[elem / 8];
      uint32_t* kd = k_s + kk * k_row_words + ch * 4;
      kd[0] = kv.x;
      kd[1] = kv.y;
      kd[2] = kv.z;
      kd[3] = kv.w;
      *reinterpret_cast<uint4*>(v_s + kk * hd + ch * 8) = vv;
    }
    __syncthreads();
    // Scores: s[g, kk] = scale * dot(q[g], k[kk]), summed over d in order.
    for (int idx = threadIdx.x; idx < group * n; idx += kThreads) {
      const int g = idx / n;
      const int kk = idx % n;
      const float* qg = q_s + g * hd;
      const uint32_t* kr = k_s + kk * k_row_words;
      float dot = 0.0f;
      for (int w = 0; w < hd / 2; ++w) {
        const float2 kf = UnpackBf16x2(kr[w]);
        dot = fmaf(qg[2 * w], kf.x, dot);
        dot = fmaf(qg[2 * w + 1], kf.y, dot);
      }
      s_s[g * kAttnTileKeys + kk] = dot * a.scale;
    }
    __syncthreads();
    // Online softmax update, one warp per query head of the group.
    for (int g = warp; g < group; g += kWarps) {
      float* sg = s_s + g * kAttnTileKeys;
      float tmax = -INFINITY;
      for (int kk = lane; kk < n; kk += 32) tmax = fmaxf(tmax, sg[kk]);
      tmax = WarpMax(tmax);
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, tmax);
      float psum = 0.0f;
      for (int kk = lane; kk < n; kk += 32) {
        const float p = expf(sg[kk] - m_new);
        sg[kk] = p;
        psum += p;
      }
      psum = WarpSum(psum);
      if (lane == 0) {
        const float alpha = expf(m_old - m_new);
        alpha_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + psum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // acc[g, d] = acc[g, d] * alpha[g] + sum_kk p[g, kk] * v[kk, d], kk in order.
    for (int e = threadIdx.x; e < group * hd; e += kThreads) {
      const int g = e / hd;
      const int d = e % hd;
      const float* pg = s_s + g * kAttnTileKeys;
      float acc = acc_s[e] * alpha_s[g];
      for (int kk = 0; kk < n; ++kk) acc = fmaf(pg[kk], Bf16ToF32(v_s[kk * hd + d]), acc);
      acc_s[e] = acc;
    }
  }
  __syncthreads();

  const int head0 = kvh * group;
  if (split.num_splits == 1) {
    __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out) + t * a.out_stride +
                         static_cast<int64_t>(head0) * hd;
    for (int e = threadIdx.x; e < group * hd; e += kThreads) {
      out[e] = F32ToBf16(__fdiv_rn(acc_s[e], l_s[e / hd]));
    }
    return;
  }
  float* ws_acc = a.workspace;
  float* ws_ml = a.workspace + static_cast<size_t>(a.num_tokens) * a.num_heads *
                                   kAttnMaxSplits * hd;
  for (int e = threadIdx.x; e < group * hd; e += kThreads) {
    const int g = e / hd;
    const int64_t part = (static_cast<int64_t>(t) * a.num_heads + head0 + g) * kAttnMaxSplits + z;
    ws_acc[part * hd + e % hd] = acc_s[e];
    if (e % hd == 0) {
      ws_ml[part * 2] = m_s[g];
      ws_ml[part * 2 + 1] = l_s[g];
    }
  }
}

// Folds a token's splits left to right: (m, l, acc) pairs merged with rescaling, then
// normalised. The explicit _rn intrinsics keep the arithmetic free of FMA contraction.
__global__ void PagedAttentionCombineKernel(PagedAttentionArgs a) {
  const int t = blockIdx.x;
  const int h = blockIdx.y;
  const int d = threadIdx.x;
  const int hd = a.head_dim;
  const AttnSplit split = AttnSplitFor(a.positions[t] + 1);
  if (split.num_splits == 1 || d >= hd) return;
  const float* ws_acc = a.workspace;
  const float* ws_ml = a.workspace + static_cast<size_t>(a.num_tokens) * a.num_heads *
                                         kAttnMaxSplits * hd;
  const int64_t part0 = (static_cast<int64_t>(t) * a.num_heads + h) * kAttnMaxSplits;
  float m = ws_ml[part0 * 2];
  float l = ws_ml[part0 * 2 + 1];
  float acc = ws_acc[part0 * hd + d];
  for (int i = 1; i < split.num_splits; ++i) {
    const float mi = ws_ml[(part0 + i) * 2];
    const float li = ws_ml[(part0 + i) * 2 + 1];
    const float ai = ws_acc[(part0 + i) * hd + d];
    const float mn = fmaxf(m, mi);
    const float ea = expf(m - mn);
    const float eb = expf(mi - mn);
    l = __fadd_rn(__fmul_rn(l, ea), __fmul_rn(li, eb));
    acc = __fadd_rn(__fmul_rn(acc, ea), __fmul_rn(ai, eb));
    m = mn;
  }
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out) + t * a.out_stride +
                       static_cast<int64_t>(h) * hd;
  out[d] = F32ToBf16(__fdiv_rn(acc, l));
}

}  // namespace

size_t PagedAttentionWorkspaceFloats(int num_tokens, int num_heads, int head_dim) {
  return static_cast<size_t>(num_tokens) * num_heads * kAttnMaxSplits * (head_dim + 2);
}

cudaError_t PagedAttentionInit() {
  return cudaFuncSetAttribute(PagedAttentionSplitKernel,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(SmemBytes(kAttnMaxGroup, kAttnMaxHeadDim)));
}

cudaError_t LaunchPagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  LLMUX_KCHECK(a.q && a.out && a.k_cache && a.v_cache && a.token_seq && a.positions &&
                   a.block_tables,
               "null pointer");
  LLMUX_KCHECK(a.num_kv_heads > 0 && a.num_heads % a.num_kv_heads == 0 &&
                   a.num_heads / a.num_kv_heads <= kAttnMaxGroup,
               "attention head counts");
  LLMUX_KCHECK(a.head_dim > 0 && a.head_dim % 8 == 0 && a.head_dim <= kAttnMaxHeadDim,
               "attention head_dim must be a multiple of 8 and at most 256");
  LLMUX_KCHECK(a.block_size > 0 && a.block_table_stride > 0, "attention block table");
  LLMUX_KCHECK(a.max_splits >= 1 && a.max_splits <= kAttnMaxSplits, "attention splits");
  LLMUX_KCHECK(a.max_splits == 1 || a.workspace != nullptr, "attention workspace");
  LLMUX_KCHECK(a.q_stride >= static_cast<int64_t>(a.num_heads) * a.head_dim &&
                   a.out_stride >= static_cast<int64_t>(a.num_heads) * a.head_dim,
               "attention strides");
  if (a.num_tokens == 0) return cudaSuccess;
  const int group = a.num_heads / a.num_kv_heads;
  const dim3 grid(a.num_tokens, a.num_kv_heads, a.max_splits);
  PagedAttentionSplitKernel<<<grid, kThreads, SmemBytes(group, a.head_dim), stream>>>(a);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || a.max_splits == 1) return err;
  const dim3 cgrid(a.num_tokens, a.num_heads);
  const int cthreads = (a.head_dim + 31) / 32 * 32;
  PagedAttentionCombineKernel<<<cgrid, cthreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
