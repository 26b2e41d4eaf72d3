#include "add_rms_norm.cuh"
#include "common.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void AddRmsNormKernel(__nv_bfloat16* residual, int64_t residual_stride,
                                 const __nv_bfloat16* x, int64_t x_stride,
                                 const float* weight, float eps,
                                 __nv_bfloat16* out, int64_t out_stride, int cols) {
  __shared__ float scratch[32];
  __nv_bfloat16* rr = residual + blockIdx.x * residual_stride;
  const __nv_bfloat16* xr = x + blockIdx.x * x_stride;
  __nv_bfloat16* orow = out + blockIdx.x * out_stride;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < cols; i += kThreads) {
    const __nv_bfloat16 sum = F32ToBf16(Bf16ToF32(rr[i]) + Bf16ToF32(xr[i]));
    rr[i] = sum;
    const float v = Bf16ToF32(sum);
    ss = fmaf(v, v, ss);
  }
  ss = BlockSum<kThreads>(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
  // NOTE: each thread reads back only the elements it wrote itself, so no barrier is needed.
  for (int i = threadIdx.x; i < cols; i += kThreads) {
    orow[i] = F32ToBf16(Bf16ToF32(rr[i]) * inv * weight[i]);
  }
}

}  // namespace

cudaError_t LaunchAddRmsNorm(void* residual, int64_t residual_stride, const void* x,
                             int64_t x_stride, const float* weight, float eps, void* out,
                             int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  LLMUX_KCHECK(residual != nullptr && x != nullptr && weight != nullptr && out != nullptr,
               "null pointer");
  LLMUX_KCHECK(cols > 0 && residual_stride >= cols && x_stride >= cols && out_stride >= cols,
               "add_rms_norm shape");
  if (rows == 0) return cudaSuccess;
  AddRmsNormKernel<<<rows, kThreads, 0, stream>>>(
      static_cast<__nv_bfloat16*>(residual), residual_stride,
      static_cast<const __nv_bfloat16*>(x), x_stride, weight, eps,
      static_cast<__nv_bfloat16*>(out), out_stride, cols);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
