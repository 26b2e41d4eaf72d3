// Paged KV block pool with per-tenant accounting, reservations (floors), zero-on-free hygiene
// and a tenant-scoped automatic prefix cache: full blocks in a hash chain, plus the partial tail
// blocks sequences leave behind (token-level reuse inside a block).
//
// Owned by the engine thread (through the Scheduler); no locks, no device calls. Block ids are
// physical indices into the backend's KV pool, [0, num_blocks).
//
// Accounting unit: a block is charged to the tenant that brought it into use (took it from the
// free or evictable pool), until its last reference anywhere is dropped. A hit on a block that
// is already in use charges nothing. NOTE: this keeps "free blocks >= sum of every tenant's
// unused reservation" true after every Allocate and Free, which is what makes floors hold; the
// price is that in a shared prefix-cache group a tenant keeps paying for a block a peer still
// reads after the tenant itself let go of it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kv/block_list.h"
#include "llmux/kv_events.h"

namespace llmux {

// Where a prefix-cache hash chain starts. seed_id identifies the sharing scope exactly (one id per
// tenant, or per named group); seed_hash seeds the 64-bit chain. seed_id < 0 disables caching.
struct PrefixRoot {
  int32_t seed_id = -1;
  uint64_t seed_hash = 0;
  bool enabled() const { return seed_id >= 0; }
};

// A sequence's position in the cache chain: the cached block that represents its last full,
// registered block (block < 0 before the first). Sequences own one and pass it back.
struct PrefixChain {
  uint64_t hash = 0;
  int32_t block = -1;
  uint64_t epoch = 0;
  int32_t num_blocks = 0;  // full blocks of the sequence already looked up or registered
  bool broken = false;     // a true hash collision stopped registration for this sequence
};

// A partial-block hit: a cached tail block whose first num_tokens K/V rows continue a chain.
// block < 0 when there is none.
struct PartialHit {
  int32_t block = -1;
  int32_t num_tokens = 0;
};

class KvCacheManager {
 public:
  // Partial tail entries kept per chain position; registering one more drops the oldest.
  // NOTE: duplicates of one tail are kept on purpose: an entry is adopted (moved into the
  // adopting sequence's table), so N concurrent repeats of a prompt need N entries.
  static constexpr int32_t kMaxPartialsPerPosition = 8;

  KvCacheManager(int32_t num_blocks, int32_t block_size);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  // Blocks that can be handed out: never-cached free blocks plus evictable cached blocks.
  int32_t num_free_blocks() const { return free_.size() + evictable_.size(); }
  int32_t num_evictable_blocks() const { return evictable_.size(); }
  // Physical blocks with at least one reference.
  int32_t num_used_blocks() const { return num_blocks_ - num_free_blocks(); }

  // ---- tenants (index t >= 0, dense) ----
  // Sets t's floor in blocks. Other tenants can never take the part of it t does not use.
  void SetReservedBlocks(int32_t t, int32_t blocks);
  int32_t reserved_blocks(int32_t t) const { return t < NumTenants() ? reserved_[t] : 0; }
  int32_t used_blocks(int32_t t) const { return t < NumTenants() ? used_[t] : 0; }
  int32_t total_reserved_blocks() const { return total_reserved_; }
  // Part of t's reservation it does not use.
  int32_t unused_reservation(int32_t t) const { return t < NumTenants() ? Slack(t) : 0; }

  // True when t may take `n` blocks out of the free/evictable pool without touching any other
  // tenant's unused reservation.
  bool CanTake(int32_t t, int32_t n) const;

  // ---- prefix cache ----
  // Longest chain of cached full blocks equal to the start of `tokens` (at most max_blocks),
  // verified token by token. Appends their ids to *blocks (no references taken) and sets *chain
  // to the position after them. Counts the lookup in the query/hit statistics when count_stats.
  int32_t MatchPrefix(const PrefixRoot& root, std::span<const int32_t> tokens, int32_t max_blocks,
                      std::vector<int32_t>* blocks, PrefixChain* chain, bool count_stats);
  // Blocks among `hits` that currently have no reference (taking them uses the free pool).
  int32_t CountUnreferenced(std::span<const int32_t> hits) const;

  // The cached partial tail block at chain position `chain` (as left by MatchPrefix) whose
  // leading tokens equal those of `tokens` over min(its length, max_tokens) (max_tokens <
  // block_size): the longest such use, among equal ones the most recently registered; an entry
  // the prompt diverges inside is not used. num_tokens == 0 when none matches. Entries whose parent
  // was evicted are dropped on the way. Adds the matched tokens to the hit statistics when
  // count_stats. The hit is valid until the next Allocate, Free or registration.
  PartialHit MatchPartial(const PrefixRoot& root, const PrefixChain& chain,
                          std::span<const int32_t> tokens, int32_t max_tokens, bool count_stats);

  // Appends `hits` (taking a reference each) and `num_fresh` new blocks to *table for tenant t.
  // Returns false and changes nothing when CanTake fails. sensitive marks the blocks as holding
  // zero_kv_on_free data: they are reported by TakeBlocksToZero before their next reuse.
  bool Allocate(int32_t t, bool sensitive, std::span<const int32_t> hits, int32_t num_fresh,
                std::vector<int32_t>* table) {
    return Allocate(t, sensitive, hits, PartialHit{}, num_fresh, table);
  }
  // As above, and adopts partial.block (when >= 0) between the hits and the fresh blocks: the
  // block stops being cached and becomes the caller's own (charged to t, one reference), its
  // first partial.num_tokens K/V rows already computed; the caller writes its next tokens into
  // it. NOTE: adoption instead of a copy: a cached partial block never has a reference (it is
  // registered by a sequence that is leaving), so moving it costs nothing and needs no device
  // copy; the adopter re-registers its own tail when it leaves.
  bool Allocate(int32_t t, bool sensitive, std::span<const int32_t> hits, const PartialHit& partial,
                int32_t num_fresh, std::vector<int32_t>* table);
  // Drops a reference to every block of *table (last block first, so a chain's tail is
  // evicted before its head) and clears it.
  void Free(std::vector<int32_t>* table);
  // Blocks of `table` that freeing it would return to the pool from t's charge.
  int32_t CountFreeable(int32_t t, std::span<const int32_t> table) const;

  // Registers `block` (a full block just computed by a sequence at chain position *chain) as
  // cached, or advances *chain to an identical block already cached. No-op if !root.enabled().
  void RegisterFullBlock(const PrefixRoot& root, std::span<const int32_t> block_tokens,
                         int32_t block, PrefixChain* chain);

  // Registers `block`, the partial tail of a sequence about to be freed, as cached: its first
  // tail_tokens.size() (1 .. block_size - 1) K/V rows hold tail_tokens at chain position *chain.
  // Call right before Free of the table holding it (the block must have exactly one reference
  // and not be cached). No-op if !root.enabled() or the chain is broken. Partial entries are not
  // reported to the event sink (vLLM's event format has full blocks only).
  void RegisterPartialBlock(const PrefixRoot& root, const PrefixChain& chain,
                            std::span<const int32_t> tail_tokens, int32_t block);

  // ---- KV-cache events ----
  // Reports every block that becomes cached or stops being cached to `sink` (not owned; must
  // outlive the manager; nullptr detaches), on the calling (engine) thread. Attaching while
  // nothing is cached first reports OnAllCleared, so a subscriber starts from an empty view.
  void SetEventSink(KvEventSink* sink);
  // Names the sharing scope of seed_id ("tenant:NAME" / "group:NAME") in stored events.
  void SetScopeName(int32_t seed_id, std::string name);

  // Blocks handed out since the last call whose previous contents must be zeroed before the
  // next forward pass writes them. Clears the list.
  std::vector<int32_t> TakeBlocksToZero();

  int64_t prefix_query_tokens() const { return query_tokens_; }
  int64_t prefix_hit_tokens() const { return hit_tokens_; }

  // ---- test and debugging views ----
  int32_t ref_count(int32_t block) const { return ref_[block]; }
  int32_t owner(int32_t block) const { return owner_[block]; }
  bool is_cached(int32_t block) const { return cached_[block] != 0; }
  // Tokens a cached block holds: block_size for a full block, fewer for a partial tail.
  int32_t cached_len(int32_t block) const { return cached_[block] ? cached_len_[block] : 0; }
  // Cached partial tail entries.
  int32_t num_partial_blocks() const { return num_partials_; }
  // Evictable cached blocks, next to be evicted first.
  std::vector<int32_t> EvictionOrder() const { return evictable_.ToVector(); }
  // True when the free pool still covers every tenant's unused reservation (it can only stop
  // being true right after a reservation is raised while the pool is busy).
  bool FloorsCovered() const { return num_free_blocks() >= total_slack_; }
  // Aborts with a message if any internal invariant is broken. O(num_blocks).
  void CheckInvariants() const;

 private:
  int32_t NumTenants() const { return static_cast<int32_t>(used_.size()); }
  void EnsureTenant(int32_t t);
  int32_t Slack(int32_t t) const { return reserved_[t] > used_[t] ? reserved_[t] - used_[t] : 0; }
  void AddUsed(int32_t t, int32_t delta);
  int32_t TakeFreshBlock();
  void Uncache(int32_t block);
  // Drops `block`'s cache entry (full or partial) from the indexes; its list is unchanged.
  void Forget(int32_t block);
  bool PartialParentValid(int32_t block) const;
  void EmitRemoved(int32_t block);
  void EmitStored(int32_t block, bool has_parent, uint64_t parent_hash);
  bool Matches(int32_t block, int32_t seed_id, const PrefixChain& parent,
               std::span<const int32_t> tokens) const;
  std::span<const int32_t> CachedTokens(int32_t block) const {
    return {cache_tokens_.data() + static_cast<size_t>(block) * block_size_,
            static_cast<size_t>(block_size_)};
  }

  const int32_t num_blocks_;
  const int32_t block_size_;

  // Per block.
  std::vector<int32_t> ref_;
  std::vector<int32_t> owner_;  // tenant charged for the block while it is referenced
  std::vector<uint8_t> needs_zero_;
  std::vector<uint8_t> cached_;
  std::vector<uint64_t> hash_;   // a full block's chain hash; a partial tail's position hash
  std::vector<uint64_t> epoch_;  // changes each time the block is (re)registered
  std::vector<int32_t> seed_id_;
  std::vector<int32_t> parent_;  // cached parent block, -1 for a chain's first block
  std::vector<uint64_t> parent_epoch_;
  std::vector<int32_t> cache_tokens_;  // [num_blocks, block_size] tokens of cached blocks
  std::vector<int32_t> cached_len_;    // tokens of a cached block (< block_size: partial tail)
  std::shared_ptr<BlockLinks> links_;
  BlockList free_;       // never-cached (or uncached) free blocks, handed out first
  BlockList evictable_;  // cached blocks without references, least recently freed first
  std::unordered_map<uint64_t, int32_t> by_hash_;  // full blocks
  // Partial tail blocks by the chain hash of their position (the parent's hash, or the seed),
  // oldest first. Always unreferenced (evictable).
  std::unordered_map<uint64_t, std::vector<int32_t>> partials_;
  int32_t num_partials_ = 0;
  uint64_t next_epoch_ = 1;

  // Per tenant.
  std::vector<int32_t> used_;
  std::vector<int32_t> reserved_;
  int32_t total_reserved_ = 0;
  int32_t total_slack_ = 0;  // sum over tenants of max(0, reserved - used)

  KvEventSink* sink_ = nullptr;
  std::vector<std::string> scope_names_;  // by seed id

  std::vector<int32_t> to_zero_;
  int64_t query_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

// 64-bit hash of one full block chained on its parent's hash (or the root seed).
uint64_t HashBlock(uint64_t parent_hash, std::span<const int32_t> tokens);
// Seed hash of a sharing scope key such as "tenant:acme" or "group:research".
uint64_t HashSeed(std::string_view key);

}  // namespace llmux
