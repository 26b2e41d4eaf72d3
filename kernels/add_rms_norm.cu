#include "add_rms_norm.cuh"
#include "norm_row.cuh"

namespace llmux::kernels {

cudaError_t LaunchAddRmsNorm(void* residual, int64_t residual_stride, const void* x,
                             int64_t x_stride, const float* weight, float eps, void* out,
                             int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  NormRowArgs a;
  a.residual = static_cast<__nv_bfloat16*>(residual);
  a.residual_stride = residual_stride;
  a.x = static_cast<const __nv_bfloat16*>(x);
  a.x_stride = x_stride;
  a.weight = weight;
  a.eps = eps;
  a.out = static_cast<__nv_bfloat16*>(out);
  a.out_stride = out_stride;
  a.rows = rows;
  a.cols = cols;
  return LaunchNormRows<true>(a, stream);
}

}  // namespace llmux::kernels
