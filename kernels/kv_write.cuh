// KV cache write through the slot mapping.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// k, v: [num_tokens, num_kv_heads * head_dim] bf16 (row strides in elements).
// k_cache, v_cache: one layer, [num_blocks, block_size, num_kv_heads, head_dim] bf16.
// slot_mapping: [num_tokens] int64, block_id * block_size + offset; a negative slot skips the
// token (padding). Slots are checked against the pool by the caller.
cudaError_t LaunchKvWrite(const void* k, int64_t k_stride, const void* v, int64_t v_stride,
                          const int64_t* slot_mapping, void* k_cache, void* v_cache,
                          int num_tokens, int num_kv_heads, int head_dim, cudaStream_t stream);

}  // namespace llmux::kernels
