#include "norm_row.cuh"
#include "rms_norm.cuh"

namespace llmux::kernels {

cudaError_t LaunchRmsNorm(const void* x, int64_t x_stride, const float* weight, float eps,
                          void* out, int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  return LaunchNormRows<false>(/*residual=*/nullptr, /*residual_stride=*/0, x, x_stride, weight,
                               eps, out, out_stride, rows, cols, stream);
}

}  // namespace llmux::kernels
