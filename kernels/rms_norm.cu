#include "common.cuh"
#include "rms_norm.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void RmsNormKernel(const __nv_bfloat16* x, int64_t x_stride,
                              const float* weight, float eps,
                              __nv_bfloat16* out, int64_t out_stride, int cols) {
  __shared__ float scratch[32];
  const __nv_bfloat16* xr = x + blockIdx.x * x_stride;
  __nv_bfloat16* orow = out + blockIdx.x * out_stride;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < cols; i += kThreads) {
    const float v = Bf16ToF32(xr[i]);
    ss = fmaf(v, v, ss);
  }
  ss = BlockSum<kThreads>(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
  for (int i = threadIdx.x; i < cols; i += kThreads) {
    orow[i] = F32ToBf16(Bf16ToF32(xr[i]) * inv * weight[i]);
  }
}

}  // namespace

cudaError_t LaunchRmsNorm(const void* x, int64_t x_stride, const float* weight, float eps,
                          void* out, int64_t out_stride, int rows, int cols,
                          cudaStream_t stream) {
  LLMUX_KCHECK(x != nullptr && weight != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && x_stride >= cols && out_stride >= cols, "rms_norm shape");
  if (rows == 0) return cudaSuccess;
  RmsNormKernel<<<rows, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), x_stride,
                                               weight, eps, static_cast<__nv_bfloat16*>(out),
                                               out_stride, cols);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
