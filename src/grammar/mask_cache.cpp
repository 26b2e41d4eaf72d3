#include "grammar/mask_cache.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>

#include "grammar/pda.h"
#include "llmux/thread_annotations.h"

namespace llmux::grammar_internal {
namespace {

// Process-wide entries of leaf-rule states, keyed by (vocabulary, rule automaton, state).
// NOTE: bounded by entry count; cleared wholesale when full (entries in use stay alive
// through their shared_ptrs, so clearing only costs recomputation).
class LeafEntries {
 public:
  static LeafEntries& Get() {
    static LeafEntries* instance = new LeafEntries();
    return *instance;
  }
  std::shared_ptr<const MaskEntry> Find(const std::string& key) {
    MutexLock lock(mutex_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }
  void Put(const std::string& key, std::shared_ptr<const MaskEntry> e) {
    MutexLock lock(mutex_);
    if (map_.size() >= kMaxEntries) map_.clear();
    map_.emplace(key, std::move(e));
  }

 private:
  static constexpr size_t kMaxEntries = 512;
  Mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const MaskEntry>> map_ GUARDED_BY(mutex_);
};

enum class Fate : uint8_t { kReject, kAccept, kUncertain };

}  // namespace

void MaskEntry::OrAccepted(std::span<uint32_t> mask) const {
  if (!accepted_bits.empty()) {
    const size_t n = std::min(mask.size(), accepted_bits.size());
    for (size_t i = 0; i < n; ++i) mask[i] |= accepted_bits[i];
  } else {
    for (int32_t id : accepted_ids) mask[id >> 5] |= 1u << (id & 31);
  }
}

std::shared_ptr<const MaskEntry> ComputeMaskEntry(const Grammar& grammar,
                                                  const TokenVocabulary& vocab, int32_t state) {
  const std::vector<int32_t>& sorted = vocab.sorted();
  const std::vector<uint16_t>& lcp = vocab.lcp();
  Pda pda(grammar);
  // Per depth d: the configuration after d bytes of the current token, the arena size then,
  // and whether the rule could have ended after some k in [1, d] bytes.
  std::vector<Config> at(1);
  std::vector<size_t> arena_at(1, 0);
  std::vector<uint8_t> ended_by(1, 0);
  pda.StartAt(Top{state, kBottomFrame}, at[0]);
  size_t valid = 0;  // at[0..valid] describe the previous token's prefix

  std::vector<int32_t> accepted, uncertain;
  const size_t n = sorted.size();
  for (size_t i = 0; i < n;) {
    const int32_t id = sorted[i];
    const std::string_view bytes = vocab.sorted_bytes(i);
    if (at.size() < bytes.size() + 1) {
      at.resize(bytes.size() + 1);
      arena_at.resize(bytes.size() + 1);
      ended_by.resize(bytes.size() + 1);
    }
    size_t d = std::min<size_t>(lcp[i], valid);
    pda.Truncate(arena_at[d]);
    bool dead = false;
    for (; d < bytes.size(); ++d) {
      pda.Step(at[d], static_cast<uint8_t>(bytes[d]), at[d + 1]);
      arena_at[d + 1] = pda.arena_size();
      ended_by[d + 1] = ended_by[d] | (at[d + 1].hit_bottom ? 1 : 0);
      if (!at[d + 1].alive()) {
        dead = true;
        break;
      }
    }
    if (!dead) {
      accepted.push_back(id);
      valid = bytes.size();
      ++i;
      continue;
    }
    // Byte d killed every in-rule stack: all tokens sharing bytes[0..d] share the fate.
    const Fate fate = ended_by[d] ? Fate::kUncertain : Fate::kReject;
    valid = d;
    size_t j = i + 1;
    if (fate == Fate::kUncertain) {
      uncertain.push_back(id);
      for (; j < n && lcp[j] >= d + 1; ++j) uncertain.push_back(sorted[j]);
    } else if (d == 0) {
      j = static_cast<size_t>(vocab.first_byte_end(static_cast<uint8_t>(bytes[0])));
    } else if (j < n && lcp[j] >= d + 1) {
      // Sorted order keeps the tokens extending bytes[0..d] contiguous: binary-search the
      // end of that run instead of stepping through it.
      const std::string_view prefix = bytes.substr(0, d + 1);
      size_t lo = j, hi = n;  // first index whose bytes do not start with `prefix`
      while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (vocab.sorted_bytes(mid).substr(0, prefix.size()) <= prefix) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      j = lo;
    }
    i = j;
  }

  auto entry = std::make_shared<MaskEntry>();
  std::sort(uncertain.begin(), uncertain.end());
  entry->uncertain = std::move(uncertain);
  if (accepted.size() * 32 > static_cast<size_t>(vocab.size())) {
    entry->accepted_bits.assign(vocab.mask_words(), 0u);
    for (int32_t id : accepted) entry->accepted_bits[id >> 5] |= 1u << (id & 31);
  } else {
    std::sort(accepted.begin(), accepted.end());
    entry->accepted_ids = std::move(accepted);
  }
  return entry;
}

MaskCache::MaskCache(const Grammar& grammar, std::shared_ptr<const TokenVocabulary> vocab)
    : grammar_(grammar), vocab_(std::move(vocab)), entries_(grammar.states.size()) {}

std::shared_ptr<const MaskEntry> MaskCache::Get(int32_t state) {
  {
    MutexLock lock(mutex_);
    if (entries_[state]) return entries_[state];
  }
  // Computed outside the lock: two threads may both compute a missing entry; the first
  // stored wins (same content).
  std::string leaf_key;
  const int32_t leaf_index = grammar_.leaf_index[state];
  std::shared_ptr<const MaskEntry> entry;
  if (leaf_index >= 0) {
    leaf_key = std::to_string(vocab_->digest()) + "/" + std::to_string(leaf_index) + "/" +
               grammar_.rules[grammar_.states[state].rule].leaf_key;
    entry = LeafEntries::Get().Find(leaf_key);
  }
  if (!entry) {
    entry = ComputeMaskEntry(grammar_, *vocab_, state);
    if (leaf_index >= 0) LeafEntries::Get().Put(leaf_key, entry);
  }
  MutexLock lock(mutex_);
  if (!entries_[state]) {
    entries_[state] = entry;
    bytes_ += entry->MemoryBytes();
  }
  return entries_[state];
}

std::shared_ptr<const UncertainSplit> MaskCache::GetSplit(int32_t state, int32_t return_state) {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(state)) << 32) |
                       static_cast<uint32_t>(return_state);
  {
    MutexLock lock(mutex_);
    if (auto it = splits_.find(key); it != splits_.end()) return it->second;
  }
  const std::shared_ptr<const MaskEntry> entry = Get(state);
  auto split = std::make_shared<UncertainSplit>();
  Pda pda(grammar_);
  Config start, a, b;
  start.tops.push_back(Top{state, pda.PushFrame(Frame{return_state, kBottomFrame})});
  const size_t base = pda.arena_size();
  for (int32_t id : entry->uncertain) {
    const std::string& bytes = vocab_->bytes(id);
    a = start;
    bool deeper = false, alive = true;
    for (size_t i = 0; i < bytes.size(); ++i) {
      pda.Step(a, static_cast<uint8_t>(bytes[i]), b);
      // Popping past the caller before the last byte: the rest belongs to deeper frames.
      if (b.hit_bottom && i + 1 < bytes.size()) deeper = true;
      if (!b.alive()) {
        alive = false;
        break;
      }
      std::swap(a, b);
    }
    pda.Truncate(base);
    if (alive) {
      split->accepted.push_back(id);
    } else if (deeper) {
      split->deeper.push_back(id);
    }
  }
  MutexLock lock(mutex_);
  auto [it, fresh] = splits_.emplace(key, split);
  if (fresh) bytes_ += split->MemoryBytes() + 32;
  return it->second;
}

bool MaskCache::Precompute(std::chrono::steady_clock::time_point deadline) {
  for (size_t s = 0; s < grammar_.states.size(); ++s) {
    if (!grammar_.states[s].has_bytes) continue;
    if (std::chrono::steady_clock::now() > deadline) return false;
    Get(static_cast<int32_t>(s));
  }
  return true;
}

size_t MaskCache::MemoryBytes() const {
  MutexLock lock(mutex_);
  return bytes_ + entries_.size() * sizeof(entries_[0]);
}

}  // namespace llmux::grammar_internal
