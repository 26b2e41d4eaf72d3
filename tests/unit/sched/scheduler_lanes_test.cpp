// Priority lanes, preemption (victim order, resume), aging and reserved capacity.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "llmux/scheduler.h"
#include "unit/sched/sched_driver.h"

namespace llmux {
namespace {

using ::llmux::testing::Driver;
using ::llmux::testing::FakeToken;
using ::llmux::testing::InLane;
using ::llmux::testing::Iota;
using ::llmux::testing::MakeScheduler;
using ::llmux::testing::Plan;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

SchedulerConfig ThreeLanes() {
  SchedulerConfig c;
  c.num_kv_blocks = 16;
  c.block_size = 4;
  c.max_batched_tokens = 64;
  c.max_seqs = 4;
  c.max_model_len = 256;
  c.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}};
  // These tests pin preemption, victim order, aging and floors in steps where a higher lane's
  // admission shares the step with lower lanes' decodes; lane-exclusive prefill (which keeps
  // those decodes out of such a step) has its own tests in scheduler_isolation_test.cpp.
  c.lane_exclusive_prefill = false;
  return c;
}

std::vector<uint64_t> AdmittedIds(const SchedulerOutput& out) {
  std::vector<uint64_t> ids;
  for (const AdmittedSeq& a : out.admitted) ids.push_back(a.id);
  return ids;
}

TEST(SchedulerLanes, PremiumRunsInTheStepItArrivesWithFreeCapacity) {
  auto sched = MakeScheduler(ThreeLanes());
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "batch", Iota(5), 10).ok());
  ASSERT_TRUE(d.Submit(2, "batch", Iota(5), 10).ok());
  d.Step();
  ASSERT_TRUE(d.Submit(3, "prem", Iota(4, 10), 2).ok());
  auto out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("1:5+1", "2:5+1", "3:0+4")) << " at step 1";
  EXPECT_THAT(out.preempted, IsEmpty());
}

TEST(SchedulerLanes, PremiumPreemptsSaturatingBatchWorkAndBatchResumesExactly) {
  auto sched = MakeScheduler(ThreeLanes());
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  Driver d(sched.get(), 4);
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(d.Submit(id, "batch", Iota(13, 100 * id), 50).ok());
  auto out = d.Step();
  EXPECT_THAT(Plan(out), ElementsAre("1:0+13", "2:0+13", "3:0+13", "4:0+13")) << " at step 0";
  EXPECT_EQ(sched->Stats().running, 4);
  EXPECT_EQ(sched->Stats().free_blocks, 0);  // every slot and every block is taken

  ASSERT_TRUE(d.Submit(5, "prem", Iota(4, 900), 2).ok());
  out = d.Step();
  // Victim: same lane and tenant, equal computed tokens -> the latest admitted (4).
  EXPECT_THAT(Plan(out), ElementsAre("1:13+1", "2:13+1", "3:13+1", "5:0+4")) << " at step 1";
  EXPECT_THAT(out.preempted, ElementsAre(4u)) << " at step 1";
  EXPECT_THAT(AdmittedIds(out), ElementsAre(5u)) << " at step 1";
  EXPECT_EQ(sched->Stats().num_preemptions, 1);

  out = d.Step();  // no slot for 4 while 5 runs
  // Decodes run highest lane first.
  EXPECT_THAT(Plan(out), ElementsAre("5:4+1", "1:14+1", "2:14+1", "3:14+1")) << " at step 2";
  out = d.Step();
  // 4 recomputes prompt + its one generated token. Of its 3 cached full blocks the tail one
  // was evicted first (LRU, tail before head) for 5's decode; the first 2 are hits.
  EXPECT_THAT(Plan(out), ElementsAre("1:15+1", "2:15+1", "3:15+1", "4:8+6")) << " at step 3";
  EXPECT_EQ(out.admitted[0].num_cached_tokens, 0);  // reported for the first admission
  ASSERT_EQ(out.admitted.size(), 1u);
  EXPECT_TRUE(out.admitted[0].resumed);
  EXPECT_EQ(d.outputs(4), 2);  // output continued with its 2nd token, not a repeat of the 1st
  auto tokens = sched->RequestTokens(4);
  ASSERT_TRUE(tokens.has_value());
  EXPECT_EQ(tokens->second, 2);
  EXPECT_EQ(tokens->first[13], FakeToken(4, 0));
  EXPECT_EQ(tokens->first[14], FakeToken(4, 1));
  sched->CheckInvariants();
}

TEST(SchedulerLanes, VictimIsTenantFurthestAboveFairShareThenLeastComputed) {
  auto c = ThreeLanes();
  c.num_kv_blocks = 64;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("heavy", InLane(1)).ok());
  ASSERT_TRUE(sched->UpsertTenant("light", InLane(1)).ok());
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "heavy", Iota(30), 40).ok());
  ASSERT_TRUE(d.Submit(2, "heavy", Iota(8), 40).ok());
  ASSERT_TRUE(d.Submit(3, "light", Iota(4), 40).ok());
  ASSERT_TRUE(d.Submit(4, "light", Iota(2), 40).ok());
  // VTC order: heavy (tie, lower id), then light twice (its counter stays lower), then heavy.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+30", "3:0+4", "4:0+2", "2:0+8")) << " at step 0";
  ASSERT_TRUE(d.Submit(5, "prem", Iota(3), 1).ok());
  auto out = d.Step();
  // heavy's counter (38 prefill + 2 decodes) is above light's (6 + 2 decodes): heavy's least
  // computed sequence (2) goes, even though light's 4 has computed less.
  EXPECT_THAT(out.preempted, ElementsAre(2u)) << " at step 1";
  EXPECT_THAT(Plan(out), ElementsAre("1:30+1", "3:4+1", "4:2+1", "5:0+3")) << " at step 1";
}

TEST(SchedulerLanes, HigherLaneIsAdmittedFirstAndLowerLaneWaits) {
  auto c = ThreeLanes();
  c.max_seqs = 2;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  ASSERT_TRUE(sched->UpsertTenant("std", InLane(1)).ok());
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "batch", Iota(3), 2).ok());
  ASSERT_TRUE(d.Submit(2, "std", Iota(3), 2).ok());
  ASSERT_TRUE(d.Submit(3, "prem", Iota(3), 2).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+3", "2:0+3")) << " at step 0";
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:3+1", "2:3+1")) << " at step 1";
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+3")) << " at step 2";
}

TEST(SchedulerLanes, AgingPromotesLongWaitingWorkOneLane) {
  for (int64_t max_wait : {0, 5}) {
    auto c = ThreeLanes();
    c.max_seqs = 1;
    c.lanes = {{"premium", 0}, {"batch", max_wait}};
    auto sched = MakeScheduler(c);
    ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
    ASSERT_TRUE(sched->UpsertTenant("batch", InLane(1)).ok());
    Driver d(sched.get(), 4);
    ASSERT_TRUE(d.Submit(100, "batch", Iota(2), 1).ok());
    for (uint64_t id = 1; id <= 12; ++id) ASSERT_TRUE(d.Submit(id, "prem", Iota(2), 2).ok());
    int64_t admitted_at = -1;
    for (int step = 0; step < 20 && admitted_at < 0; ++step) {
      auto out = d.Step();
      for (const AdmittedSeq& a : out.admitted) {
        if (a.id == 100) admitted_at = step;
      }
    }
    // Slots free at even steps; at step 6 the batch request has waited >= 5 and its lane's
    // fair-share counter (0) is below premium's.
    EXPECT_EQ(admitted_at, max_wait == 0 ? -1 : 6) << "max_wait " << max_wait;
  }
}

TEST(SchedulerReservations, OthersCannotTakeTheFloorAndPreemptionNeverCrossesIt) {
  auto c = ThreeLanes();
  c.num_kv_blocks = 8;
  auto sched = MakeScheduler(c);
  TenantLimits r = InLane(2);
  r.reserved_kv_tokens = 8;  // 2 blocks
  r.reserved_seqs = 1;
  auto rid = sched->UpsertTenant("r", r);
  auto bid = sched->UpsertTenant("b", InLane(1));
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  ASSERT_TRUE(rid.ok() && bid.ok());
  Driver d(sched.get(), 4);
  for (uint64_t id = 1; id <= 4; ++id) ASSERT_TRUE(d.Submit(id, "b", Iota(8, 100 * id), 4).ok());
  auto out = d.Step();
  // 3 slots and 6 blocks: the 4th slot and 2 blocks are r's even though r is idle.
  EXPECT_THAT(Plan(out), ElementsAre("1:0+8", "2:0+8", "3:0+8")) << " at step 0";
  EXPECT_EQ(sched->GetTenantStats(*bid).blocks_in_use, 6);
  ASSERT_TRUE(d.Submit(10, "r", Iota(5), 20).ok());
  out = d.Step();
  // 1 and 2 need a 3rd block each: only r's floor is free, so b's latest sequence (3) yields.
  // b cannot re-admit 3 (the blocks left are r's), yet r is admitted into its own floor even
  // though it sits in a lower lane than the blocked b.
  EXPECT_THAT(Plan(out), ElementsAre("1:8+1", "2:8+1", "10:0+5")) << " at step 1";
  EXPECT_THAT(out.preempted, ElementsAre(3u)) << " at step 1";
  EXPECT_THAT(AdmittedIds(out), ElementsAre(10u)) << " at step 1";
  EXPECT_EQ(sched->GetTenantStats(*rid).blocks_in_use, 2);
  // Premium arrives: the victim must be b's work (lane 1), never r's (lane 2, inside floor).
  ASSERT_TRUE(d.Submit(20, "prem", Iota(3), 2).ok());
  out = d.Step();
  EXPECT_THAT(AdmittedIds(out), ElementsAre(20u)) << " at step 2";
  EXPECT_THAT(Plan(out), ElementsAre("1:9+1", "10:5+1", "20:0+3")) << " at step 2";
  EXPECT_THAT(out.preempted, ElementsAre(2u)) << " at step 2";
  for (uint64_t id : out.preempted) EXPECT_NE(id, 10u) << " at step 2";
  EXPECT_EQ(sched->GetTenantStats(*rid).running, 1);
  sched->CheckInvariants();
}

TEST(SchedulerStatic, BatchRunsToCompletionBeforeTheNextForms) {
  auto c = ThreeLanes();
  c.batching = BatchingMode::kStatic;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("a", InLane(1)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "a", Iota(3), 1).ok());
  ASSERT_TRUE(d.Submit(2, "a", Iota(3), 3).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+3", "2:0+3")) << " at step 0";
  ASSERT_TRUE(d.Submit(3, "a", Iota(3), 1).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:3+1")) << " at step 1";  // 3 may not join
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:4+1")) << " at step 2";
  // Same prompt as request 1: 2 of its 3 tokens come from 1's partial tail block.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("3:2+1")) << " at step 3";
}

}  // namespace
}  // namespace llmux

namespace llmux {
namespace {

// Per-request lanes (OpenAI service_tier): within one tenant, a request in a higher lane is
// admitted ahead of the tenant's earlier requests in lower lanes; FIFO within a lane.
TEST(SchedulerRequestLanes, PriorityRequestOvertakesTheTenantsFlexRequests) {
  SchedulerConfig c = ThreeLanes();
  c.max_seqs = 1;  // one at a time: admission order is the whole story
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("t", InLane(1)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.SubmitInLane(1, "t", Iota(4, 10), 1, /*lane=*/2).ok());  // flex
  ASSERT_TRUE(d.SubmitInLane(2, "t", Iota(4, 20), 1, /*lane=*/2).ok());  // flex
  ASSERT_TRUE(d.Submit(3, "t", Iota(4, 30), 1).ok());                     // the tenant's lane
  ASSERT_TRUE(d.SubmitInLane(4, "t", Iota(4, 40), 1, /*lane=*/0).ok());  // priority
  std::vector<uint64_t> order;
  for (int step = 0; step < 8 && order.size() < 4; ++step) {
    const SchedulerOutput out = d.Step();
    for (uint64_t id : AdmittedIds(out)) order.push_back(id);
  }
  EXPECT_THAT(order, ElementsAre(4u, 3u, 1u, 2u));
}

TEST(SchedulerRequestLanes, PriorityRequestOfALowLaneTenantPreemptsLowerLaneWork) {
  SchedulerConfig c = ThreeLanes();
  c.max_seqs = 1;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("other", InLane(1)).ok());
  ASSERT_TRUE(sched->UpsertTenant("t", InLane(2)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "other", Iota(4, 10), 20).ok());
  auto out = d.Step();
  EXPECT_THAT(AdmittedIds(out), ElementsAre(1u)) << " at step 0";
  // t's own lane (2) would wait behind `other`; asked in lane 0 it is admitted at once.
  ASSERT_TRUE(d.SubmitInLane(2, "t", Iota(4, 20), 2, /*lane=*/0).ok());
  out = d.Step();
  EXPECT_THAT(AdmittedIds(out), ElementsAre(2u)) << " at step 1";
  EXPECT_THAT(out.preempted, ElementsAre(1u)) << " at step 1";
}

TEST(SchedulerRequestLanes, UnknownLaneIsRefused) {
  auto sched = MakeScheduler(ThreeLanes());
  ASSERT_TRUE(sched->UpsertTenant("t", InLane(1)).ok());
  SchedRequest r{1, "t", Iota(4), 1, 0};
  r.lane = 3;
  EXPECT_EQ(sched->Submit(std::move(r)).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llmux
