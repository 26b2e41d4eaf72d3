// Adaptive token-mask cache (the idea of xgrammar's "adaptive token mask cache"): for each
// automaton state with byte edges, the vocabulary splits into tokens accepted whatever lies
// below the state on the stack (context-independent accepts), tokens rejected whatever lies
// below (rejects), and the few whose fate depends on the stack below (uncertain: the rule
// may end inside the token). Only uncertain tokens are checked at run time. Internal.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"
#include "llmux/grammar.h"
#include "llmux/thread_annotations.h"

namespace llmux::grammar_internal {

struct MaskEntry {
  // Accepted tokens: a packed bitmask ([mask_words]) when many, else a sorted id list.
  std::vector<uint32_t> accepted_bits;
  std::vector<int32_t> accepted_ids;
  std::vector<int32_t> uncertain;  // sorted ids

  // mask |= accepted
  void OrAccepted(std::span<uint32_t> mask) const;
  size_t MemoryBytes() const {
    return sizeof(MaskEntry) + accepted_bits.size() * 4 + accepted_ids.size() * 4 +
           uncertain.size() * 4;
  }
};

// The uncertain tokens of a state resolved one frame deeper: given the state the caller
// returns to, `accepted` are allowed whatever lies below that, the rest of the uncertain
// tokens are rejected except `deeper`, which still depend on the frames below.
struct UncertainSplit {
  std::vector<int32_t> accepted;
  std::vector<int32_t> deeper;
  size_t MemoryBytes() const { return sizeof(*this) + (accepted.size() + deeper.size()) * 4; }
};

// Computes the entry of one state by walking the vocabulary in sorted byte order (shared
// prefixes are stepped once; a rejected prefix skips every token that extends it).
std::shared_ptr<const MaskEntry> ComputeMaskEntry(const Grammar& grammar,
                                                  const TokenVocabulary& vocab, int32_t state);

// Thread-safe lazy cache of one compiled grammar's entries. Entries of leaf-rule states are
// shared process-wide between grammars on the same vocabulary (e.g. the JSON string body).
class MaskCache {
 public:
  MaskCache(const Grammar& grammar, std::shared_ptr<const TokenVocabulary> vocab);
  // The entry of `state` (which must have byte edges), computing it on first use.
  std::shared_ptr<const MaskEntry> Get(int32_t state);
  // Computes missing entries of every byte-consuming state until `deadline`. Returns whether
  // all are done.
  bool Precompute(std::chrono::steady_clock::time_point deadline);
  // The split of Get(state)->uncertain when the frame below returns to `return_state`
  // (computed on first use: one check per uncertain token, not a vocabulary walk).
  std::shared_ptr<const UncertainSplit> GetSplit(int32_t state, int32_t return_state);
  size_t MemoryBytes() const;

 private:
  const Grammar& grammar_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  mutable Mutex mutex_;
  std::vector<std::shared_ptr<const MaskEntry>> entries_ GUARDED_BY(mutex_);  // [states]
  // (state << 32 | return_state) -> split.
  std::unordered_map<uint64_t, std::shared_ptr<const UncertainSplit>> splits_ GUARDED_BY(mutex_);
  size_t bytes_ GUARDED_BY(mutex_) = 0;
};

}  // namespace llmux::grammar_internal
