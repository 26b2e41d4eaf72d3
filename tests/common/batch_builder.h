// Builds ForwardBatches by hand for model/backend tests: each sequence owns a fixed, disjoint
// range of KV blocks (optionally shuffled), so tests control batch composition exactly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "llmux/forward_batch.h"

namespace llmux::testing {

class BatchBuilder {
 public:
  // `num_seqs` sequences of up to `max_len` tokens each, `block_size` tokens per block.
  // With shuffle_seed != 0 the physical block ids are a permutation (block-table holes).
  BatchBuilder(int num_seqs, int max_len, int block_size, uint32_t shuffle_seed = 0)
      : block_size_(block_size), blocks_per_seq_((max_len + block_size - 1) / block_size) {
    std::vector<int32_t> ids(static_cast<size_t>(num_seqs) * blocks_per_seq_);
    std::iota(ids.begin(), ids.end(), 0);
    if (shuffle_seed != 0) {
      std::mt19937 rng(shuffle_seed);
      std::shuffle(ids.begin(), ids.end(), rng);
    }
    tables_.resize(num_seqs);
    for (int s = 0; s < num_seqs; ++s) {
      tables_[s].assign(ids.begin() + s * blocks_per_seq_, ids.begin() + (s + 1) * blocks_per_seq_);
    }
    tokens_.resize(num_seqs);
    computed_.assign(num_seqs, 0);
  }

  int num_blocks() const { return static_cast<int>(tables_.size()) * blocks_per_seq_; }

  // Appends tokens to sequence `seq` (prompt, or a sampled token).
  void Append(int seq, std::vector<int32_t> tokens) {
    tokens_[seq].insert(tokens_[seq].end(), tokens.begin(), tokens.end());
  }
  const std::vector<int32_t>& tokens(int seq) const { return tokens_[seq]; }
  int computed(int seq) const { return computed_[seq]; }

  // A step computing, for each (seq, n) in `work`, that sequence's next n uncomputed tokens.
  // Logits are requested for each sequence's last token of the step when that token is the
  // last known one (prompt complete / decode). Call Commit() after running it.
  ForwardBatch Build(const std::vector<std::pair<int, int>>& work) {
    ForwardBatch b;
    b.max_blocks_per_seq = blocks_per_seq_;
    b.query_start_loc.push_back(0);
    pending_ = work;
    logit_seqs_.clear();
    for (auto [seq, n] : work) {
      const int start = computed_[seq];
      for (int i = 0; i < n; ++i) {
        const int pos = start + i;
        b.token_ids.push_back(tokens_[seq][pos]);
        b.positions.push_back(pos);
        b.slot_mapping.push_back(static_cast<int64_t>(tables_[seq][pos / block_size_]) * block_size_ +
                                 pos % block_size_);
      }
      b.query_start_loc.push_back(b.num_tokens());
      b.seq_lens.push_back(start + n);
      b.block_tables.insert(b.block_tables.end(), tables_[seq].begin(), tables_[seq].end());
      if (start + n == static_cast<int>(tokens_[seq].size())) {
        b.logits_indices.push_back(b.num_tokens() - 1);
        logit_seqs_.push_back(seq);
      }
    }
    return b;
  }
  // Sequences whose logits the last Build() requested, in order.
  const std::vector<int>& logit_seqs() const { return logit_seqs_; }
  void Commit() {
    for (auto [seq, n] : pending_) computed_[seq] += n;
    pending_.clear();
  }

 private:
  int block_size_;
  int blocks_per_seq_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<int> computed_;
  std::vector<std::pair<int, int>> pending_;
  std::vector<int> logit_seqs_;
};

}  // namespace llmux::testing
