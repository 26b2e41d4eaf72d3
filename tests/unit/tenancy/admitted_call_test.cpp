// AdmittedCall: one call's queue places and settlement, whatever order its choices' first
// engine events, a failed Submit and the end of the call come in.
#include <gtest/gtest.h>

#include "llmux/admission.h"

namespace llmux {
namespace {

class AdmittedCallTest : public ::testing::Test {
 protected:
  std::unique_ptr<Admission> admission_ =
      NewLocalAdmission([] { return SteadyTime(std::chrono::hours(1)); }, nullptr);

  static TenantConfig Tenant() {
    TenantConfig t;
    t.name = "acme";
    t.max_queued_requests = 4;
    return t;
  }
  AdmissionTicket Admit(int choices) {
    AdmissionResult r = admission_->Admit("acme", Tenant(), {10, 0, choices});
    EXPECT_TRUE(std::holds_alternative<AdmissionTicket>(r));
    return std::get<AdmissionTicket>(std::move(r));
  }
};

TEST_F(AdmittedCallTest, EachChoiceLeavesTheQueueOnce) {
  AdmittedCall call(admission_.get(), Admit(3));
  EXPECT_EQ(admission_->Queued("acme"), 3);
  call.ChoiceLeftQueue(1);
  call.ChoiceLeftQueue(1);  // every event of a choice reports it; only the first counts
  EXPECT_EQ(admission_->Queued("acme"), 2);
  call.ChoiceLeftQueue(7);  // not a choice of this call
  EXPECT_EQ(admission_->Queued("acme"), 2);
  call.ChoiceLeftQueue(0);
  call.ChoiceLeftQueue(2);
  EXPECT_EQ(admission_->Queued("acme"), 0);
  call.Finish({});
  EXPECT_EQ(admission_->Queued("acme"), 0);
}

TEST_F(AdmittedCallTest, ChoicesNeverSubmittedLeaveAtOnceAndLateEventsDoNotCountTwice) {
  AdmittedCall call(admission_.get(), Admit(4));
  call.ChoiceLeftQueue(0);
  call.NeverSubmitted(2);  // Submit failed for choice 2: choices 2 and 3 never reach the engine
  EXPECT_EQ(admission_->Queued("acme"), 1);
  call.ChoiceLeftQueue(3);
  EXPECT_EQ(admission_->Queued("acme"), 1);
  call.ChoiceLeftQueue(1);
  EXPECT_EQ(admission_->Queued("acme"), 0);
  // The places were returned: a call of 4 choices fits the cap of 4 again.
  AdmittedCall next(admission_.get(), Admit(4));
  EXPECT_EQ(admission_->Queued("acme"), 4);
}

TEST_F(AdmittedCallTest, FinishReleasesThePlacesStillHeldOnce) {
  auto call = std::make_unique<AdmittedCall>(admission_.get(), Admit(3));
  AdmittedCall other(admission_.get(), Admit(1));
  call->ChoiceLeftQueue(0);
  call->Finish({});  // the client went away before choices 1 and 2 started
  EXPECT_EQ(admission_->Queued("acme"), 1);
  call->Finish({});
  call->ChoiceLeftQueue(1);  // a late event after the settlement changes nothing
  EXPECT_EQ(admission_->Queued("acme"), 1);
  EXPECT_EQ(call->ticket().request.num_choices, 3);
}

}  // namespace
}  // namespace llmux
