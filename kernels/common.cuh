// Shared helpers for the CUDA kernels: bf16 <-> f32, reductions, launch checks.
// Device code only sees plain pointers; the host launchers check shapes before launching.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace llmux::kernels {

// Aborts with a message when a launcher's precondition does not hold. Launchers are called
// by the backend after it validated user input, so a failure here is a bug (an invariant).
#define LLMUX_KCHECK(cond, msg)                                                         \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: kernel precondition failed: %s (%s)\n", __FILE__,   \
                   __LINE__, #cond, msg);                                               \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

inline int CeilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

__device__ __forceinline__ float Bf16ToF32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ __nv_bfloat16 F32ToBf16(float x) { return __float2bfloat16_rn(x); }

// Butterfly sum over a warp. The shuffle pattern is fixed, so the order of the
// additions for a given lane's value set is fixed too.
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of kThreads threads (multiple of 32). All threads get the result.
// `scratch` holds at least 32 floats. Fixed order: per-warp butterflies, then warp 0 adds
// the warp totals in a butterfly too.
template <int kThreads>
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block size");
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < kWarps ? scratch[lane] : 0.0f;
  t = WarpSum(t);
  return t;
}

// kN consecutive bf16 values moved with one access of 2 * kN bytes (the address must be
// aligned to it: the launchers choose kN with AccessBytes, elementwise_plan.h).
template <int kBytes> struct RawAccess;
template <> struct RawAccess<2> { using type = uint16_t; };
template <> struct RawAccess<4> { using type = uint32_t; };
template <> struct RawAccess<8> { using type = uint2; };
template <> struct RawAccess<16> { using type = uint4; };

template <int kN>
__device__ __forceinline__ void LoadBf16(const __nv_bfloat16* p, float (&v)[kN]) {
  using Raw = typename RawAccess<2 * kN>::type;
  const Raw raw = *reinterpret_cast<const Raw*>(p);
  const auto* h = reinterpret_cast<const __nv_bfloat16*>(&raw);
#pragma unroll
  for (int e = 0; e < kN; ++e) v[e] = Bf16ToF32(h[e]);
}
template <int kN>
__device__ __forceinline__ void StoreBf16(__nv_bfloat16* p, const float (&v)[kN]) {
  using Raw = typename RawAccess<2 * kN>::type;
  Raw raw;
  auto* h = reinterpret_cast<__nv_bfloat16*>(&raw);
#pragma unroll
  for (int e = 0; e < kN; ++e) h[e] = F32ToBf16(v[e]);
  *reinterpret_cast<Raw*>(p) = raw;
}

// kN consecutive f32 values moved with one access of 4 * kN bytes (aligned to it).
template <int kN>
__device__ __forceinline__ void LoadF32(const float* p, float (&v)[kN]) {
  using Raw = typename RawAccess<4 * kN>::type;
  const Raw raw = *reinterpret_cast<const Raw*>(p);
  const auto* f = reinterpret_cast<const float*>(&raw);
#pragma unroll
  for (int e = 0; e < kN; ++e) v[e] = f[e];
}
template <int kN>
__device__ __forceinline__ void StoreF32(float* p, const float (&v)[kN]) {
  using Raw = typename RawAccess<4 * kN>::type;
  Raw raw;
  auto* f = reinterpret_cast<float*>(&raw);
#pragma unroll
  for (int e = 0; e < kN; ++e) f[e] = v[e];
  *reinterpret_cast<Raw*>(p) = raw;
}

// Copies `bytes` (a multiple of kBytes; both pointers kBytes-aligned) with kBytes accesses,
// threads [tid, tid + threads, ...).
template <int kBytes>
__device__ __forceinline__ void CopyRow(void* dst, const void* src, int64_t bytes, int tid,
                                        int threads) {
  using Raw = typename RawAccess<kBytes>::type;
  const Raw* s = static_cast<const Raw*>(src);
  Raw* d = static_cast<Raw*>(dst);
  const int64_t n = bytes / kBytes;
  for (int64_t i = tid; i < n; i += threads) d[i] = s[i];
}

}  // namespace llmux::kernels
