// Paged attention on tensor cores: one block per (query tile, kv head, split). A query tile is
// up to kAttnTileRows / group consecutive tokens of one sequence inside one 64-position window
// (see attention_split.h), so the block's rows are (token, query head of the group) pairs: a
// prefill chunk shares each K/V tile among up to 64 rows, a decode token's block holds its
// group's heads. K/V tiles of kAttnTileKeys keys are loaded with cp.async into a double buffer
// (the next tile streams in while this one is computed); scores S = Q K^T and the update
// O += P V run as mma.sync m16n8k16 (bf16 inputs, f32 accumulation), with P rounded to bf16 for
// the PV product (as FlashAttention-2 does); the online softmax runs in f32 per row. Splits are
// combined in index order by a second kernel.
//
// NOTE: batch invariance. Every token, prefill or decode, goes through this one kernel, and a
// row's arithmetic depends on the row alone: its split (AttnSplitFor of its own context, the
// same for every token of its 64-position window), the key tiles of that split in increasing
// order, its own mask, and per-row reductions over the same lanes in the same order. What the
// other rows of the tile are changes nothing in it, with two properties of the hardware that
// the GPU tests check (decode alone == the same position inside a prefill chunk, bit for bit):
// an mma output element depends only on its own row of A and column of B, whichever of the 16
// rows it sits in; and a key tile wholly past a row's end (present when a later row of the tile
// needs it) leaves the row unchanged: its p are 0, alpha is exactly 1, and the mma adds zero
// products to an f32 accumulator.
#include "attention_split.h"
#include "common.cuh"
#include "paged_attention.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 128;  // 4 warps x 16 rows = kAttnTileRows
constexpr int kWarps = kThreads / 32;
static_assert(kWarps * 16 == kAttnTileRows, "one m16 row block per warp");
static_assert(kAttnTileKeys == 64, "the score tile is 8 n8 tiles");
constexpr int kKeyN8 = kAttnTileKeys / 8;    // n8 tiles of scores per key tile
constexpr int kKeyK16 = kAttnTileKeys / 16;  // k16 steps of the PV product per key tile

// head_dim rounded up to 16 (the mma's k), and the padded smem row (8 bf16 = 16 bytes more:
// keeps cp.async destinations 16-byte aligned and makes the 8 rows of a fragment load fall on
// distinct banks).
__host__ __device__ constexpr int PaddedHd(int hd) { return (hd + 15) / 16 * 16; }
__host__ __device__ constexpr int RowStride(int hd) { return PaddedHd(hd) + 8; }

size_t SmemBytes(int head_dim) {
  // Q [kAttnTileRows], K and V [2 stages][kAttnTileKeys] rows of RowStride bf16 each.
  return static_cast<size_t>(kAttnTileRows + 4 * kAttnTileKeys) * RowStride(head_dim) * 2;
}

__device__ __forceinline__ uint32_t LoadU32(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t PackBf16(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  __nv_bfloat162 v;
  v.x = lo;
  v.y = hi;
  return *reinterpret_cast<uint32_t*>(&v);
}

// d[0..3] += A[16x16] * B[16x8]; fragments as the PTX ISA lays out m16n8k16 (.row.col):
// lane = 4 * g + i (g = groupID, i = thread in group);
//   a0: A[g][2i, 2i+1]   a1: A[g+8][2i, 2i+1]   a2: A[g][2i+8, +9]   a3: A[g+8][2i+8, +9]
//   b0: B[2i, 2i+1][g]   b1: B[2i+8, 2i+9][g]
//   d0, d1: D[g][2i, 2i+1]   d2, d3: D[g+8][2i, 2i+1]
__device__ __forceinline__ void Mma(float* d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                    uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros (no global read).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// kHdTiles: head_dim / 8 at most (the output accumulator is kHdTiles n8 tiles per warp).
template <int kHdTiles>
__global__ void __launch_bounds__(kThreads) PagedAttentionTileKernel(PagedAttentionArgs a) {
  extern __shared__ uint4 smem_u4[];
  const int hd = a.head_dim;
  const int hdp = PaddedHd(hd);
  const int rs = RowStride(hd);
  __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(smem_u4);  // [kAttnTileRows][rs]
  __nv_bfloat16* k_s = q_s + kAttnTileRows * rs;                   // [2][kAttnTileKeys][rs]
  __nv_bfloat16* v_s = k_s + 2 * kAttnTileKeys * rs;               // [2][kAttnTileKeys][rs]

  // (first token, within the launch; token count) of this block's query tile.
  const int2 tile = make_int2(a.tiles[2 * blockIdx.x], a.tiles[2 * blockIdx.x + 1]);
  const int kvh = blockIdx.y;
  const int z = blockIdx.z;
  const int group = a.num_heads / a.num_kv_heads;
  const int rows = tile.y * group;
  const int last_pos = a.positions[tile.x + tile.y - 1];
  // Every token of the tile has the same split (one 64-position window).
  const AttnSplit split = AttnSplitFor(last_pos + 1);
  if (z >= split.num_splits) return;
  const int key_begin = z * split.split_len;
  const int key_end = min(last_pos + 1, key_begin + split.split_len);  // the tile's last row

  // Q rows (token tile.x + r / group, head kvh * group + r % group); rows past the tile and the
  // head_dim padding are zero. K's padding columns are zeroed once (cp.async never writes them).
  for (int e = threadIdx.x; e < kAttnTileRows * hdp; e += kThreads) {
    const int r = e / hdp;
    const int d = e % hdp;
    __nv_bfloat16 v = __float2bfloat16_rn(0.0f);
    if (r < rows && d < hd) {
      const int t = tile.x + r / group;
      v = static_cast<const __nv_bfloat16*>(a.q)[t * a.q_stride +
                                                 (kvh * group + r % group) * hd + d];
    }
    q_s[r * rs + d] = v;
  }
  for (int e = threadIdx.x; e < 2 * kAttnTileKeys * (hdp - hd); e += kThreads) {
    const int r = e / (hdp - hd);
    k_s[r * rs + hd + e % (hdp - hd)] = __float2bfloat16_rn(0.0f);
  }

  const int32_t* table = a.block_tables + static_cast<int64_t>(a.token_seq[tile.x]) *
                                              a.block_table_stride;
  const int chunks = hd / 8;  // 16-byte chunks per K/V row
  const int64_t kv_row = static_cast<int64_t>(a.num_kv_heads) * hd;
  // Issues the loads of the key tile starting at `key0` into `stage`; keys past key_end are
  // zero-filled (V rows must be finite: a zero p times a NaN would poison the product).
  auto load_tile = [&](int key0, int stage) {
    __nv_bfloat16* kd = k_s + stage * kAttnTileKeys * rs;
    __nv_bfloat16* vd = v_s + stage * kAttnTileKeys * rs;
    for (int c = threadIdx.x; c < kAttnTileKeys * chunks; c += kThreads) {
      const int kk = c / chunks;
      const int ch = c % chunks;
      const int pos = key0 + kk;
      const bool valid = pos < key_end;
      int64_t elem = 0;
      if (valid) {
        const int64_t block = table[pos / a.block_size];
        elem = (block * a.block_size + pos % a.block_size) * kv_row +
               static_cast<int64_t>(kvh) * hd + ch * 8;
      }
      CpAsync16(kd + kk * rs + ch * 8, static_cast<const __nv_bfloat16*>(a.k_cache) + elem,
                valid ? 16 : 0);
      CpAsync16(vd + kk * rs + ch * 8, static_cast<const __nv_bfloat16*>(a.v_cache) + elem,
                valid ? 16 : 0);
    }
    CpAsyncCommit();
  };

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;  // fragment row (and row + 8)
  const int i = lane & 3;   // fragment column pair
  const int row0 = warp * 16 + g;
  const int row1 = row0 + 8;
  const bool warp_active = warp * 16 < rows;
  // A row attends keys [key_begin, its end): its own position + 1, or the split's end.
  auto row_end = [&](int r) {
    if (r >= rows) return key_begin;  // padding row: no key
    return min(a.positions[tile.x + r / group] + 1, key_begin + split.split_len);
  };
  const int end0 = row_end(row0);
  const int end1 = row_end(row1);

  float o[kHdTiles][4];
#pragma unroll
  for (int j = 0; j < kHdTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  const int num_tiles = (key_end - key_begin + kAttnTileKeys - 1) / kAttnTileKeys;
  load_tile(key_begin, 0);
  for (int it = 0; it < num_tiles; ++it) {
    const int stage = it & 1;
    const int key0 = key_begin + it * kAttnTileKeys;
    if (it + 1 < num_tiles) {
      load_tile(key0 + kAttnTileKeys, stage ^ 1);  // that stage was released at the end of it-1
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // this tile (and, at it == 0, Q and the padding) visible to all warps
    if (warp_active) {
      const __nv_bfloat16* kt = k_s + stage * kAttnTileKeys * rs;
      const __nv_bfloat16* vt = v_s + stage * kAttnTileKeys * rs;
      // S[16 rows][64 keys] = Q K^T, k-steps over head_dim in increasing order.
      float s[kKeyN8][4];
#pragma unroll
      for (int j = 0; j < kKeyN8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
      for (int kc = 0; kc < hdp; kc += 16) {
        const __nv_bfloat16* qa = q_s + row0 * rs + kc + 2 * i;
        const uint32_t a0 = LoadU32(qa);
        const uint32_t a1 = LoadU32(qa + 8 * rs);
        const uint32_t a2 = LoadU32(qa + 8);
        const uint32_t a3 = LoadU32(qa + 8 * rs + 8);
#pragma unroll
        for (int j = 0; j < kKeyN8; ++j) {
          const __nv_bfloat16* kb = kt + (j * 8 + g) * rs + kc + 2 * i;
          Mma(s[j], a0, a1, a2, a3, LoadU32(kb), LoadU32(kb + 8));
        }
      }
      // Scale and mask; online softmax per row (the quad of lanes 4g..4g+3 holds a row).
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeyN8; ++j) {
        const int key = key0 + j * 8 + 2 * i;
        s[j][0] = key < end0 ? s[j][0] * a.scale : -INFINITY;
        s[j][1] = key + 1 < end0 ? s[j][1] * a.scale : -INFINITY;
        s[j][2] = key < end1 ? s[j][2] * a.scale : -INFINITY;
        s[j][3] = key + 1 < end1 ? s[j][3] * a.scale : -INFINITY;
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      const float mn0 = fmaxf(m0, mx0);
      const float mn1 = fmaxf(m1, mx1);
      // A row with no key yet (only padding rows: every real row's first tile holds a key)
      // uses 0 as the base so that exp(-inf - base) is 0, not NaN.
      const float base0 = mn0 == -INFINITY ? 0.0f : mn0;
      const float base1 = mn1 == -INFINITY ? 0.0f : mn1;
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int j = 0; j < kKeyN8; ++j) {
        s[j][0] = expf(s[j][0] - base0);
        s[j][1] = expf(s[j][1] - base0);
        s[j][2] = expf(s[j][2] - base1);
        s[j][3] = expf(s[j][3] - base1);
        sum0 += s[j][0];
        sum0 += s[j][1];
        sum1 += s[j][2];
        sum1 += s[j][3];
      }
      sum0 += __shfl_xor_sync(0xffffffffu, sum0, 1);
      sum0 += __shfl_xor_sync(0xffffffffu, sum0, 2);
      sum1 += __shfl_xor_sync(0xffffffffu, sum1, 1);
      sum1 += __shfl_xor_sync(0xffffffffu, sum1, 2);
      const float alpha0 = expf(m0 - base0);
      const float alpha1 = expf(m1 - base1);
      l0 = __fadd_rn(__fmul_rn(l0, alpha0), sum0);
      l1 = __fadd_rn(__fmul_rn(l1, alpha1), sum1);
      m0 = mn0;
      m1 = mn1;
#pragma unroll
      for (int j = 0; j < kHdTiles; ++j) {
        o[j][0] = __fmul_rn(o[j][0], alpha0);
        o[j][1] = __fmul_rn(o[j][1], alpha0);
        o[j][2] = __fmul_rn(o[j][2], alpha1);
        o[j][3] = __fmul_rn(o[j][3], alpha1);
      }
      // O[16 rows][hd] += P V, k-steps over the tile's keys in increasing order. The score
      // fragments of keys 16kc..16kc+15 (n8 tiles 2kc, 2kc+1) are exactly P's A fragment.
#pragma unroll
      for (int kc = 0; kc < kKeyK16; ++kc) {
        const uint32_t a0 = PackBf16(s[2 * kc][0], s[2 * kc][1]);
        const uint32_t a1 = PackBf16(s[2 * kc][2], s[2 * kc][3]);
        const uint32_t a2 = PackBf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        const uint32_t a3 = PackBf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
        const __nv_bfloat16* vb = vt + (kc * 16 + 2 * i) * rs + g;
#pragma unroll
        for (int j = 0; j < kHdTiles; ++j) {
          if (j * 8 >= hd) break;
          const __nv_bfloat16* v = vb + j * 8;
          Mma(o[j], a0, a1, a2, a3, PackBf16(v[0], v[rs]), PackBf16(v[8 * rs], v[9 * rs]));
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  if (!warp_active) return;
  const int head0 = kvh * group;
  float* ws_acc = a.workspace;
  float* ws_ml = a.workspace + static_cast<size_t>(a.num_tokens) * a.num_heads *
                                   kAttnMaxSplits * hd;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = half == 0 ? row0 : row1;
    if (r >= rows) continue;
    const int t = tile.x + r / group;
    const int head = head0 + r % group;
    const float m = half == 0 ? m0 : m1;
    const float l = half == 0 ? l0 : l1;
    if (split.num_splits == 1) {
      __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out) + t * a.out_stride +
                           static_cast<int64_t>(head) * hd;
#pragma unroll
      for (int j = 0; j < kHdTiles; ++j) {
        if (j * 8 >= hd) break;
        out[j * 8 + 2 * i] = F32ToBf16(__fdiv_rn(o[j][2 * half], l));
        out[j * 8 + 2 * i + 1] = F32ToBf16(__fdiv_rn(o[j][2 * half + 1], l));
      }
      continue;
    }
    const int64_t part = (static_cast<int64_t>(t) * a.num_heads + head) * kAttnMaxSplits + z;
#pragma unroll
    for (int j = 0; j < kHdTiles; ++j) {
      if (j * 8 >= hd) break;
      ws_acc[part * hd + j * 8 + 2 * i] = o[j][2 * half];
      ws_acc[part * hd + j * 8 + 2 * i + 1] = o[j][2 * half + 1];
    }
    if (i == 0) {
      ws_ml[part * 2] = m;
      ws_ml[part * 2 + 1] = l;
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

template <typename F>
cudaError_t ForHeadDim(int head_dim, F&& f) {
  if (head_dim <= 32) return f(PagedAttentionTileKernel<4>);
  if (head_dim <= 64) return f(PagedAttentionTileKernel<8>);
  if (head_dim <= 128) return f(PagedAttentionTileKernel<16>);
  return f(PagedAttentionTileKernel<32>);
}

}  // namespace

size_t PagedAttentionWorkspaceFloats(int num_tokens, int num_heads, int head_dim) {
  return static_cast<size_t>(num_tokens) * num_heads * kAttnMaxSplits * (head_dim + 2);
}

size_t PagedAttentionSmemBytes(int head_dim) { return SmemBytes(head_dim); }

cudaError_t PagedAttentionInit() {
  int device = 0;
  int optin = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  const int need = static_cast<int>(SmemBytes(kAttnMaxHeadDim));
  const int limit = need < optin ? need : optin;
  for (int hd : {32, 64, 128, kAttnMaxHeadDim}) {
    err = ForHeadDim(hd, [&](auto kernel) {
      return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
    });
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

cudaError_t LaunchPagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  LLMUX_KCHECK(a.q && a.out && a.k_cache && a.v_cache && a.token_seq && a.positions &&
                   a.block_tables && a.tiles,
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
  LLMUX_KCHECK(a.num_tiles >= 0 && a.num_tiles <= a.num_tokens, "attention tiles");
  if (a.num_tokens == 0) return cudaSuccess;
  const dim3 grid(a.num_tiles, a.num_kv_heads, a.max_splits);
  const size_t smem = SmemBytes(a.head_dim);
  cudaError_t err = ForHeadDim(a.head_dim, [&](auto kernel) {
    kernel<<<grid, kThreads, smem, stream>>>(a);
    return cudaGetLastError();
  });
  if (err != cudaSuccess || a.max_splits == 1) return err;
  const dim3 cgrid(a.num_tokens, a.num_heads);
  const int cthreads = (a.head_dim + 31) / 32 * 32;
  PagedAttentionCombineKernel<<<cgrid, cthreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
