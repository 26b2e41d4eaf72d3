// Rotary position embedding, HF rotate-half layout, in place on q and k.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// q: [num_tokens, num_heads * head_dim] bf16, k: [num_tokens, num_kv_heads * head_dim] bf16
// (row strides in elements); positions: [num_tokens] int32; inv_freq: [head_dim / 2] f32.
// For i < head_dim / 2, angle = positions[t] * inv_freq[i] (f32), and
//   x[i] <- x[i] * cos - x[i + half] * sin;  x[i + half] <- x[i + half] * cos + x[i] * sin.
cudaError_t LaunchRope(void* q, int64_t q_stride, void* k, int64_t k_stride,
                       const int32_t* positions, const float* inv_freq, int num_tokens,
                       int num_heads, int num_kv_heads, int head_dim, cudaStream_t stream);

}  // namespace llmux::kernels
