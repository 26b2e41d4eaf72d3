// Block pool, reservations, LRU eviction order, tenant-scoped hash chains, zero-on-free.
#include "kv/kv_cache_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "unit/kv/kv_test_util.h"

namespace llmux {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

using kv_test::RegisterFullBlocks;
using kv_test::Tokens;

TEST(KvCacheManager, FreshBlocksComeInOrderAndReturnToTheTail) {
  KvCacheManager kv(6, 4);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 3, &a));
  ASSERT_TRUE(kv.Allocate(1, false, {}, 2, &b));
  EXPECT_THAT(a, ElementsAre(0, 1, 2));
  EXPECT_THAT(b, ElementsAre(3, 4));
  EXPECT_EQ(kv.used_blocks(0), 3);
  EXPECT_EQ(kv.used_blocks(1), 2);
  EXPECT_FALSE(kv.Allocate(1, false, {}, 2, &b));  // one left: nothing changes
  EXPECT_THAT(b, ElementsAre(3, 4));
  kv.Free(&a);
  EXPECT_THAT(a, IsEmpty());
  std::vector<int32_t> c;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 4, &c));
  EXPECT_THAT(c, ElementsAre(5, 2, 1, 0));  // freed last block first
  kv.CheckInvariants();
}

TEST(KvCacheManager, DoubleFreeAborts) {
  KvCacheManager kv(2, 4);
  std::vector<int32_t> a;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &a));
  std::vector<int32_t> copy = a;
  kv.Free(&a);
  EXPECT_DEATH(kv.Free(&copy), "double free of block 0");
}

TEST(KvCacheManager, UnusedReservationIsNeverLent) {
  KvCacheManager kv(10, 4);
  kv.SetReservedBlocks(0, 4);
  EXPECT_FALSE(kv.CanTake(1, 7));
  EXPECT_TRUE(kv.CanTake(1, 6));
  EXPECT_TRUE(kv.CanTake(0, 10));
  std::vector<int32_t> r, o;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 2, &r));
  EXPECT_EQ(kv.unused_reservation(0), 2);
  EXPECT_FALSE(kv.Allocate(1, false, {}, 7, &o));
  ASSERT_TRUE(kv.Allocate(1, false, {}, 6, &o));
  EXPECT_EQ(kv.num_free_blocks(), 2);
  EXPECT_FALSE(kv.CanTake(1, 1));
  EXPECT_TRUE(kv.CanTake(0, 2));
  EXPECT_TRUE(kv.FloorsCovered());
  kv.CheckInvariants();
}

TEST(KvCacheManager, ChainsAreScopedBySeedAndVerifiedByTokens) {
  KvCacheManager kv(8, 4);
  const PrefixRoot a{0, HashSeed("tenant:a")};
  const PrefixRoot b{1, HashSeed("tenant:b")};
  const PrefixRoot a_same_hash_other_id{2, HashSeed("tenant:a")};
  auto toks = Tokens(10, 7);
  std::vector<int32_t> table;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 3, &table));
  RegisterFullBlocks(kv, a, toks, table);  // blocks 0 and 1 are full
  EXPECT_TRUE(kv.is_cached(0) && kv.is_cached(1) && !kv.is_cached(2));

  std::vector<int32_t> hits;
  PrefixChain chain;
  EXPECT_EQ(kv.MatchPrefix(a, toks, 2, &hits, &chain, true), 2);
  EXPECT_THAT(hits, ElementsAre(0, 1));
  EXPECT_EQ(chain.num_blocks, 2);
  hits.clear();
  EXPECT_EQ(kv.MatchPrefix(b, toks, 2, &hits, &chain, true), 0);
  // Same seed hash, different scope id: the exact id check refuses it.
  EXPECT_EQ(kv.MatchPrefix(a_same_hash_other_id, toks, 2, &hits, &chain, true), 0);
  auto other = toks;
  other[5] = 999;  // second block differs
  EXPECT_EQ(kv.MatchPrefix(a, other, 2, &hits, &chain, true), 1);
  EXPECT_EQ(kv.MatchPrefix(a, toks, 1, &hits, &chain, false), 1);  // max_blocks respected
  EXPECT_EQ(kv.MatchPrefix(PrefixRoot{}, toks, 2, &hits, &chain, true), 0);
  EXPECT_EQ(kv.prefix_query_tokens(), 40);
  EXPECT_EQ(kv.prefix_hit_tokens(), 12);
}

TEST(KvCacheManager, LruEvictsTailBlocksOfTheLeastRecentlyFreedFirst) {
  KvCacheManager kv(5, 2);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  auto t1 = Tokens(6, 0), t2 = Tokens(4, 100);
  std::vector<int32_t> s1, s2;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 3, &s1));
  ASSERT_TRUE(kv.Allocate(0, false, {}, 2, &s2));
  RegisterFullBlocks(kv, root, t1, s1);
  RegisterFullBlocks(kv, root, t2, s2);
  kv.Free(&s1);
  kv.Free(&s2);
  EXPECT_THAT(kv.EvictionOrder(), ElementsAre(2, 1, 0, 4, 3));
  EXPECT_EQ(kv.num_free_blocks(), 5);

  // A hit revives block 3 and 4 (s2's chain) and removes them from the LRU.
  std::vector<int32_t> hits, table;
  PrefixChain chain;
  ASSERT_EQ(kv.MatchPrefix(root, t2, 2, &hits, &chain, true), 2);
  ASSERT_TRUE(kv.Allocate(0, false, hits, 2, &table));
  EXPECT_THAT(table, ElementsAre(3, 4, 2, 1));  // fresh blocks evicted in LRU order
  EXPECT_THAT(kv.EvictionOrder(), ElementsAre(0));
  EXPECT_FALSE(kv.is_cached(2));
  // s1's chain lost blocks 1 and 2: only its first block still matches.
  hits.clear();
  EXPECT_EQ(kv.MatchPrefix(root, t1, 3, &hits, &chain, true), 1);
  EXPECT_THAT(hits, ElementsAre(0));
  kv.CheckInvariants();
}

TEST(KvCacheManager, ChildOfAnEvictedParentIsUnreachableAndReplacedOnReregistration) {
  KvCacheManager kv(4, 2);
  const PrefixRoot root{0, HashSeed("tenant:a")};
  auto toks = Tokens(4, 50);
  std::vector<int32_t> a, b, c;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &a));
  RegisterFullBlocks(kv, root, std::span(toks).first(2), a);  // block 0: the first block
  ASSERT_TRUE(kv.Allocate(0, false, {}, 2, &b));
  RegisterFullBlocks(kv, root, toks, b);  // block 1 duplicates 0 (uncached); block 2's parent: 0
  EXPECT_FALSE(kv.is_cached(1));
  EXPECT_TRUE(kv.is_cached(2));
  kv.Free(&a);
  ASSERT_TRUE(kv.Allocate(0, false, {}, 2, &c));  // free block 3, then evicts 0
  EXPECT_THAT(c, ElementsAre(3, 0));
  std::vector<int32_t> hits;
  PrefixChain chain;
  EXPECT_EQ(kv.MatchPrefix(root, toks, 2, &hits, &chain, true), 0);
  RegisterFullBlocks(kv, root, toks, c);  // block 0 now holds the second block, under parent 3
  EXPECT_FALSE(kv.is_cached(2));   // the stale entry with the same hash was dropped
  EXPECT_EQ(kv.MatchPrefix(root, toks, 2, &hits, &chain, true), 2);
  EXPECT_THAT(hits, ElementsAre(3, 0));
  kv.CheckInvariants();
}

TEST(KvCacheManager, SensitiveBlocksAreReportedForZeroingBeforeReuseOnly) {
  KvCacheManager kv(3, 2);
  const PrefixRoot root{0, HashSeed("tenant:z")};
  std::vector<int32_t> z, plain;
  ASSERT_TRUE(kv.Allocate(0, /*sensitive=*/true, {}, 2, &z));
  ASSERT_TRUE(kv.Allocate(1, false, {}, 1, &plain));
  auto toks = Tokens(2, 9);
  RegisterFullBlocks(kv, root, toks, z);  // block 0 cached, block 1 not
  EXPECT_THAT(kv.TakeBlocksToZero(), IsEmpty());  // fresh pool blocks are already zero
  kv.Free(&z);
  kv.Free(&plain);
  // The tenant's own cache hit on block 0 keeps its contents: nothing to zero.
  std::vector<int32_t> hits, t;
  PrefixChain chain;
  ASSERT_EQ(kv.MatchPrefix(root, Tokens(3, 9), 1, &hits, &chain, true), 1);
  ASSERT_TRUE(kv.Allocate(0, true, hits, 0, &t));
  EXPECT_THAT(kv.TakeBlocksToZero(), IsEmpty());
  kv.Free(&t);
  // Another tenant gets free block 1 (z's, zero it), then 2 (plain: no), then evicts 0 (z's).
  std::vector<int32_t> other;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 3, &other));
  EXPECT_THAT(other, ElementsAre(1, 2, 0));
  EXPECT_THAT(kv.TakeBlocksToZero(), ElementsAre(1, 0));
  EXPECT_THAT(kv.TakeBlocksToZero(), IsEmpty());
  kv.Free(&other);
  ASSERT_TRUE(kv.Allocate(1, false, {}, 3, &other));
  EXPECT_THAT(kv.TakeBlocksToZero(), IsEmpty());  // zeroed once, never again
}

TEST(KvCacheManager, SharedBlockIsChargedToItsFirstHolderUntilTheLastRefGoes) {
  KvCacheManager kv(4, 2);
  const PrefixRoot g{0, HashSeed("group:g")};
  auto toks = Tokens(3, 0);
  std::vector<int32_t> a, b, hits;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 2, &a));
  RegisterFullBlocks(kv, g, toks, a);
  PrefixChain chain;
  ASSERT_EQ(kv.MatchPrefix(g, toks, 1, &hits, &chain, true), 1);
  ASSERT_TRUE(kv.Allocate(1, false, hits, 1, &b));
  EXPECT_EQ(kv.ref_count(0), 2);
  EXPECT_EQ(kv.used_blocks(0), 2);
  EXPECT_EQ(kv.used_blocks(1), 1);
  kv.Free(&a);
  EXPECT_EQ(kv.used_blocks(0), 1);  // block 0 still read by tenant 1
  kv.Free(&b);
  EXPECT_EQ(kv.used_blocks(0), 0);
  EXPECT_EQ(kv.used_blocks(1), 0);
  kv.CheckInvariants();
}

}  // namespace
}  // namespace llmux
