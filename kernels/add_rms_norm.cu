#include "add_rms_norm.cuh"
#include "norm_row.cuh"

namespace llmux::kernels {

cudaError_t LaunchAddRmsNorm(void* residual, int64_t residual_stride, const void* x,
                             int64_t x_stride, const float* weight, float eps, void* out,
                             int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  return LaunchNormRows<true>(residual, residual_stride, x, x_stride, weight, eps, out,
                              out_stride, rows, cols, stream);
}

}  // namespace llmux::kernels
