// SwiGLU activation: out = silu(gate) * up, elementwise.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// gate, up, out: [rows, cols] bf16 with row strides (out may alias gate or up).
// silu(g) = g / (1 + exp(-g)), computed in f32, rounded once to bf16.
cudaError_t LaunchSiluMul(const void* gate, int64_t gate_stride, const void* up,
                          int64_t up_stride, void* out, int64_t out_stride, int rows, int cols,
                          cudaStream_t stream);

}  // namespace llmux::kernels
