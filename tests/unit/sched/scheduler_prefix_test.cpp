// Prefix cache isolation through the scheduler, and zero_kv_on_free reporting.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "llmux/scheduler.h"
#include "unit/sched/sched_driver.h"

namespace llmux {
namespace {

using ::llmux::testing::Driver;
using ::llmux::testing::Iota;
using ::llmux::testing::Plan;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

SchedulerConfig Config() {
  SchedulerConfig c;
  c.num_kv_blocks = 32;
  c.block_size = 4;
  c.max_batched_tokens = 64;
  c.max_seqs = 8;
  c.max_model_len = 128;
  return c;
}

TenantLimits Cache(PrefixCacheMode mode, std::string group = "") {
  TenantLimits l;
  l.prefix_cache = mode;
  l.prefix_cache_group = std::move(group);
  return l;
}

// Runs `id` alone to completion; returns its num_cached_tokens.
int32_t RunOne(Driver& d, uint64_t id, const char* tenant, std::vector<int32_t> prompt) {
  EXPECT_TRUE(d.Submit(id, tenant, std::move(prompt), 2).ok());
  int32_t cached = -1;
  for (int i = 0; i < 4; ++i) {
    auto out = d.Step();
    for (const AdmittedSeq& a : out.admitted) {
      if (a.id == id) cached = a.num_cached_tokens;
    }
  }
  EXPECT_FALSE(d.known(id)) << "request " << id << " did not finish";
  return cached;
}

TEST(SchedulerPrefixCache, PrivateCachesAreIsolatedBetweenTenants) {
  auto sched = std::move(Scheduler::Create(Config())).value();
  ASSERT_TRUE(sched->UpsertTenant("a", Cache(PrefixCacheMode::kPrivate)).ok());
  ASSERT_TRUE(sched->UpsertTenant("b", Cache(PrefixCacheMode::kPrivate)).ok());
  Driver d(sched.get(), 4);
  const auto prompt = Iota(14, 7);  // 3 full blocks + 2 tokens
  EXPECT_EQ(RunOne(d, 1, "a", prompt), 0);
  EXPECT_EQ(RunOne(d, 2, "b", prompt), 0);   // B sending A's exact prompt: no hit
  // A's repeat: its 3 cached blocks, and the first token of its partial tail (the last prompt
  // token is always computed).
  EXPECT_EQ(RunOne(d, 3, "a", prompt), 13);
  auto st = sched->Stats();
  EXPECT_EQ(st.prefix_query_tokens, 42);
  EXPECT_EQ(st.prefix_hit_tokens, 13);
  // The repeat's first step computes only the last prompt token.
  ASSERT_TRUE(d.Submit(4, "a", prompt, 1).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("4:13+1"));
}

TEST(SchedulerPrefixCache, SharedGroupSharesAndOffDisables) {
  auto sched = std::move(Scheduler::Create(Config())).value();
  ASSERT_TRUE(sched->UpsertTenant("a", Cache(PrefixCacheMode::kShared, "team")).ok());
  ASSERT_TRUE(sched->UpsertTenant("b", Cache(PrefixCacheMode::kShared, "team")).ok());
  ASSERT_TRUE(sched->UpsertTenant("c", Cache(PrefixCacheMode::kPrivate)).ok());
  ASSERT_TRUE(sched->UpsertTenant("off", Cache(PrefixCacheMode::kOff)).ok());
  Driver d(sched.get(), 4);
  const auto prompt = Iota(9, 300);  // 2 full blocks + 1
  EXPECT_EQ(RunOne(d, 1, "a", prompt), 0);
  EXPECT_EQ(RunOne(d, 2, "b", prompt), 8);  // same group
  EXPECT_EQ(RunOne(d, 3, "c", prompt), 0);  // a private tenant cannot read the group's blocks
  EXPECT_EQ(RunOne(d, 4, "off", prompt), 0);
  EXPECT_EQ(RunOne(d, 5, "off", prompt), 0);  // and never registers its own
  EXPECT_EQ(RunOne(d, 6, "c", prompt), 8);
  EXPECT_EQ(sched->Stats().prefix_query_tokens, 9 * 4);  // "off" requests are not queries
}

TEST(SchedulerPrefixCache, ConcurrentSharersHoldOneCopy) {
  auto sched = std::move(Scheduler::Create(Config())).value();
  auto a = sched->UpsertTenant("a", {});
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(9), 5).ok());
  d.Step();
  ASSERT_TRUE(d.Submit(2, "a", Iota(9), 5).ok());
  auto out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("1:9+1", "2:8+1"));
  EXPECT_EQ(out.seqs[0].block_table[0], out.seqs[1].block_table[0]);
  EXPECT_EQ(out.seqs[0].block_table[1], out.seqs[1].block_table[1]);
  EXPECT_NE(out.seqs[0].block_table[2], out.seqs[1].block_table[2]);
  EXPECT_EQ(sched->GetTenantStats(*a).blocks_in_use, 4);  // 2 shared + 1 each
  sched->CheckInvariants();
}

TEST(SchedulerPrefixCache, FinishedTailIsAdoptedByTheNextRequestThatStartsTheSameWay) {
  auto sched = std::move(Scheduler::Create(Config())).value();
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  Driver d(sched.get(), 4);
  const auto prompt = Iota(3, 50);  // shorter than a block: only a partial tail can be reused
  ASSERT_TRUE(d.Submit(1, "a", prompt, 1).ok());
  auto out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("1:0+3"));
  const int32_t tail = out.seqs[0].block_table[0];
  EXPECT_FALSE(d.known(1));
  // Two repeats at once: the first adopts the tail block, the second finds nothing left.
  ASSERT_TRUE(d.Submit(2, "a", prompt, 1).ok());
  ASSERT_TRUE(d.Submit(3, "a", prompt, 1).ok());
  out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("2:2+1", "3:0+3"));
  EXPECT_EQ(out.seqs[0].block_table[0], tail);
  EXPECT_NE(out.seqs[1].block_table[0], tail);
  ASSERT_EQ(out.admitted.size(), 2u);
  EXPECT_EQ(out.admitted[0].num_cached_tokens, 2);
  EXPECT_EQ(out.admitted[1].num_cached_tokens, 0);
  EXPECT_FALSE(d.known(2) || d.known(3));
  sched->CheckInvariants();
  // Both left their 3 computed tokens as tails: two longer prompts adopt one each.
  ASSERT_TRUE(d.Submit(5, "a", Iota(5, 50), 1).ok());
  ASSERT_TRUE(d.Submit(6, "a", Iota(5, 50), 1).ok());
  out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("5:3+2", "6:3+2"));
  EXPECT_EQ(sched->Stats().prefix_hit_tokens, 2 + 3 + 3);
  sched->CheckInvariants();
}

TEST(SchedulerZeroKv, FreedBlocksOfSensitiveTenantsAreZeroedBeforeReuse) {
  auto c = Config();
  c.num_kv_blocks = 4;
  auto sched = std::move(Scheduler::Create(c)).value();
  TenantLimits z = Cache(PrefixCacheMode::kOff);
  z.zero_kv_on_free = true;
  ASSERT_TRUE(sched->UpsertTenant("z", z).ok());
  ASSERT_TRUE(sched->UpsertTenant("p", Cache(PrefixCacheMode::kOff)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "z", Iota(7), 1).ok());
  auto out = d.Step();
  EXPECT_THAT(out.seqs[0].block_table, ElementsAre(0, 1));
  EXPECT_THAT(out.blocks_to_zero, IsEmpty());
  ASSERT_TRUE(d.Submit(2, "p", Iota(16, 40), 1).ok());
  out = d.Step();
  EXPECT_THAT(out.seqs[0].block_table, ElementsAre(2, 3, 1, 0));
  EXPECT_THAT(out.blocks_to_zero, ElementsAre(1, 0)) << "z's freed blocks, before p writes them";
  ASSERT_TRUE(d.Submit(3, "z", Iota(3), 1).ok());
  out = d.Step();
  EXPECT_THAT(out.seqs[0].block_table, ElementsAre(0));  // p's freed block: no zeroing needed
  EXPECT_THAT(out.blocks_to_zero, IsEmpty());
}

}  // namespace
}  // namespace llmux
