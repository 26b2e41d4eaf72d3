// The engine inbox's yield flag: which submits stop the step in flight (a higher lane's, an
// underserved tenant's of the step's top lane), the reason it records, and that nothing is
// raised outside a step.
#include "engine/inbox.h"

#include <gtest/gtest.h>

#include <string>

namespace llmux {
namespace {

class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TenantLimits batch;
    batch.lane = 2;
    ASSERT_TRUE(inbox_.Push(UpsertItem{"flood", batch}).ok());
    ASSERT_TRUE(inbox_.Push(UpsertItem{"bystander", batch}).ok());
    TenantLimits premium;
    premium.lane = 0;
    ASSERT_TRUE(inbox_.Push(UpsertItem{"premium", premium}).ok());
    inbox_.TakeAll();
  }

  void Submit(const std::string& tenant, int32_t lane = -1) {
    EngineRequest r;
    r.id = ++id_;
    r.tenant = tenant;
    r.lane = lane;
    ASSERT_TRUE(inbox_.PushSubmit(SubmitItem{std::move(r), [](EngineOutput&&) {}}).ok());
  }

  bool Raised() const { return inbox_.yield_flag()->load(); }

  EngineInbox inbox_{16, 3};
  uint64_t id_ = 0;
};

TEST_F(InboxTest, NoSubmitStopsAStepThatIsNotInFlight) {
  // Between TakeAll and BeginStep (the engine is planning) and after EndStep.
  Submit("premium");
  Submit("bystander");
  EXPECT_FALSE(Raised());
  inbox_.TakeAll();
  inbox_.BeginStep(2, true, {"bystander"});
  inbox_.EndStep();
  Submit("premium");
  Submit("bystander");
  EXPECT_FALSE(Raised());
  EXPECT_EQ(inbox_.yield_reason(), EngineInbox::YieldReason::kNone);
}

TEST_F(InboxTest, HigherLaneSubmitStopsTheStepAlsoWhenQueuedBeforeItBegan) {
  inbox_.BeginStep(2, true, {});
  Submit("flood");
  Submit("bystander");
  EXPECT_FALSE(Raised()) << "same lane, and no underserved tenant published";
  Submit("premium");
  EXPECT_TRUE(Raised());
  EXPECT_EQ(inbox_.yield_reason(), EngineInbox::YieldReason::kHigherLane);
  inbox_.TakeAll();
  EXPECT_FALSE(Raised());
  // Queued while the engine planned: BeginStep sees it.
  Submit("batch-tier premium", 0);
  EXPECT_FALSE(Raised());
  inbox_.BeginStep(1, true, {});
  EXPECT_TRUE(Raised());
  inbox_.TakeAll();
  // Off: a higher lane's submit does not stop the step.
  inbox_.BeginStep(2, false, {});
  Submit("premium");
  EXPECT_FALSE(Raised());
}

TEST_F(InboxTest, UnderservedTenantStopsOnlyAStepOfItsLane) {
  inbox_.BeginStep(2, false, {"bystander"});
  Submit("flood");
  EXPECT_FALSE(Raised());
  Submit("bystander", 1);  // a request of another lane (service tier) is not the lane's
  EXPECT_FALSE(Raised());
  Submit("bystander");
  EXPECT_TRUE(Raised());
  EXPECT_EQ(inbox_.yield_reason(), EngineInbox::YieldReason::kUnderserved);
  // The first reason stays until the engine takes the inbox.
  inbox_.EndStep();
  inbox_.TakeAll();
  EXPECT_EQ(inbox_.yield_reason(), EngineInbox::YieldReason::kNone);
  // A step whose top lane is premium is not stopped by the batch lane's underserved tenant.
  inbox_.BeginStep(0, true, {"bystander"});
  Submit("bystander");
  EXPECT_FALSE(Raised());
  inbox_.TakeAll();
  // Queued between TakeAll and BeginStep: BeginStep raises it.
  Submit("bystander");
  inbox_.BeginStep(2, true, {"bystander"});
  EXPECT_TRUE(Raised());
  EXPECT_EQ(inbox_.yield_reason(), EngineInbox::YieldReason::kUnderserved);
}

// A tenant published as underserved may have work in the step (a request still decoding):
// every submit of its stops at most one step. The flag is per submit: TakeAll lowers it, and
// the next step, publishing the same tenant again, is stopped only by a new submit.
TEST_F(InboxTest, EachSubmitOfAnUnderservedTenantStopsAtMostOneStep) {
  inbox_.BeginStep(2, true, {"bystander"});
  Submit("bystander");
  Submit("bystander");
  EXPECT_TRUE(Raised());
  inbox_.EndStep();
  EXPECT_EQ(inbox_.TakeAll().size(), 2u);
  EXPECT_FALSE(Raised());
  // The tenant (its requests now in the scheduler, one decoding) is still the lane's lowest.
  inbox_.BeginStep(2, true, {"bystander"});
  EXPECT_FALSE(Raised()) << "the taken submits stopped a step already";
  inbox_.EndStep();
  inbox_.TakeAll();
  inbox_.BeginStep(2, true, {"bystander"});
  Submit("flood");
  EXPECT_FALSE(Raised());
  Submit("bystander");
  EXPECT_TRUE(Raised());
  EXPECT_EQ(inbox_.yield_reason(), EngineInbox::YieldReason::kUnderserved);
}

}  // namespace
}  // namespace llmux
