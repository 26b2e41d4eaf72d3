#include "backend/cuda/batch_metadata.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "attention_split.h"
#include "backend/cuda/attention_tiles.h"
#include "backend/cuda/cuda_check.h"

namespace llmux::cuda {
namespace {

int RoundUpPow2(int v, int at_least) {
  int p = at_least;
  while (p < v) p *= 2;
  return p;
}

size_t Align(size_t v) { return (v + 255) / 256 * 256; }

std::string At(const char* field, size_t i) {
  return std::string(field) + "[" + std::to_string(i) + "]";
}

}  // namespace

BatchMetadata::~BatchMetadata() {
  if (copied_ != nullptr) {
    cudaEventSynchronize(copied_);
    cudaEventDestroy(copied_);
  }
}

Status BatchMetadata::Grow(int tokens, int seqs, int bt_stride) {
  if (tokens <= cap_tokens_ && seqs <= cap_seqs_ && bt_stride <= cap_stride_) return Status::Ok();
  if (copied_ != nullptr) LLMUX_RETURN_IF_CUDA_ERROR(cudaEventSynchronize(copied_), "metadata");
  const int ct = RoundUpPow2(std::max(tokens, cap_tokens_), 256);
  const int cs = RoundUpPow2(std::max(seqs, cap_seqs_), 64);
  const int cw = std::max(bt_stride, cap_stride_);
  size_t off = Align(sizeof(int64_t) * ct);
  const size_t ti = off;
  off += Align(4ull * ct);
  const size_t po = off;
  off += Align(4ull * ct);
  const size_t ts = off;
  off += Align(4ull * ct);
  const size_t lo = off;
  off += Align(4ull * ct);
  const size_t bt = off;
  off += Align(4ull * cs * cw);
  const size_t at = off;
  off += Align(8ull * ct);
  LLMUX_ASSIGN_OR_RETURN(auto device, CudaBuffer::Create(off));
  LLMUX_ASSIGN_OR_RETURN(auto staging, PinnedBuffer::Create(off));
  device_ = std::move(device);
  staging_ = std::move(staging);
  if (copied_ == nullptr) {
    LLMUX_RETURN_IF_CUDA_ERROR(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming),
                               "metadata event");
  }
  cap_tokens_ = ct;
  cap_seqs_ = cs;
  cap_stride_ = cw;
  off_token_ids_ = ti;
  off_positions_ = po;
  off_token_seq_ = ts;
  off_logits_ = lo;
  off_block_tables_ = bt;
  off_attn_tiles_ = at;
  total_bytes_ = off;
  ++generation_;
  return Status::Ok();
}

Status BatchMetadata::Set(const ForwardBatch& b, const KvCacheSpec& spec, cudaStream_t stream) {
  const int t_count = b.num_tokens();
  const int s_count = b.num_seqs();
  if (t_count <= 0) return InvalidArgument("batch has no tokens");
  if (b.positions.size() != b.token_ids.size() || b.slot_mapping.size() != b.token_ids.size()) {
    return InvalidArgument("positions and slot_mapping must have one entry per token");
  }
  if (s_count <= 0 || b.query_start_loc.size() != static_cast<size_t>(s_count) + 1) {
    return InvalidArgument("query_start_loc must have num_seqs + 1 entries");
  }
  if (b.max_blocks_per_seq <= 0 ||
      b.block_tables.size() != static_cast<size_t>(s_count) * b.max_blocks_per_seq) {
    return InvalidArgument("block_tables must be num_seqs x max_blocks_per_seq");
  }
  if (b.query_start_loc[0] != 0 || b.query_start_loc[s_count] != t_count) {
    return InvalidArgument("query_start_loc must start at 0 and end at num_tokens");
  }
  const int64_t num_slots = static_cast<int64_t>(spec.num_blocks) * spec.block_size;
  for (size_t i = 0; i < b.token_ids.size(); ++i) {
    if (b.token_ids[i] < 0) return InvalidArgument(At("token_ids", i) + " is negative");
    if (b.slot_mapping[i] >= num_slots) {
      return InvalidArgument(At("slot_mapping", i) + " is outside the KV pool");
    }
  }
  for (size_t i = 0; i < b.logits_indices.size(); ++i) {
    if (b.logits_indices[i] < 0 || b.logits_indices[i] >= t_count) {
      return InvalidArgument(At("logits_indices", i) + " is not a token row");
    }
  }
  std::vector<int32_t> token_seq(t_count);
  for (int s = 0; s < s_count; ++s) {
    const int begin = b.query_start_loc[s];
    const int end = b.query_start_loc[s + 1];
    if (end <= begin) return InvalidArgument(At("query_start_loc", s + 1) + " is not increasing");
    const int seq_len = b.seq_lens[s];
    const int num_new = end - begin;
    if (seq_len < num_new) return InvalidArgument(At("seq_lens", s) + " < its new tokens");
    if (static_cast<int64_t>(seq_len) > static_cast<int64_t>(b.max_blocks_per_seq) *
                                            spec.block_size) {
      return InvalidArgument(At("seq_lens", s) + " exceeds its block table");
    }
    for (int t = begin; t < end; ++t) {
      if (b.positions[t] != seq_len - num_new + (t - begin)) {
        return InvalidArgument(At("positions", t) + " does not follow seq_lens");
      }
      token_seq[t] = s;
    }
    const int needed = (seq_len + spec.block_size - 1) / spec.block_size;
    for (int j = 0; j < needed; ++j) {
      const size_t entry = static_cast<size_t>(s) * b.max_blocks_per_seq + j;
      const int32_t blk = b.block_tables[entry];
      if (blk < 0 || blk >= spec.num_blocks) {
        return InvalidArgument(At("block_tables", entry) + " is not a block of the pool");
      }
    }
  }

  const int stride = RoundUpPow2(b.max_blocks_per_seq, 8);
  LLMUX_RETURN_IF_ERROR(Grow(t_count, s_count, stride));
  // The previous step's copy must have left the staging buffer before it is overwritten.
  LLMUX_RETURN_IF_CUDA_ERROR(cudaEventSynchronize(copied_), "metadata staging");

  char* h = static_cast<char*>(staging_->data());
  std::memcpy(h, b.slot_mapping.data(), sizeof(int64_t) * t_count);
  std::memcpy(h + off_token_ids_, b.token_ids.data(), 4ull * t_count);
  std::memcpy(h + off_positions_, b.positions.data(), 4ull * t_count);
  std::memcpy(h + off_token_seq_, token_seq.data(), 4ull * t_count);
  if (!b.logits_indices.empty()) {
    std::memcpy(h + off_logits_, b.logits_indices.data(), 4ull * b.logits_indices.size());
  }
  auto* bt = reinterpret_cast<int32_t*>(h + off_block_tables_);
  for (int s = 0; s < s_count; ++s) {
    std::memcpy(bt + static_cast<size_t>(s) * stride,
                b.block_tables.data() + static_cast<size_t>(s) * b.max_blocks_per_seq,
                4ull * b.max_blocks_per_seq);
  }

  const AttnTiles tiles = BuildAttnTiles(b.query_start_loc, b.positions,
                                         spec.num_heads / spec.num_kv_heads, kAttnChunkTokens);
  std::memcpy(h + off_attn_tiles_, tiles.tiles.data(), 4ull * tiles.tiles.size());

  char* d = static_cast<char*>(device_->data());
  struct Section {
    size_t off;
    size_t bytes;
  };
  const Section sections[] = {
      {0, sizeof(int64_t) * t_count},
      {off_token_ids_, 4ull * t_count},
      {off_positions_, 4ull * t_count},
      {off_token_seq_, 4ull * t_count},
      {off_logits_, 4ull * b.logits_indices.size()},
      {off_block_tables_, 4ull * s_count * stride},
      {off_attn_tiles_, 4ull * tiles.tiles.size()},
  };
  for (const Section& sec : sections) {
    if (sec.bytes == 0) continue;
    LLMUX_RETURN_IF_CUDA_ERROR(
        cudaMemcpyAsync(d + sec.off, h + sec.off, sec.bytes, cudaMemcpyHostToDevice, stream),
        "metadata upload");
  }
  LLMUX_RETURN_IF_CUDA_ERROR(cudaEventRecord(copied_, stream), "metadata event");

  num_tokens_ = t_count;
  num_seqs_ = s_count;
  bt_stride_ = stride;
  token_ids_ = b.token_ids;
  logits_indices_ = b.logits_indices;
  const int chunks = (t_count + kAttnChunkTokens - 1) / kAttnChunkTokens;
  chunk_max_splits_.assign(chunks, 1);
  for (int t = 0; t < t_count; ++t) {
    const int n = kernels::AttnSplitFor(b.positions[t] + 1).num_splits;
    int& m = chunk_max_splits_[t / kAttnChunkTokens];
    m = std::max(m, RoundUpPow2(n, 1));
  }
  for (int& m : chunk_max_splits_) m = std::min(m, kernels::kAttnMaxSplits);
  attn_chunk_begin_ = tiles.chunk_begin;
  return Status::Ok();
}

}  // namespace llmux::cuda
