// Lane-exclusive prefill (a step that runs a higher lane's prefill holds no lower-lane work)
// and CancelStep (a planned step that never ran leaves no trace).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "llmux/scheduler.h"
#include "unit/sched/sched_driver.h"

namespace llmux {
namespace {

using ::llmux::testing::Driver;
using ::llmux::testing::InLane;
using ::llmux::testing::Iota;
using ::llmux::testing::MakeScheduler;
using ::llmux::testing::Plan;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

SchedulerConfig ThreeLanes(bool exclusive = true) {
  SchedulerConfig c;
  c.num_kv_blocks = 32;
  c.block_size = 4;
  c.max_batched_tokens = 64;
  c.max_seqs = 6;
  c.max_model_len = 256;
  c.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}};
  c.lane_exclusive_prefill = exclusive;
  return c;
}

TEST(SchedulerIsolation, PremiumPrefillRunsAloneAndBatchDecodesResumeNextStep) {
  for (bool exclusive : {true, false}) {
    SCOPED_TRACE(exclusive ? "exclusive" : "shared");
    auto sched = MakeScheduler(ThreeLanes(exclusive));
    ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
    ASSERT_TRUE(sched->UpsertTenant("std", InLane(1)).ok());
    ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
    Driver d(sched.get(), 4);
    ASSERT_TRUE(d.Submit(1, "batch", Iota(5), 10).ok());
    ASSERT_TRUE(d.Submit(2, "batch", Iota(6, 50), 10).ok());
    ASSERT_TRUE(d.Submit(3, "std", Iota(3, 70), 10).ok());
    EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+3", "1:0+5", "2:0+6")) << "nothing ran before";
    ASSERT_TRUE(d.Submit(4, "prem", Iota(7, 90), 3).ok());
    if (exclusive) {
      // The premium prefill runs alone: no standard, no batch decode in its step.
      EXPECT_THAT(Plan(d.Step()), ElementsAre("4:0+7"));
      EXPECT_THAT(Plan(d.Step()), ElementsAre("4:7+1", "3:3+1", "1:5+1", "2:6+1"));
    } else {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("3:3+1", "1:5+1", "2:6+1", "4:0+7"));
      EXPECT_THAT(Plan(d.Step()), ElementsAre("4:7+1", "3:4+1", "1:6+1", "2:7+1"));
    }
    // A standard-lane prefill keeps the premium decode and drops the batch decodes.
    ASSERT_TRUE(d.Submit(5, "std", Iota(4, 110), 2).ok());
    if (exclusive) {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("4:8+1", "3:4+1", "5:0+4"));
      EXPECT_THAT(Plan(d.Step()), ElementsAre("3:5+1", "5:4+1", "1:6+1", "2:7+1"))
          << "premium 4 finished; batch resumes where it stopped";
    }
    sched->CheckInvariants();
  }
}

TEST(SchedulerIsolation, ChunkedPremiumPrefillKeepsLowerLanesOutUntilItsLastChunk) {
  SchedulerConfig c = ThreeLanes();
  c.long_prefill_chunk = 8;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "batch", Iota(5), 10).ok());
  d.Step();
  ASSERT_TRUE(d.Submit(2, "prem", Iota(20, 100), 2).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+8"));
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:8+8"));
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:16+4"));
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:20+1", "1:5+1"));
}

TEST(SchedulerIsolation, BlockedPremiumPrefillDoesNotStallLowerLanes) {
  auto sched = MakeScheduler(ThreeLanes());
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  // Room for one premium request of cost 4 + 4 = 8 at a time.
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0, 12)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "batch", Iota(5), 10).ok());
  ASSERT_TRUE(d.Submit(2, "batch", Iota(6, 50), 10).ok());
  d.Step();
  ASSERT_TRUE(d.Submit(3, "prem", Iota(4, 100), 4).ok());
  ASSERT_TRUE(d.Submit(4, "prem", Iota(4, 200), 4).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+4"));
  // Request 4 waits on its tenant's in-flight budget: no premium prefill can run, so the step
  // is the usual one (work-conserving), batch decodes included.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:4+1", "1:5+1", "2:6+1"));
  EXPECT_EQ(sched->Stats().waiting, 1);
  sched->CheckInvariants();
}

TEST(SchedulerIsolation, CancelledStepIsPlannedAgainAndChargesNothing) {
  auto sched = MakeScheduler(ThreeLanes());
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  const TenantId batch = *sched->FindTenant("batch");
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "batch", Iota(9), 6).ok());
  ASSERT_TRUE(d.Submit(2, "batch", Iota(6, 50), 6).ok());
  // A cancelled first step: admissions stand, progress and charges do not.
  const double counter0 = sched->GetTenantStats(batch).fair_share_counter;
  SchedulerOutput cancelled = d.Cancel();
  EXPECT_THAT(Plan(cancelled), ElementsAre("1:0+9", "2:0+6"));
  EXPECT_EQ(cancelled.admitted.size(), 2u);
  EXPECT_EQ(sched->GetTenantStats(batch).fair_share_counter, counter0);
  EXPECT_EQ(sched->Stats().running, 2);
  sched->CheckInvariants();
  SchedulerOutput again = d.Step();
  EXPECT_THAT(Plan(again), ElementsAre("1:0+9", "2:0+6"));
  EXPECT_THAT(again.admitted, IsEmpty()) << "admitted once, in the cancelled step";
  // A cancelled decode step, then a premium arrival: the premium prefill runs alone, and the
  // batch decodes are planned from the same positions as before the cancel.
  const double counter1 = sched->GetTenantStats(batch).fair_share_counter;
  const int32_t free1 = sched->Stats().free_blocks;
  EXPECT_THAT(Plan(d.Cancel()), ElementsAre("1:9+1", "2:6+1"));
  EXPECT_EQ(sched->GetTenantStats(batch).fair_share_counter, counter1);
  EXPECT_EQ(sched->Stats().free_blocks, free1);
  ASSERT_TRUE(d.Submit(3, "prem", Iota(5, 100), 2).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+5"));
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:5+1", "1:9+1", "2:6+1"));
  while (sched->HasWork()) d.Step();
  EXPECT_EQ(d.outputs(1), 6);
  EXPECT_EQ(d.outputs(2), 6);
  EXPECT_EQ(sched->Stats().kv_usage, 0);
  sched->CheckInvariants();
}

TEST(SchedulerIsolation, CancellingEveryOtherStepGivesTheSameRun) {
  // Fair share decides the order among three batch tenants; cancelling every other planned
  // step must not change any later decision.
  auto run = [](bool cancel) {
    auto sched = MakeScheduler(ThreeLanes());
    for (const char* t : {"a", "b", "c"}) EXPECT_TRUE(sched->UpsertTenant(t, InLane(2)).ok());
    Driver d(sched.get(), 4);
    uint64_t id = 1;
    for (const char* t : {"a", "b", "c"}) {
      for (int i = 0; i < 4; ++i, ++id) {
        EXPECT_TRUE(d.Submit(id, t, Iota(3 + static_cast<int32_t>(id % 5), 10 * static_cast<int32_t>(id)), 4).ok());
      }
    }
    std::vector<std::vector<std::string>> plans;
    for (int step = 0; sched->HasWork(); ++step) {
      if (cancel && step % 2 == 0) d.Cancel();
      plans.push_back(Plan(d.Step()));
      sched->CheckInvariants();
    }
    return plans;
  };
  EXPECT_EQ(run(true), run(false));
}

// `order: arrival` (the benchmarks' FIFO baseline): a free slot goes to the oldest request of
// any tenant, where a fair-share lane gives it to the tenant with the least service so far.
TEST(SchedulerIsolation, ArrivalOrderLaneAdmitsTheOldestRequestOfAnyTenant) {
  for (bool arrival : {false, true}) {
    SCOPED_TRACE(arrival ? "arrival" : "fair_share");
    SchedulerConfig c;
    c.num_kv_blocks = 32;
    c.block_size = 4;
    c.max_batched_tokens = 64;
    c.max_seqs = 1;
    c.max_model_len = 256;
    c.lanes = {LaneConfig{"only", 0, arrival}};
    auto sched = MakeScheduler(c);
    ASSERT_TRUE(sched->UpsertTenant("a", InLane(0)).ok());
    ASSERT_TRUE(sched->UpsertTenant("b", InLane(0)).ok());
    Driver d(sched.get(), 4);
    ASSERT_TRUE(d.Submit(1, "a", Iota(4), 1).ok());
    ASSERT_TRUE(d.Submit(2, "a", Iota(4, 20), 1).ok());
    ASSERT_TRUE(d.Submit(3, "b", Iota(4, 40), 1).ok());
    EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+4"));
    if (arrival) {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+4")) << "a's second request came first";
      EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+4"));
    } else {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+4")) << "b has had no service yet";
      EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+4"));
    }
    sched->CheckInvariants();
  }
}

}  // namespace
}  // namespace llmux
