// The flat batch one forward step computes: sequences in prefill (possibly one chunk of a
// longer prompt) and in decode, mixed, in vLLM's "flattened tokens" layout.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace llmux {

struct ForwardBatch {
  // Per token, in sequence order; sequence s owns rows [query_start_loc[s], query_start_loc[s+1]).
  std::vector<int32_t> token_ids;  // [num_tokens]
  std::vector<int32_t> positions;  // [num_tokens] absolute position in its sequence
  // [num_tokens] where each token's K/V is written: block_id * block_size + offset in block.
  std::vector<int64_t> slot_mapping;

  // Per sequence.
  std::vector<int32_t> query_start_loc;  // [num_seqs + 1], query_start_loc[0] == 0
  // [num_seqs] tokens in the KV cache after this step (cached prefix + this step's tokens).
  // A sequence's new tokens occupy positions [seq_len - num_new, seq_len).
  std::vector<int32_t> seq_lens;
  // [num_seqs, max_blocks_per_seq] row-major physical block ids; unused entries are -1.
  std::vector<int32_t> block_tables;
  int32_t max_blocks_per_seq = 0;

  // Token rows whose logits the step returns, in the order they are returned.
  std::vector<int32_t> logits_indices;

  // Not owned; null = run to the end. When set and raised while the step runs, a backend whose
  // ops complete on the calling thread (Backend::StopsBetweenLayers) lets the model stop
  // between layers and return Aborted: the step computed nothing the caller may use (the
  // K/V rows it wrote are rewritten when the same positions are computed again). The engine
  // raises it when a higher-lane request arrives (engine.yield_to_higher_lane).
  const std::atomic<bool>* stop = nullptr;

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(seq_lens.size()); }
};

}  // namespace llmux
