// Fair share driving isolation inside one lane (SchedulerConfig::underserved_exclusive_prefill):
// the lane's underserved tenant gets its prefill in a step without the lane's other tenants'
// decodes, which tenants count as underserved arrivals (UnderservedStopTenants), and the
// credit bound that keeps a stream of such tenants from starving the lane's flood.
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

SchedulerConfig OneLane(bool underserved = true) {
  SchedulerConfig c;
  c.num_kv_blocks = 64;
  c.block_size = 4;
  c.max_batched_tokens = 64;
  c.max_seqs = 6;
  c.max_model_len = 256;
  c.lanes = {{"standard", 0}};
  c.underserved_exclusive_prefill = underserved;
  return c;
}

bool HasStep(const std::vector<std::string>& plan, const std::string& prefix) {
  for (const std::string& e : plan) {
    if (e.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

TEST(SchedulerUnderserved, IdleTenantsPrefillRunsWithoutTheFloodsDecodes) {
  for (bool underserved : {true, false}) {
    SCOPED_TRACE(underserved ? "underserved prefill exclusive" : "off");
    auto sched = MakeScheduler(OneLane(underserved));
    ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
    ASSERT_TRUE(sched->UpsertTenant("other", InLane(0)).ok());
    const TenantId flood = *sched->FindTenant("flood");
    const TenantId other = *sched->FindTenant("other");
    Driver d(sched.get(), 4);
    ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 10).ok());
    ASSERT_TRUE(d.Submit(2, "flood", Iota(6, 50), 10).ok());
    EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+5", "2:0+6"));
    EXPECT_THAT(Plan(d.Step()), ElementsAre("1:5+1", "2:6+1"));
    // flood: 11 prompt tokens + 4 decodes x 2 = 19; other never ran (0): an arrival of other
    // would be the lane's most underserved, so it may stop a step of the lane.
    EXPECT_EQ(sched->GetTenantStats(flood).fair_share_counter, 19);
    EXPECT_THAT(sched->UnderservedStopTenants(0), ElementsAre(other));
    ASSERT_TRUE(d.Submit(3, "other", Iota(7, 90), 3).ok());
    // Lifted to the lane's lowest active counter on arrival: a tie with the flood.
    EXPECT_EQ(sched->GetTenantStats(other).fair_share_counter, 19);
    // Both active and tied at the lane's lowest counter: a request of either would stop.
    EXPECT_THAT(sched->UnderservedStopTenants(0), ElementsAre(flood, other));
    if (underserved) {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("3:0+7")) << "the flood's decodes wait one step";
      EXPECT_THAT(Plan(d.Step()), ElementsAre("1:6+1", "2:7+1", "3:7+1"));
      EXPECT_EQ(sched->Stats().underserved_prefills, 1);
    } else {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("1:6+1", "2:7+1", "3:0+7"));
      EXPECT_THAT(Plan(d.Step()), ElementsAre("1:7+1", "2:8+1", "3:7+1"));
      EXPECT_EQ(sched->Stats().underserved_prefills, 0);
    }
    // other's next request arrives while its first one decodes, its counter now above the
    // flood's: not underserved (a request of the flood's would be), so its prefill shares the
    // step with everyone's decodes.
    EXPECT_EQ(sched->GetTenantStats(other).fair_share_counter, 30);
    EXPECT_EQ(sched->GetTenantStats(flood).fair_share_counter, underserved ? 23 : 27);
    EXPECT_THAT(sched->UnderservedStopTenants(0), ElementsAre(flood));
    ASSERT_TRUE(d.Submit(4, "other", Iota(4, 120), 2).ok());
    const std::vector<std::string> mixed = Plan(d.Step());
    EXPECT_EQ(mixed.size(), 4u);
    EXPECT_EQ(mixed.back(), "4:0+4");
    EXPECT_EQ(sched->Stats().underserved_prefills, underserved ? 1 : 0);
    sched->CheckInvariants();
  }
}

// The rule is the tenant's fair-share standing, not idleness: a tenant whose earlier request
// still decodes and whose counter is the lane's lowest gets a step of its own for its new
// request's prefill, with its own decode in it and none of the flood's.
TEST(SchedulerUnderserved, DecodingTenantsNewRequestRunsWithItsDecodesOnly) {
  for (bool underserved : {true, false}) {
    SCOPED_TRACE(underserved ? "underserved prefill exclusive" : "off");
    auto sched = MakeScheduler(OneLane(underserved));
    ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
    ASSERT_TRUE(sched->UpsertTenant("other", InLane(0)).ok());
    const TenantId flood = *sched->FindTenant("flood");
    const TenantId other = *sched->FindTenant("other");
    Driver d(sched.get(), 4);
    ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 20).ok());
    ASSERT_TRUE(d.Submit(2, "flood", Iota(6, 50), 20).ok());
    ASSERT_TRUE(d.Submit(3, "other", Iota(7, 90), 20).ok());
    // other's counter grows by 2 a step (one decode), the flood's by 4 (two).
    EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+5", "3:0+7", "2:0+6"));
    for (int i = 0; i < 4; ++i) d.Step();
    EXPECT_EQ(sched->GetTenantStats(flood).fair_share_counter, 11 + 5 * 4);
    EXPECT_EQ(sched->GetTenantStats(other).fair_share_counter, 7 + 5 * 2);
    // other is active (request 3 decoding) and has the lane's lowest counter: its next
    // request stops a step of the lane; the flood's would not.
    EXPECT_THAT(sched->UnderservedStopTenants(0), ElementsAre(other));
    ASSERT_TRUE(d.Submit(4, "other", Iota(4, 120), 2).ok());
    if (underserved) {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("3:11+1", "4:0+4"))
          << "other's decode and prefill; the flood's decodes wait one step";
      EXPECT_THAT(Plan(d.Step()), ElementsAre("1:9+1", "3:12+1", "2:10+1", "4:4+1"));
      EXPECT_EQ(sched->Stats().underserved_prefills, 1);
    } else {
      EXPECT_THAT(Plan(d.Step()), ElementsAre("1:9+1", "3:11+1", "2:10+1", "4:0+4"));
      EXPECT_EQ(sched->Stats().underserved_prefills, 0);
    }
    sched->CheckInvariants();
  }
}

// U's prefill cannot get in (no slot): U's decode, planned first, goes back to its place in
// the lane's order and the step is exactly the one without the rule.
TEST(SchedulerUnderserved, DecodingTenantWithoutASlotLeavesThePlanUnchanged) {
  SchedulerConfig c = OneLane();
  c.max_seqs = 3;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("other", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 20).ok());
  ASSERT_TRUE(d.Submit(2, "flood", Iota(6, 50), 20).ok());
  ASSERT_TRUE(d.Submit(3, "other", Iota(7, 90), 20).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+5", "3:0+7", "2:0+6"));
  for (int i = 0; i < 4; ++i) d.Step();
  ASSERT_TRUE(d.Submit(4, "other", Iota(4, 120), 2).ok());
  EXPECT_THAT(sched->UnderservedStopTenants(0), IsEmpty()) << "no slot for other";
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:9+1", "3:11+1", "2:10+1"));
  EXPECT_EQ(sched->Stats().underserved_prefills, 0);
  sched->CheckInvariants();
}

TEST(SchedulerUnderserved, HigherLanesDecodeInTheUnderservedStepLowerLanesWait) {
  SchedulerConfig c = OneLane();
  c.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}};
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("prem", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(1)).ok());
  ASSERT_TRUE(sched->UpsertTenant("other", InLane(1)).ok());
  ASSERT_TRUE(sched->UpsertTenant("batch", InLane(2)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "prem", Iota(3), 10).ok());
  ASSERT_TRUE(d.Submit(2, "flood", Iota(5, 20), 10).ok());
  ASSERT_TRUE(d.Submit(3, "batch", Iota(4, 40), 10).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+3", "2:0+5", "3:0+4"));
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:3+1", "2:5+1", "3:4+1"));
  // Step in flight's top lane is premium: other (standard) is no arrival that stops it.
  EXPECT_THAT(sched->UnderservedStopTenants(1), ElementsAre(*sched->FindTenant("other")));
  ASSERT_TRUE(d.Submit(4, "other", Iota(6, 60), 2).ok());
  // The premium decode keeps its place; the flood (same lane) and batch (lower lane) wait.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:4+1", "4:0+6"));
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:5+1", "2:6+1", "4:6+1", "3:5+1"));
  sched->CheckInvariants();
}

TEST(SchedulerUnderserved, NoSlotForTheUnderservedTenantLeavesTheStepToTheLane) {
  SchedulerConfig c = OneLane();
  c.max_seqs = 2;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("other", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 3).ok());
  ASSERT_TRUE(d.Submit(2, "flood", Iota(6, 50), 3).ok());
  ASSERT_TRUE(d.Submit(3, "flood", Iota(4, 70), 3).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:0+5", "2:0+6"));
  ASSERT_TRUE(d.Submit(4, "other", Iota(7, 90), 2).ok());
  // Both slots are the flood's (same lane: no preemption), so other cannot run: the step is
  // the usual one and the bound is not charged.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:5+1", "2:6+1"));
  EXPECT_EQ(sched->Stats().underserved_prefills, 0);
  // When a slot frees, other (lowest counter) takes it before the flood's queued request 3,
  // and its prefill has the step to itself apart from nothing: the flood's decode waits.
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:6+1", "2:7+1"));
  EXPECT_EQ(d.finished().size(), 2u);
  EXPECT_THAT(Plan(d.Step()), ElementsAre("4:0+7", "3:0+4"));
  sched->CheckInvariants();
}

TEST(SchedulerUnderserved, TenantOverItsBudgetIsNotUnderserved) {
  auto sched = MakeScheduler(OneLane());
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("other", InLane(0, 12)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 10).ok());
  d.Step();
  ASSERT_TRUE(d.Submit(2, "other", Iota(4, 100), 4).ok());
  ASSERT_TRUE(d.Submit(3, "other", Iota(4, 200), 4).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+4"));
  // other's next request waits on its own in-flight budget: other has no prefill the step
  // could run, so it is not underserved (its decode shares the step).
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:5+1", "2:4+1"));
  EXPECT_EQ(sched->Stats().underserved_prefills, 1);
  sched->CheckInvariants();
}

TEST(SchedulerUnderserved, ServedTenantThatWentIdleIsNotUnderserved) {
  auto sched = MakeScheduler(OneLane());
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("heavy", InLane(0)).ok());
  Driver d(sched.get(), 4);
  // heavy runs a long prompt alone (counter 40 + 2), then goes idle; the flood starts after.
  ASSERT_TRUE(d.Submit(1, "heavy", Iota(40), 1).ok());
  d.Step();
  ASSERT_TRUE(d.Submit(2, "flood", Iota(5, 100), 10).ok());
  d.Step();
  EXPECT_EQ(sched->GetTenantStats(*sched->FindTenant("flood")).fair_share_counter, 7);
  EXPECT_THAT(sched->UnderservedStopTenants(0), IsEmpty());
  ASSERT_TRUE(d.Submit(3, "heavy", Iota(4, 200), 2).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:5+1", "3:0+4")) << "no exclusive step for heavy";
  EXPECT_EQ(sched->Stats().underserved_prefills, 0);
}

TEST(SchedulerUnderserved, ArrivalOrderLaneHasNoUnderservedTenant) {
  SchedulerConfig c = OneLane();
  c.lanes[0].arrival_order = true;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("other", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 10).ok());
  d.Step();
  EXPECT_THAT(sched->UnderservedStopTenants(0), IsEmpty());
  ASSERT_TRUE(d.Submit(2, "other", Iota(4, 100), 2).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:5+1", "2:0+4"));
}

// A stream of one-shot tenants, each idle and underserved when it arrives, one per step: the
// bound gives them at most completed steps / underserved_credit_steps + burst exclusive steps,
// and the flood decodes in every other step.
TEST(SchedulerUnderserved, StreamOfUnderservedTenantsCannotStarveTheFlood) {
  SchedulerConfig c = OneLane();
  c.max_seqs = 8;
  c.underserved_credit_steps = 5;
  c.underserved_credit_burst = 2;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 200).ok());
  ASSERT_TRUE(d.Submit(2, "flood", Iota(6, 50), 200).ok());
  d.Step();
  std::vector<int> exclusive;
  for (int i = 0; i < 60; ++i) {
    std::string name = "t";  // NOTE: not "t" + to_string(i): GCC 12's -Wrestrict false positive
    name += std::to_string(i);
    ASSERT_TRUE(sched->UpsertTenant(name, InLane(0)).ok());
    ASSERT_TRUE(d.Submit(100 + i, name, Iota(4, 1000 + 4 * i), 1).ok());
    const std::vector<std::string> plan = Plan(d.Step());
    EXPECT_TRUE(HasStep(plan, std::to_string(100 + i) + ":0+4")) << "at " << i;
    if (!HasStep(plan, "1:")) exclusive.push_back(i);
  }
  // The bank starts with 2 credits (10 steps' worth); each exclusive step costs 5, each
  // completed step earns 1: steps 0 and 1, then every fifth step from 5 on.
  EXPECT_THAT(exclusive, ElementsAre(0, 1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55));
  EXPECT_EQ(sched->Stats().underserved_prefills, 13);
  EXPECT_LE(13, 61 / 5 + 2);
  // The flood decoded in 47 of the 60 steps.
  EXPECT_EQ(d.outputs(1), 1 + 47);
  sched->CheckInvariants();
}

// One tenant that is always underserved (a weight so high its counter stays the lane's
// lowest) sends a request every step while its earlier ones still decode: it gets exactly the
// bound's exclusive steps, and the flood decodes in every other step.
TEST(SchedulerUnderserved, AlwaysUnderservedTenantGetsExactlyTheBound) {
  SchedulerConfig c = OneLane();
  c.max_seqs = 8;
  c.underserved_credit_steps = 5;
  c.underserved_credit_burst = 2;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  TenantLimits heavy = InLane(0);
  heavy.weight = 1000;
  ASSERT_TRUE(sched->UpsertTenant("other", heavy).ok());
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 200).ok());
  ASSERT_TRUE(d.Submit(2, "flood", Iota(6, 50), 200).ok());
  d.Step();
  std::vector<int> exclusive;
  int decoding_at_exclusive = 0;
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(d.Submit(100 + i, "other", Iota(4, 1000 + 4 * i), 3).ok());
    const std::vector<std::string> plan = Plan(d.Step());
    EXPECT_TRUE(HasStep(plan, std::to_string(100 + i) + ":0+4")) << "at " << i;
    if (!HasStep(plan, "1:")) {
      exclusive.push_back(i);
      if (i > 0 && HasStep(plan, std::to_string(99 + i) + ":4+1")) ++decoding_at_exclusive;
    }
  }
  // Its first request was lifted to the flood's counter and charged for step 0, so at 1 the
  // flood (which waited) is lowest; from 2 on other always is, and only the bound limits it:
  // the bank's second credit at 2, then every fifth step from 5 on.
  EXPECT_THAT(exclusive, ElementsAre(0, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55));
  EXPECT_EQ(decoding_at_exclusive, 12) << "each exclusive step after the first holds other's "
                                          "previous request's decode";
  EXPECT_EQ(sched->Stats().underserved_prefills, 13);
  EXPECT_EQ(d.outputs(1), 1 + 47);
  EXPECT_EQ(d.outputs(2), 1 + 47);
  sched->CheckInvariants();
}

TEST(SchedulerUnderserved, StopsAndExclusiveStepsShareTheBound) {
  SchedulerConfig c = OneLane();
  c.underserved_credit_steps = 3;
  c.underserved_credit_burst = 2;
  auto sched = MakeScheduler(c);
  ASSERT_TRUE(sched->UpsertTenant("flood", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("a", InLane(0)).ok());
  ASSERT_TRUE(sched->UpsertTenant("b", InLane(0)).ok());
  const TenantId a = *sched->FindTenant("a");
  const TenantId b = *sched->FindTenant("b");
  Driver d(sched.get(), 4);
  ASSERT_TRUE(d.Submit(1, "flood", Iota(5), 100).ok());
  d.Step();
  // Two credits banked: an arrival may stop a step (one) and still get its exclusive step.
  EXPECT_THAT(sched->UnderservedStopTenants(0), ElementsAre(a, b));
  // The engine stops the step in flight for a's arrival: the planned step is cancelled.
  SchedulerOutput stopped = sched->Schedule(d.step());
  EXPECT_THAT(Plan(stopped), ElementsAre("1:5+1"));
  sched->CancelStep(stopped);
  sched->ChargeUnderservedStop();
  EXPECT_EQ(sched->Stats().underserved_stops, 1);
  // One credit left: not enough for another stop.
  EXPECT_THAT(sched->UnderservedStopTenants(0), IsEmpty());
  ASSERT_TRUE(d.Submit(2, "a", Iota(4, 100), 1).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("2:0+4")) << "the last credit pays a's prefill step";
  // No credit: b's arrival neither stops a step nor gets one of its own.
  EXPECT_THAT(sched->UnderservedStopTenants(0), IsEmpty());
  ASSERT_TRUE(d.Submit(3, "b", Iota(4, 200), 1).ok());
  EXPECT_THAT(Plan(d.Step()), ElementsAre("1:5+1", "3:0+4"));
  // Each completed step earns a third of a credit: 5/3 after three more steps, still short of
  // the two a stop needs (a and b are idle again, their counters 13 and 15 under the flood's
  // 15: only the bound keeps them out); the fourth makes two.
  for (int i = 0; i < 3; ++i) d.Step();
  EXPECT_EQ(sched->GetTenantStats(*sched->FindTenant("flood")).fair_share_counter, 15);
  EXPECT_THAT(sched->UnderservedStopTenants(0), IsEmpty());
  d.Step();
  EXPECT_THAT(sched->UnderservedStopTenants(0), ElementsAre(a, b));
  sched->CheckInvariants();
}

TEST(SchedulerUnderserved, CreateRejectsAnEmptyBound) {
  SchedulerConfig c = OneLane();
  c.underserved_credit_steps = 0;
  EXPECT_FALSE(Scheduler::Create(c).ok());
  c = OneLane();
  c.underserved_credit_burst = 0;
  EXPECT_FALSE(Scheduler::Create(c).ok());
}

}  // namespace
}  // namespace llmux
