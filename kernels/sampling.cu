// One block per row. The top-k and top-p thresholds are found by bisection over the
// order-preserving integer image of the logits (32 block-wide passes each), so no sort and no
// per-row scratch memory are needed; all reductions have a fixed order.
#include "common.cuh"
#include "sampling.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 1024;

__host__ __device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__host__ __device__ __forceinline__ float UniformFromSeed(uint64_t seed) {
  return static_cast<float>(SplitMix64(seed) >> 40) * (1.0f / 16777216.0f);
}

// Monotone map float -> uint32: a < b  <=>  Key(a) < Key(b) (for non-NaN values).
__device__ __forceinline__ uint32_t Key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ int BlockCount(int v, int* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  int t = scratch[lane];  // kThreads / 32 == 32 warps
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

__global__ void __launch_bounds__(kThreads)
    SamplingKernel(const float* __restrict__ logits, int64_t stride,
                   const SamplingRow* __restrict__ params, int32_t* __restrict__ out,
                   int vocab) {
  __shared__ float fscratch[32];
  __shared__ int iscratch[32];
  __shared__ float chunk_sum[kThreads];
  __shared__ float chunk_prefix[kThreads + 1];
  __shared__ int best_idx[32];
  __shared__ float best_val[32];
  __shared__ int picked;

  const float* l = logits + blockIdx.x * stride;
  const SamplingRow p = params[blockIdx.x];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;

  // Argmax (lowest id on ties): the greedy answer and the fallback.
  float bv = -INFINITY;
  int bi = vocab;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (l[i] > bv) {
      bv = l[i];
      bi = i;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) {
      bv = ov;
      bi = oi;
    }
  }
  if (lane == 0) {
    best_val[warp] = bv;
    best_idx[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    bv = best_val[lane];
    bi = best_idx[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      best_val[0] = bv;
      best_idx[0] = bi < vocab ? bi : 0;
    }
  }
  __syncthreads();
  const float lmax = best_val[0];
  const int argmax = best_idx[0];
  if (p.temperature <= 0.0f || p.top_k == 1) {
    if (threadIdx.x == 0) out[blockIdx.x] = argmax;
    return;
  }
  const float inv_t = 1.0f / p.temperature;

  // Top-k threshold: the largest key with at least k keys >= it (the k-th largest key).
  uint32_t thr = 0;
  if (p.top_k > 0 && p.top_k < vocab) {
    uint32_t prefix = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = prefix | (1u << bit);
      int cnt = 0;
      for (int i = threadIdx.x; i < vocab; i += kThreads) cnt += Key(l[i]) >= cand ? 1 : 0;
      if (BlockCount(cnt, iscratch) >= p.top_k) prefix = cand;
    }
    thr = prefix;
  }
  // Top-p threshold over the top-k survivors.
  if (p.top_p > 0.0f && p.top_p < 1.0f) {
    float mass = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      if (Key(l[i]) >= thr) mass += expf((l[i] - lmax) * inv_t);
    }
    const float target = p.top_p * BlockSum<kThreads>(mass, fscratch);
    uint32_t prefix = 0;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = prefix | (1u << bit);
      const uint32_t t = cand > thr ? cand : thr;
      float m = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        if (Key(l[i]) >= t) m += expf((l[i] - lmax) * inv_t);
      }
      if (BlockSum<kThreads>(m, fscratch) >= target) prefix = cand;
    }
    thr = prefix > thr ? prefix : thr;
  }

  // Inverse-CDF draw over the kept tokens in id order: contiguous chunks per thread.
  const int chunk = (vocab + kThreads - 1) / kThreads;
  const int begin = min(vocab, threadIdx.x * chunk);
  const int end = min(vocab, begin + chunk);
  float s = 0.0f;
  for (int i = begin; i < end; ++i) {
    if (Key(l[i]) >= thr) s += expf((l[i] - lmax) * inv_t);
  }
  chunk_sum[threadIdx.x] = s;
  if (threadIdx.x == 0) picked = -1;
  __syncthreads();
  if (threadIdx.x == 0) {
    float acc = 0.0f;
    for (int i = 0; i < kThreads; ++i) {
      chunk_prefix[i] = acc;
      acc += chunk_sum[i];
    }
    chunk_prefix[kThreads] = acc;
  }
  __syncthreads();
  const float u = UniformFromSeed(p.seed) * chunk_prefix[kThreads];
  const float lo = chunk_prefix[threadIdx.x];
  if (s > 0.0f && lo <= u && u < lo + s) {
    float cum = lo;
    int last = -1;
    int pick = -1;
    for (int i = begin; i < end; ++i) {
      if (Key(l[i]) < thr) continue;
      last = i;
      cum += expf((l[i] - lmax) * inv_t);
      if (cum > u) {
        pick = i;
        break;
      }
    }
    // NOTE: rounding can leave the re-summed chunk just short of u; the chunk's last kept
    // token is the right answer then (u lies inside this chunk's mass).
    atomicMax(&picked, pick >= 0 ? pick : last);
  }
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = picked >= 0 ? picked : argmax;
}

}  // namespace

float SamplingUniform(uint64_t seed) { return UniformFromSeed(seed); }

cudaError_t LaunchSampling(const float* logits, int64_t stride, const SamplingRow* params,
                           int32_t* out, int rows, int vocab, cudaStream_t stream) {
  LLMUX_KCHECK(logits != nullptr && params != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(vocab > 0 && stride >= vocab, "sampling shape");
  if (rows == 0) return cudaSuccess;
  SamplingKernel<<<rows, kThreads, 0, stream>>>(logits, stride, params, out, vocab);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
