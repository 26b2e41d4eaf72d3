// Causal paged attention for mixed batches (prefill chunks over a cached prefix, and decode),
// with GQA, online softmax and split-K over long contexts (see attention_split.h): one kernel
// for every token, on tensor cores, over query tiles (BatchMetadata builds them).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace llmux::kernels {

struct PagedAttentionArgs {
  // [num_tokens, num_heads * head_dim] bf16, row strides in elements.
  const void* q = nullptr;
  int64_t q_stride = 0;
  void* out = nullptr;
  int64_t out_stride = 0;
  // One layer of the pool: [num_blocks, block_size, num_kv_heads, head_dim] bf16 each.
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  // Per token: its sequence index and absolute position; it attends keys [0, position].
  const int32_t* token_seq = nullptr;  // [num_tokens]
  const int32_t* positions = nullptr;  // [num_tokens]
  // [num_seqs, block_table_stride] physical block ids.
  const int32_t* block_tables = nullptr;
  int block_table_stride = 0;
  // Query tiles: [num_tiles][2] = (first token, within this launch; token count). A tile's
  // tokens are consecutive tokens of one sequence inside one 64-position window
  // (AttnSameWindow), at most AttnQueryTileTokens(num_heads / num_kv_heads) of them, and the
  // tiles cover the launch's tokens exactly once.
  const int32_t* tiles = nullptr;
  int num_tiles = 0;
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // multiple of 8, <= kAttnMaxHeadDim
  int block_size = 0;
  float scale = 1.0f;
  // Largest AttnSplitFor(position + 1).num_splits over the tokens (grid depth; blocks past a
  // token's own split count exit at once).
  int max_splits = 1;
  // Split-K scratch: [PagedAttentionWorkspaceFloats(num_tokens, num_heads, head_dim)] floats.
  float* workspace = nullptr;
};

// Floats of workspace one launch of `num_tokens` tokens needs.
size_t PagedAttentionWorkspaceFloats(int num_tokens, int num_heads, int head_dim);

// Dynamic shared memory one block needs (Q tile and double-buffered K/V tiles). The backend
// refuses a head_dim whose need exceeds the device's per-block opt-in limit.
size_t PagedAttentionSmemBytes(int head_dim);

// Raises the kernel's dynamic shared memory limit for the largest supported shapes. Call once
// per device before the first launch (not during stream capture).
cudaError_t PagedAttentionInit();

// Enqueues the split kernel and, when a token has more than one split, the combine kernel.
cudaError_t LaunchPagedAttention(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace llmux::kernels
