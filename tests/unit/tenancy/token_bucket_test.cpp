#include <gtest/gtest.h>

#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

const SteadyTime kT0 = SteadyTime(seconds(1000));

TEST(TokenBucketTest, FullBurstThenExactRetryAfter) {
  TokenBucket b(60, kT0);  // one request per second
  for (int i = 0; i < 60; ++i) EXPECT_TRUE(b.TryTake(1, kT0).admitted) << "at request " << i;
  RateDecision d = b.TryTake(1, kT0);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 1);
  d = b.TryTake(1, kT0 + milliseconds(999));
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 1);  // 1 ms left, rounded up to a whole second
  d = b.TryTake(1, kT0 + nanoseconds(999'999'999));
  EXPECT_FALSE(d.admitted);
  EXPECT_TRUE(b.TryTake(1, kT0 + seconds(1)).admitted);
  EXPECT_FALSE(b.TryTake(1, kT0 + seconds(1)).admitted);
}

TEST(TokenBucketTest, RetryAfterIsTruthfulForFractionalRates) {
  TokenBucket b(7, kT0);  // one unit every 60/7 = 8.571 s
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(b.TryTake(1, kT0).admitted);
  const RateDecision d = b.TryTake(1, kT0);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 9);
  EXPECT_FALSE(b.TryTake(1, kT0 + milliseconds(8571)).admitted);
  EXPECT_TRUE(b.TryTake(1, kT0 + milliseconds(8572)).admitted);  // well within the promised 9 s
}

TEST(TokenBucketTest, TokenCostsAndDeficits) {
  TokenBucket b(1000, kT0);  // tokens per minute
  EXPECT_TRUE(b.TryTake(900, kT0).admitted);
  EXPECT_EQ(b.Available(kT0), 100);
  RateDecision d = b.TryTake(200, kT0);  // short by 100 tokens = 6 s of refill
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 6);
  EXPECT_EQ(b.Available(kT0), 100);  // a refusal takes nothing
  EXPECT_FALSE(b.TryTake(200, kT0 + milliseconds(5999)).admitted);
  EXPECT_TRUE(b.TryTake(200, kT0 + seconds(6)).admitted);
  EXPECT_EQ(b.Available(kT0 + seconds(6)), 0);
}

TEST(TokenBucketTest, RefillCapsAtOneMinute) {
  TokenBucket b(100, kT0);
  ASSERT_TRUE(b.TryTake(100, kT0).admitted);
  EXPECT_EQ(b.Available(kT0 + seconds(30)), 50);
  EXPECT_EQ(b.Available(kT0 + std::chrono::hours(24 * 365)), 100);  // no banking past the burst
}

TEST(TokenBucketTest, CostAboveCapacityIsNeverAdmitted) {
  TokenBucket b(1000, kT0);
  const RateDecision d = b.TryTake(1001, kT0);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, RateDecision::kNever);
  EXPECT_EQ(b.Available(kT0), 1000);
}

TEST(TokenBucketTest, ZeroRateIsUnlimited) {
  TokenBucket b(0, kT0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.TryTake(1000000, kT0).admitted);
}

TEST(TokenBucketTest, ClockGoingBackwardsRefillsNothing) {
  TokenBucket b(60, kT0);
  ASSERT_TRUE(b.TryTake(60, kT0).admitted);
  EXPECT_FALSE(b.TryTake(1, kT0 - seconds(10)).admitted);
  EXPECT_TRUE(b.TryTake(1, kT0 + seconds(1)).admitted);
}

class TenantRateLimiterTest : public ::testing::Test {
 protected:
  SteadyTime now_ = kT0;
  TenantRateLimiter limiter_{[this] { return now_; }};
};

TEST_F(TenantRateLimiterTest, BothBucketsMustAdmit) {
  const RateLimit limit{2, 1000};  // 2 requests/min, 1000 tokens/min
  EXPECT_TRUE(limiter_.Admit("acme", limit, 600).admitted);
  // Tokens short (400 left, 500 asked: 100 short = 6 s), requests fine.
  RateDecision d = limiter_.Admit("acme", limit, 500);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 6);
  // The refused request took no request slot: one is still available.
  EXPECT_TRUE(limiter_.Admit("acme", limit, 400).admitted);
  // Now requests are exhausted (refill one per 30 s) and tokens too (1000 asked... 0 left: 60 s).
  d = limiter_.Admit("acme", limit, 1000);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 60);
  d = limiter_.Admit("acme", limit, 1);
  EXPECT_EQ(d.retry_after_seconds, 30);  // the request bucket is the binding one
  now_ += seconds(30);
  EXPECT_TRUE(limiter_.Admit("acme", limit, 1).admitted);
}

TEST_F(TenantRateLimiterTest, TenantsAreIndependent) {
  const RateLimit limit{1, 0};
  EXPECT_TRUE(limiter_.Admit("a", limit, 1).admitted);
  EXPECT_FALSE(limiter_.Admit("a", limit, 1).admitted);
  EXPECT_TRUE(limiter_.Admit("b", limit, 1).admitted);
  EXPECT_TRUE(limiter_.Admit("c", RateLimit{}, 1 << 30).admitted);  // unlimited
}

TEST_F(TenantRateLimiterTest, NeverWhenTheRequestCannotFit) {
  const RateDecision d = limiter_.Admit("a", RateLimit{100, 1000}, 5000);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, RateDecision::kNever);
}

TEST_F(TenantRateLimiterTest, AReloadedLimitKeepsWhatWasConsumed) {
  ASSERT_TRUE(limiter_.Admit("a", RateLimit{10, 0}, 1).admitted);
  for (int i = 0; i < 9; ++i) ASSERT_TRUE(limiter_.Admit("a", RateLimit{10, 0}, 1).admitted);
  // Raised to 20/min: the 10 already used still count, so 10 more now, not 20.
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(limiter_.Admit("a", RateLimit{20, 0}, 1).admitted) << "at request " << i;
  }
  RateDecision d = limiter_.Admit("a", RateLimit{20, 0}, 1);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 3);  // 60/20 s per request
  // Lowered to 5/min: the bucket is empty and refills at the new rate.
  d = limiter_.Admit("a", RateLimit{5, 0}, 1);
  EXPECT_FALSE(d.admitted);
  EXPECT_EQ(d.retry_after_seconds, 12);
}

}  // namespace
}  // namespace llmux
