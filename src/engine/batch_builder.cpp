#include "engine/batch_builder.h"

#include <algorithm>

namespace llmux {

const ForwardBatch& BatchBuilder::Build(const SchedulerOutput& plan,
                                        const std::atomic<bool>* stop) {
  ForwardBatch& b = batch_;
  b.stop = stop;
  b.token_ids.clear();
  b.positions.clear();
  b.slot_mapping.clear();
  b.query_start_loc.assign(1, 0);
  b.seq_lens.clear();
  b.block_tables.clear();
  b.logits_indices.clear();
  size_t max_blocks = 0;
  for (const ScheduledSeq& s : plan.seqs) max_blocks = std::max(max_blocks, s.block_table.size());
  b.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  for (const ScheduledSeq& s : plan.seqs) {
    for (int32_t i = 0; i < s.num_new_tokens; ++i) {
      const int32_t pos = s.num_computed_tokens + i;
      b.token_ids.push_back(s.new_token_ids[i]);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(static_cast<int64_t>(s.block_table[pos / block_size_]) * block_size_ +
                               pos % block_size_);
    }
    b.query_start_loc.push_back(b.num_tokens());
    b.seq_lens.push_back(s.num_computed_tokens + s.num_new_tokens);
    b.block_tables.insert(b.block_tables.end(), s.block_table.begin(), s.block_table.end());
    b.block_tables.insert(b.block_tables.end(), max_blocks - s.block_table.size(), -1);
    if (s.samples) b.logits_indices.push_back(b.num_tokens() - 1);
  }
  return b;
}

}  // namespace llmux
