// The local Admission (one replica): the checks HandleCompletion made inline before, with the
// same codes, messages and Retry-After values.
#include <gtest/gtest.h>

#include "llmux/admission.h"

namespace llmux {
namespace {

class LocalAdmissionTest : public ::testing::Test {
 protected:
  SteadyTime now_ = SteadyTime(std::chrono::hours(1));
  int64_t wall_ms_ = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  QuotaTracker quota_{[this] { return wall_ms_; }};
  std::unique_ptr<Admission> admission_ = NewLocalAdmission([this] { return now_; }, &quota_);

  static TenantConfig Tenant() {
    TenantConfig t;
    t.name = "acme";
    t.max_queued_requests = 3;
    return t;
  }
};

TEST_F(LocalAdmissionTest, RateLimitRefusesWithRetryAfterAndTooLargeIs400) {
  TenantConfig t = Tenant();
  t.rate_limit = {1, 100};
  AdmissionResult first = admission_->Admit("acme", t, {50, 0, 1});
  ASSERT_TRUE(std::holds_alternative<AdmissionTicket>(first));
  AdmissionResult second = admission_->Admit("acme", t, {50, 0, 1});
  const auto* no = std::get_if<AdmissionRefusal>(&second);
  ASSERT_NE(no, nullptr);
  EXPECT_EQ(no->status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(no->status.message(), "rate limit exceeded for this tenant");
  EXPECT_EQ(no->code, "rate_limit_exceeded");
  EXPECT_EQ(no->retry_after_seconds, 60);
  AdmissionResult huge = admission_->Admit("acme", t, {101, 0, 1});
  no = std::get_if<AdmissionRefusal>(&huge);
  ASSERT_NE(no, nullptr);
  EXPECT_EQ(no->status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(no->param, "max_tokens");
  EXPECT_EQ(no->status.message(),
            "the request needs 101 tokens, more than this tenant's tokens_per_minute");
}

TEST_F(LocalAdmissionTest, QueueCapCountsChoicesUntilTheyLeaveOrTheCallEnds) {
  const TenantConfig t = Tenant();
  AdmissionResult two = admission_->Admit("acme", t, {10, 0, 2});
  ASSERT_TRUE(std::holds_alternative<AdmissionTicket>(two));
  AdmissionResult one = admission_->Admit("acme", t, {10, 0, 1});
  ASSERT_TRUE(std::holds_alternative<AdmissionTicket>(one));
  EXPECT_EQ(admission_->Queued("acme"), 3);
  AdmissionResult full = admission_->Admit("acme", t, {10, 0, 1});
  const auto* no = std::get_if<AdmissionRefusal>(&full);
  ASSERT_NE(no, nullptr);
  EXPECT_EQ(no->code, "queue_full");
  EXPECT_EQ(no->status.message(), "this tenant has 3 requests queued already");
  EXPECT_EQ(no->retry_after_seconds, 1);
  admission_->LeaveQueue(std::get<AdmissionTicket>(two), 1);
  EXPECT_EQ(admission_->Queued("acme"), 2);
  // Finish releases the places not yet left, once; more LeaveQueue calls are ignored.
  admission_->Finish(std::get<AdmissionTicket>(two), {20, 0});
  EXPECT_EQ(admission_->Queued("acme"), 1);
  admission_->LeaveQueue(std::get<AdmissionTicket>(two), 1);
  admission_->Finish(std::get<AdmissionTicket>(two), {20, 0});
  EXPECT_EQ(admission_->Queued("acme"), 1);
  admission_->LeaveQueue(std::get<AdmissionTicket>(one), 5);
  EXPECT_EQ(admission_->Queued("acme"), 0);
  EXPECT_FALSE(admission_->Stats().shared_store);
}

TEST_F(LocalAdmissionTest, QuotaRefusesAtTheLimitUntilTheDayResets) {
  TenantConfig t = Tenant();
  t.quota = Quota{100, std::nullopt};
  quota_.Record("acme", wall_ms_, 100, 0);
  AdmissionResult r = admission_->Admit("acme", t, {10, 0, 1});
  const auto* no = std::get_if<AdmissionRefusal>(&r);
  ASSERT_NE(no, nullptr);
  EXPECT_EQ(no->code, "quota_exceeded");
  EXPECT_EQ(no->retry_after_seconds, 86400);
  EXPECT_NE(no->status.message().find("used 100 of its 100 tokens per day"), std::string::npos);
  wall_ms_ += 86'400'000;
  EXPECT_TRUE(std::holds_alternative<AdmissionTicket>(admission_->Admit("acme", t, {10, 0, 1})));
}

TEST_F(LocalAdmissionTest, RefusesEarlyOnlyWhatAdmitWouldRefuseWhateverTheCall) {
  TenantConfig t = Tenant();
  EXPECT_FALSE(admission_->RefuseEarly("acme", t).has_value());  // unknown so far: nothing queued
  AdmissionResult two = admission_->Admit("acme", t, {10, 0, 2});
  ASSERT_TRUE(std::holds_alternative<AdmissionTicket>(two));
  // One place left: a call might fit, so Admit decides.
  EXPECT_FALSE(admission_->RefuseEarly("acme", t).has_value());
  AdmissionResult one = admission_->Admit("acme", t, {10, 0, 1});
  ASSERT_TRUE(std::holds_alternative<AdmissionTicket>(one));
  std::optional<AdmissionRefusal> full = admission_->RefuseEarly("acme", t);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(full->code, "queue_full");
  EXPECT_EQ(full->status.message(), "this tenant has 3 requests queued already");
  EXPECT_EQ(full->retry_after_seconds, 1);
  // Taking nothing: the queue count is unchanged, and a place that frees is usable at once.
  EXPECT_EQ(admission_->Queued("acme"), 3);
  admission_->LeaveQueue(std::get<AdmissionTicket>(one), 1);
  EXPECT_FALSE(admission_->RefuseEarly("acme", t).has_value());
  // A spent quota refuses early, with Admit's code and Retry-After.
  t.quota = Quota{100, std::nullopt};
  quota_.Record("acme", wall_ms_, 100, 0);
  std::optional<AdmissionRefusal> spent = admission_->RefuseEarly("acme", t);
  ASSERT_TRUE(spent.has_value());
  EXPECT_EQ(spent->code, "quota_exceeded");
  EXPECT_EQ(spent->retry_after_seconds, 86400);
  // Other tenants are not affected.
  EXPECT_FALSE(admission_->RefuseEarly("other", Tenant()).has_value());
}

}  // namespace
}  // namespace llmux
