#include "kv/kv_cache_manager.h"

#include <algorithm>
#include <cstring>

#include "llmux/status.h"

namespace llmux {
namespace {

inline uint64_t Mix64(uint64_t x) {  // splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t HashBlock(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = Mix64(parent_hash ^ 0x9E3779B97F4A7C15ULL);
  for (int32_t t : tokens) {
    h = Mix64(h + static_cast<uint32_t>(t) + 0x632BE59BD9B4E019ULL);
  }
  return Mix64(h ^ tokens.size());
}

uint64_t HashSeed(std::string_view key) {
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a, then mixed
  for (unsigned char c : key) h = (h ^ c) * 0x100000001B3ULL;
  return Mix64(h);
}

KvCacheManager::KvCacheManager(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      ref_(num_blocks, 0),
      owner_(num_blocks, -1),
      needs_zero_(num_blocks, 0),
      cached_(num_blocks, 0),
      hash_(num_blocks, 0),
      epoch_(num_blocks, 0),
      seed_id_(num_blocks, -1),
      parent_(num_blocks, -1),
      parent_epoch_(num_blocks, 0),
      cache_tokens_(static_cast<size_t>(num_blocks) * block_size, 0),
      cached_len_(num_blocks, 0),
      links_(std::make_shared<BlockLinks>(num_blocks)),
      free_(links_, 1),
      evictable_(links_, 2) {
  LLMUX_CHECK(num_blocks > 0 && block_size > 0) << num_blocks << " blocks of " << block_size;
  for (int32_t b = 0; b < num_blocks; ++b) free_.PushBack(b);
}

void KvCacheManager::EnsureTenant(int32_t t) {
  LLMUX_CHECK(t >= 0) << "tenant " << t;
  if (t >= NumTenants()) {
    used_.resize(t + 1, 0);
    reserved_.resize(t + 1, 0);
  }
}

void KvCacheManager::AddUsed(int32_t t, int32_t delta) {
  EnsureTenant(t);
  total_slack_ -= Slack(t);
  used_[t] += delta;
  LLMUX_CHECK(used_[t] >= 0) << "tenant " << t << " used " << used_[t];
  total_slack_ += Slack(t);
}

void KvCacheManager::SetReservedBlocks(int32_t t, int32_t blocks) {
  EnsureTenant(t);
  total_slack_ -= Slack(t);
  total_reserved_ += blocks - reserved_[t];
  reserved_[t] = blocks;
  total_slack_ += Slack(t);
}

bool KvCacheManager::CanTake(int32_t t, int32_t n) const {
  const int32_t own_slack = t < NumTenants() ? Slack(t) : 0;
  return num_free_blocks() - n >= total_slack_ - own_slack;
}

bool KvCacheManager::Matches(int32_t block, int32_t seed_id, const PrefixChain& parent,
                             std::span<const int32_t> tokens) const {
  if (!cached_[block] || cached_len_[block] != block_size_ || seed_id_[block] != seed_id ||
      parent_[block] != parent.block) {
    return false;
  }
  if (parent.block >= 0 && parent_epoch_[block] != parent.epoch) return false;
  return std::equal(tokens.begin(), tokens.end(), CachedTokens(block).begin());
}

int32_t KvCacheManager::MatchPrefix(const PrefixRoot& root, std::span<const int32_t> tokens,
                                    int32_t max_blocks, std::vector<int32_t>* blocks,
                                    PrefixChain* chain, bool count_stats) {
  *chain = PrefixChain{root.seed_hash, -1, 0, 0, false};
  if (!root.enabled()) return 0;
  if (count_stats) query_tokens_ += static_cast<int64_t>(tokens.size());
  const int32_t limit =
      std::min<int32_t>(max_blocks, static_cast<int32_t>(tokens.size()) / block_size_);
  int32_t n = 0;
  for (; n < limit; ++n) {
    auto block_tokens = tokens.subspan(static_cast<size_t>(n) * block_size_, block_size_);
    const uint64_t h = HashBlock(chain->hash, block_tokens);
    auto it = by_hash_.find(h);
    if (it == by_hash_.end() || !Matches(it->second, root.seed_id, *chain, block_tokens)) break;
    blocks->push_back(it->second);
    *chain = PrefixChain{h, it->second, epoch_[it->second], n + 1, false};
  }
  if (count_stats) hit_tokens_ += static_cast<int64_t>(n) * block_size_;
  return n;
}

bool KvCacheManager::PartialParentValid(int32_t block) const {
  const int32_t p = parent_[block];
  return p < 0 ||
         (cached_[p] && cached_len_[p] == block_size_ && epoch_[p] == parent_epoch_[block]);
}

PartialHit KvCacheManager::MatchPartial(const PrefixRoot& root, const PrefixChain& chain,
                                        std::span<const int32_t> tokens, int32_t max_tokens,
                                        bool count_stats) {
  PartialHit best;
  if (!root.enabled() || chain.broken) return best;
  auto it = partials_.find(chain.hash);
  if (it == partials_.end()) return best;
  max_tokens = std::min({max_tokens, block_size_ - 1, static_cast<int32_t>(tokens.size())});
  // Newest first, so the most recent of equally long matches wins. Stale entries (parent
  // evicted or re-registered) can never match again: they are dropped after the scan.
  std::vector<int32_t> stale;
  const std::vector<int32_t>& entries = it->second;
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
    const int32_t b = *e;
    if (!PartialParentValid(b)) {
      stale.push_back(b);
      continue;
    }
    if (seed_id_[b] != root.seed_id || parent_[b] != chain.block ||
        (chain.block >= 0 && parent_epoch_[b] != chain.epoch)) {
      continue;
    }
    const int32_t n = std::min(cached_len_[b], max_tokens);
    const int32_t* cached = cache_tokens_.data() + static_cast<size_t>(b) * block_size_;
    int32_t k = 0;
    while (k < n && cached[k] == tokens[k]) ++k;
    // NOTE: only a complete use counts (all of the entry, or all the prompt can take): adopting
    // removes the entry, and a prompt that diverges inside it (at the latest after the BOS every
    // prompt shares) would destroy rows an exact repeat or a conversation's next turn needs.
    if (k == n && k > best.num_tokens) best = PartialHit{b, k};
  }
  for (int32_t b : stale) Uncache(b);
  if (count_stats) hit_tokens_ += best.num_tokens;
  return best;
}

int32_t KvCacheManager::CountUnreferenced(std::span<const int32_t> hits) const {
  int32_t n = 0;
  for (int32_t b : hits) n += ref_[b] == 0 ? 1 : 0;
  return n;
}

void KvCacheManager::SetEventSink(KvEventSink* sink) {
  sink_ = sink;
  if (sink_ != nullptr && by_hash_.empty()) sink_->OnAllCleared();
}

void KvCacheManager::SetScopeName(int32_t seed_id, std::string name) {
  LLMUX_CHECK(seed_id >= 0) << "seed id " << seed_id;
  if (seed_id >= static_cast<int32_t>(scope_names_.size())) scope_names_.resize(seed_id + 1);
  scope_names_[seed_id] = std::move(name);
}

void KvCacheManager::EmitRemoved(int32_t block) {
  if (sink_ != nullptr) sink_->OnBlocksRemoved({hash_[block]});
}

void KvCacheManager::EmitStored(int32_t block, bool has_parent, uint64_t parent_hash) {
  if (sink_ == nullptr) return;
  KvBlockStored e;
  e.block_hash = hash_[block];
  if (has_parent) e.parent_block_hash = parent_hash;
  auto tokens = CachedTokens(block);
  e.token_ids.assign(tokens.begin(), tokens.end());
  e.block_size = block_size_;
  const int32_t seed = seed_id_[block];
  if (seed >= 0 && seed < static_cast<int32_t>(scope_names_.size())) e.scope = scope_names_[seed];
  std::vector<KvBlockStored> blocks;
  blocks.push_back(std::move(e));
  sink_->OnBlocksStored(std::move(blocks));
}

void KvCacheManager::Forget(int32_t block) {
  if (!cached_[block]) return;
  if (cached_len_[block] == block_size_) {
    EmitRemoved(block);
    auto it = by_hash_.find(hash_[block]);
    if (it != by_hash_.end() && it->second == block) by_hash_.erase(it);
  } else {
    auto it = partials_.find(hash_[block]);
    LLMUX_CHECK(it != partials_.end()) << "partial block " << block << " unindexed";
    auto& v = it->second;
    v.erase(std::find(v.begin(), v.end(), block));
    if (v.empty()) partials_.erase(it);
    --num_partials_;
  }
  cached_[block] = 0;
  cached_len_[block] = 0;
}

void KvCacheManager::Uncache(int32_t block) {
  Forget(block);
  if (evictable_.contains(block)) {
    evictable_.Remove(block);
    free_.PushBack(block);
  }
}

int32_t KvCacheManager::TakeFreshBlock() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.PopFront();
  } else {
    b = evictable_.PopFront();
    Forget(b);
  }
  if (needs_zero_[b]) {
    to_zero_.push_back(b);
    needs_zero_[b] = 0;
  }
  return b;
}

bool KvCacheManager::Allocate(int32_t t, bool sensitive, std::span<const int32_t> hits,
                              const PartialHit& partial, int32_t num_fresh,
                              std::vector<int32_t>* table) {
  LLMUX_CHECK(num_fresh >= 0) << num_fresh;
  const bool adopt = partial.block >= 0;
  if (adopt) {
    const int32_t b = partial.block;
    LLMUX_CHECK(cached_[b] && cached_len_[b] < block_size_ && ref_[b] == 0 &&
                partial.num_tokens > 0 && partial.num_tokens <= cached_len_[b])
        << "partial hit on block " << b << " (" << partial.num_tokens << " tokens) is stale";
  }
  if (!CanTake(t, num_fresh + CountUnreferenced(hits) + (adopt ? 1 : 0))) return false;
  int32_t charged = num_fresh;
  for (int32_t b : hits) {
    LLMUX_CHECK(cached_[b]) << "hit block " << b << " is not cached";
    if (ref_[b] == 0) {
      evictable_.Remove(b);
      owner_[b] = t;
      ++charged;
    }
    ++ref_[b];
    if (sensitive) needs_zero_[b] = 1;
    table->push_back(b);
  }
  if (adopt) {
    const int32_t b = partial.block;
    Uncache(b);  // evictable -> free list, out of the index
    free_.Remove(b);
    ref_[b] = 1;
    owner_[b] = t;
    ++charged;
    // Same rule as a full-block hit: the rows it keeps belong to the scope that reads them.
    if (sensitive) needs_zero_[b] = 1;
    table->push_back(b);
  }
  for (int32_t i = 0; i < num_fresh; ++i) {
    const int32_t b = TakeFreshBlock();
    ref_[b] = 1;
    owner_[b] = t;
    if (sensitive) needs_zero_[b] = 1;
    table->push_back(b);
  }
  AddUsed(t, charged);
  return true;
}

void KvCacheManager::Free(std::vector<int32_t>* table) {
  for (auto it = table->rbegin(); it != table->rend(); ++it) {
    const int32_t b = *it;
    LLMUX_CHECK(ref_[b] > 0) << "double free of block " << b;
    if (--ref_[b] == 0) {
      AddUsed(owner_[b], -1);
      owner_[b] = -1;
      if (cached_[b]) evictable_.PushBack(b); else free_.PushBack(b);
    }
  }
  table->clear();
}

int32_t KvCacheManager::CountFreeable(int32_t t, std::span<const int32_t> table) const {
  int32_t n = 0;
  for (int32_t b : table) n += (ref_[b] == 1 && owner_[b] == t) ? 1 : 0;
  return n;
}

void KvCacheManager::RegisterFullBlock(const PrefixRoot& root,
                                       std::span<const int32_t> block_tokens, int32_t block,
                                       PrefixChain* chain) {
  if (!root.enabled() || chain->broken) return;
  LLMUX_CHECK(static_cast<int32_t>(block_tokens.size()) == block_size_) << block_tokens.size();
  const uint64_t h = HashBlock(chain->hash, block_tokens);
  int32_t rep = block;
  auto it = by_hash_.find(h);
  if (it != by_hash_.end()) {
    const int32_t other = it->second;
    if (Matches(other, root.seed_id, *chain, block_tokens)) {
      rep = other;  // identical content already cached (computed twice concurrently)
    } else {
      const int32_t p = parent_[other];
      const bool stale = p >= 0 && (!cached_[p] || epoch_[p] != parent_epoch_[other]);
      if (!stale) {
        chain->broken = true;  // a genuine 64-bit collision: keep the older entry
        return;
      }
      Uncache(other);  // its parent was evicted: unreachable, so drop it
    }
  }
  if (rep == block) {
    LLMUX_CHECK(!cached_[block] && ref_[block] > 0) << "block " << block;
    cached_[block] = 1;
    cached_len_[block] = block_size_;
    hash_[block] = h;
    epoch_[block] = next_epoch_++;
    seed_id_[block] = root.seed_id;
    parent_[block] = chain->block;
    parent_epoch_[block] = chain->epoch;
    std::memcpy(cache_tokens_.data() + static_cast<size_t>(block) * block_size_,
                block_tokens.data(), sizeof(int32_t) * block_size_);
    by_hash_[h] = block;
    EmitStored(block, chain->block >= 0, chain->hash);
  }
  *chain = PrefixChain{h, rep, epoch_[rep], chain->num_blocks + 1, false};
}

void KvCacheManager::RegisterPartialBlock(const PrefixRoot& root, const PrefixChain& chain,
                                          std::span<const int32_t> tail_tokens, int32_t block) {
  if (!root.enabled() || chain.broken) return;
  const int32_t n = static_cast<int32_t>(tail_tokens.size());
  LLMUX_CHECK(n > 0 && n < block_size_) << "partial tail of " << n << " tokens";
  LLMUX_CHECK(!cached_[block] && ref_[block] == 1) << "partial tail block " << block;
  // The chain position must still be live, or no lookup could ever reach the entry.
  if (chain.block >= 0 && !(cached_[chain.block] && cached_len_[chain.block] == block_size_ &&
                            epoch_[chain.block] == chain.epoch)) {
    return;
  }
  std::vector<int32_t>& entries = partials_[chain.hash];
  if (static_cast<int32_t>(entries.size()) >= kMaxPartialsPerPosition) {
    Uncache(entries.front());  // the oldest; erases it from `entries`
  }
  cached_[block] = 1;
  cached_len_[block] = n;
  hash_[block] = chain.hash;
  epoch_[block] = next_epoch_++;
  seed_id_[block] = root.seed_id;
  parent_[block] = chain.block;
  parent_epoch_[block] = chain.epoch;
  std::memcpy(cache_tokens_.data() + static_cast<size_t>(block) * block_size_, tail_tokens.data(),
              sizeof(int32_t) * n);
  entries.push_back(block);
  ++num_partials_;
}

std::vector<int32_t> KvCacheManager::TakeBlocksToZero() {
  std::vector<int32_t> out;
  out.swap(to_zero_);
  return out;
}

void KvCacheManager::CheckInvariants() const {
  int32_t nfree = 0, nevict = 0;
  std::vector<int32_t> owned(used_.size(), 0);
  for (int32_t b = 0; b < num_blocks_; ++b) {
    LLMUX_CHECK(ref_[b] == 0 || (owner_[b] >= 0 && owner_[b] < NumTenants())) << "owner " << b;
    LLMUX_CHECK(ref_[b] >= 0) << "block " << b;
    const bool in_free = free_.contains(b), in_evict = evictable_.contains(b);
    LLMUX_CHECK(!(in_free && in_evict)) << "block " << b << " in two lists";
    if (ref_[b] > 0) ++owned[owner_[b]];
    if (ref_[b] == 0) {
      LLMUX_CHECK(owner_[b] == -1) << "free block " << b << " owned by " << owner_[b];
      LLMUX_CHECK(in_free || in_evict) << "leaked block " << b;
      LLMUX_CHECK(in_evict == (cached_[b] != 0)) << "block " << b << " cached/list mismatch";
    } else {
      LLMUX_CHECK(!in_free && !in_evict) << "referenced block " << b << " on a free list";
    }
    nfree += in_free;
    nevict += in_evict;
    if (cached_[b] && cached_len_[b] == block_size_) {
      auto it = by_hash_.find(hash_[b]);
      LLMUX_CHECK(it != by_hash_.end() && it->second == b) << "cached block " << b << " unmapped";
    } else if (cached_[b]) {
      LLMUX_CHECK(cached_len_[b] > 0 && ref_[b] == 0) << "partial block " << b;
      auto it = partials_.find(hash_[b]);
      LLMUX_CHECK(it != partials_.end() && std::count(it->second.begin(), it->second.end(), b) == 1)
          << "partial block " << b << " unindexed";
    }
  }
  LLMUX_CHECK(nfree == free_.size() && nevict == evictable_.size()) << "list sizes";
  for (const auto& [h, b] : by_hash_) {
    LLMUX_CHECK(cached_[b] && cached_len_[b] == block_size_ && hash_[b] == h) << "map " << b;
  }
  int32_t npartial = 0;
  for (const auto& [h, v] : partials_) {
    LLMUX_CHECK(!v.empty() && static_cast<int32_t>(v.size()) <= kMaxPartialsPerPosition) << h;
    for (int32_t b : v) {
      LLMUX_CHECK(cached_[b] && cached_len_[b] < block_size_ && hash_[b] == h) << "partial " << b;
    }
    npartial += static_cast<int32_t>(v.size());
  }
  LLMUX_CHECK(npartial == num_partials_) << "partial count " << npartial << " != " << num_partials_;
  int32_t slack = 0, reserved = 0;
  for (int32_t t = 0; t < NumTenants(); ++t) {
    LLMUX_CHECK(owned[t] == used_[t]) << "tenant " << t << " owns " << owned[t] << " counted "
                                      << used_[t];
    slack += Slack(t);
    reserved += reserved_[t];
  }
  LLMUX_CHECK(slack == total_slack_ && reserved == total_reserved_) << "tenant totals";
}

}  // namespace llmux
