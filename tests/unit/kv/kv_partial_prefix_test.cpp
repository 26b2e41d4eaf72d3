// Partial tail blocks: token-level prefix reuse inside a block (hit length, adoption, eviction,
// staleness, tenant scope, accounting).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kv/kv_cache_manager.h"
#include "unit/kv/kv_test_util.h"

namespace llmux {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

using kv_test::Tokens;

// A sequence that computed `tokens` into `table` under `root`, registered as Update does (full
// blocks) and then as a finishing sequence does (its partial tail), then freed.
void FinishSequence(KvCacheManager& kv, const PrefixRoot& root, std::span<const int32_t> tokens,
                    std::vector<int32_t>* table) {
  const int32_t bs = kv.block_size();
  const PrefixChain chain = kv_test::RegisterFullBlocks(kv, root, tokens, *table);
  const size_t full = tokens.size() / bs;
  if (tokens.size() % bs != 0) {
    kv.RegisterPartialBlock(root, chain, tokens.subspan(full * bs), (*table)[full]);
  }
  kv.Free(table);
}

// What admission does: full blocks, then the partial tail after them.
struct Lookup {
  std::vector<int32_t> hits;
  PrefixChain chain;
  PartialHit partial;
  int32_t cached = 0;
};
Lookup Find(KvCacheManager& kv, const PrefixRoot& root, const std::vector<int32_t>& prompt) {
  Lookup l;
  const int32_t bs = kv.block_size();
  const int32_t len = static_cast<int32_t>(prompt.size());
  const int32_t n = kv.MatchPrefix(root, prompt, (len - 1) / bs, &l.hits, &l.chain, true);
  l.partial = kv.MatchPartial(root, l.chain, std::span<const int32_t>(prompt).subspan(n * bs),
                              len - 1 - n * bs, true);
  l.cached = n * bs + l.partial.num_tokens;
  return l;
}

TEST(KvPartialPrefix, RepeatOfAShortPromptReusesAllButItsLastToken) {
  KvCacheManager kv(4, 16);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  const auto prompt = Tokens(10, 500);  // shorter than a block: no full block is ever cached
  std::vector<int32_t> a;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &a));
  EXPECT_THAT(a, ElementsAre(0));
  std::vector<int32_t> computed = prompt;
  computed.push_back(7);  // the first generated token's K/V was written too
  FinishSequence(kv, root, computed, &a);
  EXPECT_TRUE(kv.is_cached(0));
  EXPECT_EQ(kv.cached_len(0), 11);
  EXPECT_EQ(kv.num_partial_blocks(), 1);
  EXPECT_THAT(kv.EvictionOrder(), ElementsAre(0));

  Lookup l = Find(kv, root, prompt);
  EXPECT_THAT(l.hits, IsEmpty());
  EXPECT_EQ(l.partial.block, 0);
  EXPECT_EQ(l.partial.num_tokens, 9);  // the 10th token is recomputed for its logits
  EXPECT_EQ(kv.prefix_query_tokens(), 10);
  EXPECT_EQ(kv.prefix_hit_tokens(), 9);

  // Adoption: the block becomes the new sequence's own, charged once, no longer cached.
  std::vector<int32_t> b;
  ASSERT_TRUE(kv.Allocate(0, false, l.hits, l.partial, 0, &b));
  EXPECT_THAT(b, ElementsAre(0));
  EXPECT_FALSE(kv.is_cached(0));
  EXPECT_EQ(kv.ref_count(0), 1);
  EXPECT_EQ(kv.used_blocks(0), 1);
  EXPECT_EQ(kv.num_partial_blocks(), 0);
  EXPECT_EQ(kv.num_free_blocks(), 3);
  kv.CheckInvariants();
  // A concurrent repeat finds nothing left to adopt.
  EXPECT_EQ(Find(kv, root, prompt).cached, 0);
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, AnEntryServesOnlyAPromptThatUsesAllOfItOrAllItCan) {
  KvCacheManager kv(8, 4);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  std::vector<int32_t> a;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 3, &a));
  const auto first = Tokens(11, 100);  // 2 full blocks + a tail of 3 (108, 109, 110)
  FinishSequence(kv, root, first, &a);
  EXPECT_EQ(kv.cached_len(2), 3);

  auto prompt = Tokens(14, 100);
  prompt[10] = 999;  // diverges inside the tail: the entry is left for a prompt that repeats it
  Lookup l = Find(kv, root, prompt);
  EXPECT_EQ(l.hits.size(), 2u);
  EXPECT_EQ(l.partial.block, -1);
  EXPECT_EQ(l.cached, 8);

  auto exact = Tokens(11, 100);  // the same 11 tokens: the last one is never a hit
  EXPECT_EQ(Find(kv, root, exact).cached, 10);
  auto longer = Tokens(20, 100);  // tail fully reused, then new tokens
  EXPECT_EQ(Find(kv, root, longer).cached, 11);
  auto diverge_first = Tokens(12, 100);
  diverge_first[8] = 999;  // first token after the full blocks differs
  Lookup d = Find(kv, root, diverge_first);
  EXPECT_EQ(d.partial.block, -1);
  EXPECT_EQ(d.cached, 8);
  auto other_chain = Tokens(11, 100);
  other_chain[0] = 999;  // same tail tokens after a different first block: not the same position
  EXPECT_EQ(Find(kv, root, other_chain).cached, 0);
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, ScopedToTheTenantOrGroupThatWroteIt) {
  KvCacheManager kv(4, 16);
  const PrefixRoot a{0, HashSeed("tenant:a")};
  const PrefixRoot b{1, HashSeed("tenant:b")};
  const PrefixRoot a_hash_other_id{2, HashSeed("tenant:a")};
  const auto prompt = Tokens(10, 1);
  std::vector<int32_t> t;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &t));
  FinishSequence(kv, a, prompt, &t);
  EXPECT_EQ(Find(kv, b, prompt).partial.block, -1);
  EXPECT_EQ(Find(kv, a_hash_other_id, prompt).partial.block, -1) << "scope id not verified";
  EXPECT_EQ(Find(kv, PrefixRoot{}, prompt).partial.block, -1);
  EXPECT_EQ(Find(kv, a, prompt).partial.num_tokens, 9);
  // Caching off: nothing is registered.
  std::vector<int32_t> u;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 1, &u));
  FinishSequence(kv, PrefixRoot{}, Tokens(10, 50), &u);
  EXPECT_EQ(kv.num_partial_blocks(), 1);
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, EvictedInLruOrderLikeAnyCachedBlock) {
  KvCacheManager kv(3, 4);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  std::vector<int32_t> s1, s2;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &s1));
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &s2));
  FinishSequence(kv, root, Tokens(3, 10), &s1);  // block 0
  FinishSequence(kv, root, Tokens(2, 20), &s2);  // block 1
  EXPECT_THAT(kv.EvictionOrder(), ElementsAre(0, 1));
  std::vector<int32_t> fresh;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 2, &fresh));  // free block 2, then evicts block 0
  EXPECT_THAT(fresh, ElementsAre(2, 0));
  EXPECT_FALSE(kv.is_cached(0));
  EXPECT_EQ(kv.num_partial_blocks(), 1);
  EXPECT_EQ(Find(kv, root, Tokens(3, 10)).cached, 0);
  EXPECT_EQ(Find(kv, root, Tokens(3, 20)).cached, 2);
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, EntryUnderAnEvictedParentIsDroppedAtLookup) {
  KvCacheManager kv(3, 2);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  // Parent (block 0) and tail (block 1) in separate tables, so the parent reaches the LRU first.
  std::vector<int32_t> parent, tail;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &parent));
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &tail));
  PrefixChain chain{root.seed_hash, -1, 0, 0, false};
  const std::vector<int32_t> head = {40, 41};
  kv.RegisterFullBlock(root, head, parent[0], &chain);
  kv.RegisterPartialBlock(root, chain, std::vector<int32_t>{42}, tail[0]);
  kv.Free(&parent);
  kv.Free(&tail);
  EXPECT_THAT(kv.EvictionOrder(), ElementsAre(0, 1));
  EXPECT_EQ(Find(kv, root, Tokens(4, 40)).cached, 3);
  std::vector<int32_t> grab;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 2, &grab));  // free block 2, then evicts the parent
  EXPECT_THAT(grab, ElementsAre(2, 0));
  kv.Free(&grab);
  // The same parent content registered again lands in block 0 with a new epoch: the old tail
  // sits under the same chain hash but its parent is not the block it was computed after.
  std::vector<int32_t> again;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &again));
  ASSERT_THAT(again, ElementsAre(0));
  chain = PrefixChain{root.seed_hash, -1, 0, 0, false};
  kv.RegisterFullBlock(root, head, again[0], &chain);
  EXPECT_EQ(kv.num_partial_blocks(), 1);
  Lookup l = Find(kv, root, Tokens(4, 40));
  EXPECT_EQ(l.cached, 2);
  EXPECT_EQ(l.partial.block, -1);
  EXPECT_EQ(kv.num_partial_blocks(), 0) << "the stale entry was not dropped";
  EXPECT_FALSE(kv.is_cached(1));
  kv.Free(&again);
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, AtMostEightEntriesPerPositionAndTheOldestGoes) {
  KvCacheManager kv(12, 16);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  for (int i = 0; i < KvCacheManager::kMaxPartialsPerPosition + 1; ++i) {
    std::vector<int32_t> t;
    ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &t));
    EXPECT_EQ(t[0], i);
    auto toks = Tokens(5, 0);
    toks[4] = 100 + i;  // entries differ in their last token
    FinishSequence(kv, root, toks, &t);
  }
  EXPECT_EQ(kv.num_partial_blocks(), KvCacheManager::kMaxPartialsPerPosition);
  EXPECT_FALSE(kv.is_cached(0)) << "the oldest entry stays past the cap";
  auto probe = Tokens(6, 0);
  probe[4] = 100;
  EXPECT_EQ(Find(kv, root, probe).cached, 0);  // its entry went with block 0; the rest diverge
  probe[4] = 101;
  Lookup l = Find(kv, root, probe);
  EXPECT_EQ(l.partial.block, 1);
  EXPECT_EQ(l.cached, 5);
  // Equal matches: the most recently registered wins.
  EXPECT_EQ(Find(kv, root, Tokens(5, 0)).partial.block, 8);
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, AdoptionCountsAgainstFloorsAndSensitiveAdoptersMarkTheBlock) {
  KvCacheManager kv(3, 16);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  std::vector<int32_t> t;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &t));
  FinishSequence(kv, root, Tokens(10, 0), &t);
  kv.SetReservedBlocks(1, 3);  // tenant 1 reserves the whole pool
  Lookup l = Find(kv, root, Tokens(10, 0));
  ASSERT_EQ(l.partial.num_tokens, 9);
  std::vector<int32_t> table;
  EXPECT_FALSE(kv.Allocate(0, false, l.hits, l.partial, 0, &table));
  EXPECT_TRUE(kv.is_cached(0)) << "a refused allocation changed the cache";
  kv.SetReservedBlocks(1, 0);
  ASSERT_TRUE(kv.Allocate(0, /*sensitive=*/true, l.hits, l.partial, 0, &table));
  EXPECT_THAT(kv.TakeBlocksToZero(), IsEmpty());  // adopted rows are kept, not zeroed
  kv.Free(&table);
  std::vector<int32_t> other;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 3, &other));
  EXPECT_THAT(kv.TakeBlocksToZero(), ElementsAre(0));  // ...but scrubbed before another holder
  kv.CheckInvariants();
}

TEST(KvPartialPrefix, StaleHitAborts) {
  KvCacheManager kv(2, 16);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  std::vector<int32_t> t;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &t));
  FinishSequence(kv, root, Tokens(10, 0), &t);
  Lookup l = Find(kv, root, Tokens(10, 0));
  std::vector<int32_t> a, b;
  ASSERT_TRUE(kv.Allocate(0, false, {}, l.partial, 0, &a));
  EXPECT_DEATH(kv.Allocate(0, false, {}, l.partial, 0, &b), "is stale");
}

}  // namespace
}  // namespace llmux
