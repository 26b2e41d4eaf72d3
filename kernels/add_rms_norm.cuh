// Fused residual add + RMSNorm: residual[r] += x[r]; out[r] = RmsNorm(residual[r]).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// residual (in/out), x, out: [rows, cols] bf16 with row strides (out may alias x or
// residual); weight: [cols] f32.
// The sum is rounded to bf16 and stored first; the norm is taken of the stored (rounded)
// values, exactly as running the add and RmsNorm separately would.
cudaError_t LaunchAddRmsNorm(void* residual, int64_t residual_stride, const void* x,
                             int64_t x_stride, const float* weight, float eps, void* out,
                             int64_t out_stride, int rows, int cols, cudaStream_t stream);

}  // namespace llmux::kernels
