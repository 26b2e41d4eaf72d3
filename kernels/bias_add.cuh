// Bias add after a GEMM: out[m, n] += bias[n].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// out: [rows, cols] bf16 (out_is_f32 false) or f32, row stride in elements; bias: [cols] f32.
// The add is done in f32 and rounded once to the output type.
cudaError_t LaunchBiasAdd(void* out, int64_t out_stride, bool out_is_f32, const float* bias,
                          int rows, int cols, cudaStream_t stream);

}  // namespace llmux::kernels
