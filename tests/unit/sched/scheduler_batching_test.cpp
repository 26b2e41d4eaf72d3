// Continuous batching, chunked prefill, budgets, rejection and abort: exact per-step plans.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "llmux/scheduler.h"
#include "unit/sched/sched_driver.h"

namespace llmux {
namespace {

using ::llmux::testing::Driver;
using ::llmux::testing::Iota;
using ::llmux::testing::MakeScheduler;
using ::llmux::testing::Plan;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

SchedulerConfig SmallConfig() {
  SchedulerConfig c;
  c.num_kv_blocks = 64;
  c.block_size = 4;
  c.max_batched_tokens = 16;
  c.max_seqs = 4;
  c.max_model_len = 128;
  return c;
}

TEST(SchedulerBatching, StepTokenBudgetCapsPrefillChunksButNeverDecodes) {
  SchedulerConfig c = SmallConfig();
  c.max_seqs = 2;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(12), 2).ok());
  sched->SetStepTokenBudget(5);
  EXPECT_EQ(Plan(d.Step()), std::vector<std::string>{"1:0+5"}) << " at step 0";
  EXPECT_EQ(Plan(d.Step()), std::vector<std::string>{"1:5+5"}) << " at step 1";
  // Below max_seqs it is raised to max_seqs (2): every running sequence can still decode.
  sched->SetStepTokenBudget(1);
  ASSERT_TRUE(d.Submit(2, "a", Iota(6, 100), 1).ok());
  EXPECT_EQ(Plan(d.Step()), std::vector<std::string>{"1:10+2"}) << " at step 2";
  EXPECT_EQ(Plan(d.Step()), (std::vector<std::string>{"1:12+1", "2:0+1"})) << " at step 3";
  // 0 restores max_batched_tokens (16); above it is capped there.
  sched->SetStepTokenBudget(0);
  EXPECT_EQ(Plan(d.Step()), std::vector<std::string>{"2:1+5"}) << " at step 4";
}

TEST(SchedulerBatching, DecodesJoinAndLeaveEveryStep) {
  auto sched = MakeScheduler(SmallConfig());
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(10), 3).ok());
  ASSERT_TRUE(d.Submit(2, "a", Iota(6, 100), 2).ok());

  const std::vector<std::vector<std::string>> want = {
      {"1:0+10", "2:0+6"},  // both prompts fit the 16-token budget
      {"1:10+1", "2:6+1"},  // decodes
      {"1:11+1"},           // 2 finished after 2 tokens
      {},
  };
  for (size_t step = 0; step < want.size(); ++step) {
    if (step == 2) {
      ASSERT_TRUE(d.Submit(3, "a", Iota(5, 200), 1).ok());
    }
    auto out = d.Step();
    if (step == 2) {
      EXPECT_THAT(Plan(out), ElementsAre("1:11+1", "3:0+5")) << " at step " << step;
    } else {
      EXPECT_EQ(Plan(out), want[step]) << " at step " << step;
    }
  }
  EXPECT_EQ(d.finished().at(1).reason, FinishReason::kLength);
  EXPECT_EQ(d.finished().at(1).num_output_tokens, 3);
  EXPECT_EQ(d.finished().at(3).num_output_tokens, 1);
  EXPECT_FALSE(sched->HasWork());
  EXPECT_EQ(sched->Stats().free_blocks, 64);
  sched->CheckInvariants();
}

TEST(SchedulerBatching, LongPromptIsChunkedAndDecodesGoFirst) {
  auto cfg = SmallConfig();
  auto sched = MakeScheduler(cfg);
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(3), 5).ok());
  auto out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("1:0+3")) << " at step 0";
  ASSERT_TRUE(d.Submit(2, "a", Iota(40, 50), 2).ok());
  const std::vector<std::vector<std::string>> want = {
      {"1:3+1", "2:0+15"},   // step 1: the decode first, the prompt gets what is left
      {"1:4+1", "2:15+15"},  // step 2
      {"1:5+1", "2:30+10"},  // step 3: last chunk samples
      {"1:6+1", "2:40+1"},   // step 4
  };
  for (size_t i = 0; i < want.size(); ++i) {
    out = d.Step();
    EXPECT_EQ(Plan(out), want[i]) << " at step " << i + 1;
    EXPECT_LE(out.num_batched_tokens, 16) << " at step " << i + 1;
  }
  EXPECT_TRUE(out.seqs[1].samples);
}

TEST(SchedulerBatching, LongPrefillChunkCapsOneSequence) {
  auto cfg = SmallConfig();
  cfg.long_prefill_chunk = 8;
  auto sched = MakeScheduler(cfg);
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(20), 1).ok());
  ASSERT_TRUE(d.Submit(2, "a", Iota(5, 30), 1).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+8", "2:0+5")) << " at step 0";
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:8+8")) << " at step 1";
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:16+4")) << " at step 2";
  EXPECT_THAT(Plan(d.Step()), IsEmpty()) << " at step 3";
}

TEST(SchedulerBatching, SeqCapLimitsRunningSet) {
  auto cfg = SmallConfig();
  cfg.max_seqs = 2;
  auto sched = MakeScheduler(cfg);
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  Driver d(sched.get(), 4);
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(d.Submit(id, "a", Iota(2), 2).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+2", "2:0+2")) << " at step 0";
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:2+1", "2:2+1")) << " at step 1";
  // Request 3 starts like 1 and 2: it adopts a finished one's partial tail block.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:1+1")) << " at step 2";
}

TEST(SchedulerBudget, InflightTokensHoldBackLaterRequests) {
  auto sched = MakeScheduler(SmallConfig());
  TenantLimits lim;
  lim.max_inflight_tokens = 30;
  auto t = sched->UpsertTenant("a", lim);
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(sched->UpsertTenant("b", {}).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(10), 10).ok());  // 20 tokens
  ASSERT_TRUE(d.Submit(2, "a", Iota(5, 500), 10).ok());  // 15: 35 > 30, waits
  ASSERT_TRUE(d.Submit(3, "b", Iota(1), 1).ok());    // another tenant is not held back
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+10", "3:0+1")) << " at step 0";
  EXPECT_EQ(sched->GetTenantStats(*t).inflight_tokens, 20);
  EXPECT_EQ(sched->GetTenantStats(*t).waiting, 1);
  for (int step = 1; step < 10; ++step) {
    EXPECT_THAT(Plan(d.Step()), ElementsAre("1:" + std::to_string(9 + step) + "+1"))
        << " at step " << step;
  }
  // Request 1 finished at step 9; its budget returns and 2 starts at once.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+5")) << " at step 10";
  EXPECT_EQ(sched->GetTenantStats(*t).inflight_tokens, 15);
  EXPECT_EQ(sched->GetTenantStats(*t).inflight_high_water, 20);
}

TEST(SchedulerBudget, AbortFreesBudgetAndBlocksAtOnce) {
  auto sched = MakeScheduler(SmallConfig());
  TenantLimits lim;
  lim.max_inflight_tokens = 30;
  auto t = sched->UpsertTenant("a", lim);
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(10), 10).ok());
  ASSERT_TRUE(d.Submit(2, "a", Iota(5, 500), 10).ok());
  d.Step();
  EXPECT_EQ(sched->GetTenantStats(*t).blocks_in_use, 3);
  d.Abort(1);
  EXPECT_EQ(sched->GetTenantStats(*t).blocks_in_use, 0);
  EXPECT_EQ(sched->GetTenantStats(*t).inflight_tokens, 0);
  EXPECT_EQ(sched->Stats().free_blocks, 64);
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+5")) << " at step 1";
  EXPECT_FALSE(sched->Abort(1));
  sched->CheckInvariants();
}

TEST(SchedulerBudget, NeverFittingRequestsAreRejectedAtSubmit) {
  auto cfg = SmallConfig();
  cfg.num_kv_blocks = 10;  // 40 tokens
  auto sched = MakeScheduler(cfg);
  TenantLimits a;
  a.max_inflight_tokens = 50;
  ASSERT_TRUE(sched->UpsertTenant("a", a).ok());
  TenantLimits r;
  r.reserved_kv_tokens = 16;  // 4 blocks others can never use
  ASSERT_TRUE(sched->UpsertTenant("r", r).ok());
  auto submit = [&](uint64_t id, const char* tenant, int32_t prompt, int32_t max_new) {
    return sched->Submit(SchedRequest{id, tenant, Iota(prompt), max_new, 0});
  };
  EXPECT_EQ(submit(1, "a", 100, 29).code(), StatusCode::kInvalidArgument);  // 129 > 128
  EXPECT_EQ(submit(2, "a", 30, 21).code(), StatusCode::kResourceExhausted);  // 51 > 50
  // 6 blocks = 24 tokens are all "a" can ever get: 25 tokens need 24 in KV -> fits.
  EXPECT_TRUE(submit(3, "a", 20, 5).ok());
  EXPECT_EQ(submit(4, "a", 20, 6).code(), StatusCode::kResourceExhausted);
  // The reserving tenant itself can use the whole pool.
  EXPECT_TRUE(submit(5, "r", 30, 10).ok());
  EXPECT_EQ(submit(6, "nobody", 3, 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(submit(3, "a", 3, 1).code(), StatusCode::kInvalidArgument);  // duplicate id
  EXPECT_EQ(submit(7, "a", 0, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(submit(8, "a", 3, 0).code(), StatusCode::kInvalidArgument);
  Status st = submit(4, "a", 20, 6);
  EXPECT_NE(st.message().find("KV blocks"), std::string::npos) << st.message();
}

TEST(SchedulerBudget, PolicyReloadRejectsQueuedRequestsThatCanNoLongerFit) {
  auto sched = MakeScheduler(SmallConfig());
  ASSERT_TRUE(sched->UpsertTenant("a", {}).ok());
  TenantLimits busy;
  busy.max_inflight_tokens = 10;
  ASSERT_TRUE(sched->UpsertTenant("b", busy).ok());
  ASSERT_TRUE(sched->Submit(SchedRequest{1, "b", Iota(5), 5, 0}).ok());
  ASSERT_TRUE(sched->Submit(SchedRequest{2, "a", Iota(10), 10, 0}).ok());
  TenantLimits lower;
  lower.max_inflight_tokens = 15;
  ASSERT_TRUE(sched->UpsertTenant("a", lower).ok());
  auto rejected = sched->TakeRejected();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].first, 2u);
  EXPECT_EQ(rejected[0].second.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(sched->Stats().waiting, 1);
  sched->CheckInvariants();
}

TEST(SchedulerConfigTest, RejectsInconsistentConfigs) {
  auto c = SmallConfig();
  c.max_batched_tokens = 2;
  EXPECT_EQ(Scheduler::Create(c).status().code(), StatusCode::kInvalidArgument);
  c = SmallConfig();
  c.lanes.clear();
  EXPECT_EQ(Scheduler::Create(c).status().code(), StatusCode::kInvalidArgument);
  auto sched = MakeScheduler(SmallConfig());
  TenantLimits bad;
  bad.lane = 3;
  EXPECT_EQ(sched->UpsertTenant("a", bad).status().code(), StatusCode::kInvalidArgument);
  TenantLimits huge;
  huge.reserved_kv_tokens = 64 * 4 + 1;
  EXPECT_EQ(sched->UpsertTenant("a", huge).status().code(), StatusCode::kInvalidArgument);
  TenantLimits shared;
  shared.prefix_cache = PrefixCacheMode::kShared;
  EXPECT_EQ(sched->UpsertTenant("a", shared).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llmux
