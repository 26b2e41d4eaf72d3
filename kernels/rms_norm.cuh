// RMSNorm: out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// x, out: [rows, cols] bf16 with row strides (out may alias x); weight: [cols] f32.
// One block per row; the reduction order depends on `cols` only (batch-invariant).
cudaError_t LaunchRmsNorm(const void* x, int64_t x_stride, const float* weight, float eps,
                          void* out, int64_t out_stride, int rows, int cols, cudaStream_t stream);

}  // namespace llmux::kernels
