// Embedding gather: out[t, :] = table[token_ids[t], :].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// table: [vocab, dim] bf16, rows `table_stride` elements apart.
// token_ids: [num_tokens] device int32, each in [0, vocab) (checked by the caller).
// out: [num_tokens, dim] bf16, rows `out_stride` elements apart.
cudaError_t LaunchEmbedding(const void* table, int64_t table_stride, const int32_t* token_ids,
                            void* out, int64_t out_stride, int num_tokens, int dim,
                            cudaStream_t stream);

}  // namespace llmux::kernels
