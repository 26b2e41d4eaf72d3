#include "common.cuh"
#include "gemm_fallback.cuh"

namespace llmux::kernels {
namespace {

constexpr int kBm = 64;
constexpr int kBn = kGemmFallbackTileN;
constexpr int kBk = 16;
constexpr int kThreads = 256;  // 16 x 16, each thread 4 x 4 outputs

__device__ __forceinline__ void StoreOut(float* p, float v) { *p = v; }
__device__ __forceinline__ void StoreOut(__nv_bfloat16* p, float v) { *p = F32ToBf16(v); }

template <typename OutT>
__global__ void __launch_bounds__(kThreads)
    GemmFallbackKernel(const __nv_bfloat16* __restrict__ x, int64_t x_stride,
                       const __nv_bfloat16* __restrict__ w, int64_t w_stride,
                       OutT* __restrict__ out, int64_t out_stride, int m, int n, int k) {
  __shared__ float xs[kBk][kBm];
  __shared__ float ws[kBk][kBn];
  const int tx = threadIdx.x % 16;
  const int ty = threadIdx.x / 16;
  const int m0 = blockIdx.y * kBm;
  const int n0 = blockIdx.x * kBn;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < k; k0 += kBk) {
    for (int e = threadIdx.x; e < kBm * kBk; e += kThreads) {
      const int r = e / kBk;
      const int c = e % kBk;
      const int gk = k0 + c;
      xs[c][r] = (m0 + r < m && gk < k) ? Bf16ToF32(x[(m0 + r) * x_stride + gk]) : 0.0f;
      ws[c][r] = (n0 + r < n && gk < k) ? Bf16ToF32(w[(n0 + r) * w_stride + gk]) : 0.0f;
    }
    __syncthreads();
    const int kmax = min(kBk, k - k0);
    for (int kk = 0; kk < kmax; ++kk) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          acc[i][j] = fmaf(xs[kk][ty + 16 * i], ws[kk][tx + 16 * j], acc[i][j]);
        }
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = m0 + ty + 16 * i;
    if (r >= m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = n0 + tx + 16 * j;
      if (c < n) StoreOut(out + r * out_stride + c, acc[i][j]);
    }
  }
}

}  // namespace

cudaError_t LaunchGemmFallback(const void* x, int64_t x_stride, const void* w, int64_t w_stride,
                               void* out, int64_t out_stride, bool out_is_f32, int m, int n,
                               int k, cudaStream_t stream) {
  LLMUX_KCHECK(x != nullptr && w != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(n > 0 && k > 0 && x_stride >= k && w_stride >= k && out_stride >= n,
               "gemm shape");
  LLMUX_KCHECK(CeilDiv(m, kBm) <= 65535, "gemm_fallback: M too large for one launch");
  if (m == 0) return cudaSuccess;
  const dim3 grid(CeilDiv(n, kBn), CeilDiv(m, kBm));
  const auto* xb = static_cast<const __nv_bfloat16*>(x);
  const auto* wb = static_cast<const __nv_bfloat16*>(w);
  if (out_is_f32) {
    GemmFallbackKernel<float><<<grid, kThreads, 0, stream>>>(
        xb, x_stride, wb, w_stride, static_cast<float*>(out), out_stride, m, n, k);
  } else {
    GemmFallbackKernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(
        xb, x_stride, wb, w_stride, static_cast<__nv_bfloat16*>(out), out_stride, m, n, k);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
