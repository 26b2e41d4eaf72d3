// The current batch's metadata on the device, in persistent buffers: the buffers keep their
// addresses from step to step (until a batch outgrows them), so captured CUDA graphs that read
// them stay valid and BeginBatch only copies new values in.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "llmux/backend.h"
#include "llmux/forward_batch.h"
#include "llmux/status.h"

namespace llmux::cuda {

// Tokens per paged-attention launch (bounds the split-K workspace).
inline constexpr int kAttnChunkTokens = 256;

class BatchMetadata {
 public:
  BatchMetadata() = default;
  ~BatchMetadata();
  BatchMetadata(const BatchMetadata&) = delete;
  BatchMetadata& operator=(const BatchMetadata&) = delete;

  // Validates `batch` against the KV layout (InvalidArgument naming the field otherwise),
  // grows the buffers when needed (then `generation()` changes), stages the values and
  // enqueues their copy on `stream`. Engine thread.
  Status Set(const ForwardBatch& batch, const KvCacheSpec& spec, cudaStream_t stream);

  // Bumped whenever a device buffer moved (graphs that read the old ones are stale).
  uint64_t generation() const { return generation_; }

  int num_tokens() const { return num_tokens_; }
  int num_seqs() const { return num_seqs_; }
  int num_logits() const { return static_cast<int>(logits_indices_.size()); }
  bool is_decode() const { return num_tokens_ == num_seqs_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  int block_table_stride() const { return bt_stride_; }
  // Grid depth of paged attention for token chunk `c` (tokens [c * kAttnChunkTokens, ...)):
  // the largest split count of its tokens rounded up to a power of two.
  int chunk_max_splits(int c) const { return chunk_max_splits_[c]; }
  // Paged-attention query tiles of token chunk `c`: the first tile's index and the count
  // (attention_tiles.h); the tiles themselves are d_attn_tiles() + 2 * first.
  int chunk_first_tile(int c) const { return attn_chunk_begin_[c]; }
  int chunk_num_tiles(int c) const { return attn_chunk_begin_[c + 1] - attn_chunk_begin_[c]; }

  // Device arrays (valid after Set).
  const int32_t* d_token_ids() const { return d_i32(off_token_ids_); }
  const int32_t* d_positions() const { return d_i32(off_positions_); }
  const int32_t* d_token_seq() const { return d_i32(off_token_seq_); }
  const int32_t* d_logits_indices() const { return d_i32(off_logits_); }
  const int32_t* d_block_tables() const { return d_i32(off_block_tables_); }
  const int32_t* d_attn_tiles() const { return d_i32(off_attn_tiles_); }
  const int64_t* d_slot_mapping() const {
    return reinterpret_cast<const int64_t*>(static_cast<const char*>(device_->data()));
  }

 private:
  Status Grow(int tokens, int seqs, int bt_stride);
  const int32_t* d_i32(size_t off) const {
    return reinterpret_cast<const int32_t*>(static_cast<const char*>(device_->data()) + off);
  }

  std::unique_ptr<CudaBuffer> device_;
  std::unique_ptr<PinnedBuffer> staging_;
  cudaEvent_t copied_ = nullptr;  // the last staging -> device copy has been consumed
  uint64_t generation_ = 0;

  // Capacities and byte offsets of the sections (same layout on host and device):
  // [slot_mapping i64 cap_t][token_ids cap_t][positions cap_t][token_seq cap_t]
  // [logits cap_t][block_tables cap_s * cap_w][attn_tiles 2 * cap_t].
  int cap_tokens_ = 0;
  int cap_seqs_ = 0;
  int cap_stride_ = 0;
  size_t off_token_ids_ = 0, off_positions_ = 0, off_token_seq_ = 0, off_logits_ = 0,
         off_block_tables_ = 0, off_attn_tiles_ = 0, total_bytes_ = 0;

  int num_tokens_ = 0;
  int num_seqs_ = 0;
  int bt_stride_ = 0;
  std::vector<int32_t> token_ids_;
  std::vector<int32_t> logits_indices_;
  std::vector<int> chunk_max_splits_;
  std::vector<int> attn_chunk_begin_;
};

}  // namespace llmux::cuda
