#include "server/auth_throttle.h"

#include <gtest/gtest.h>

namespace llmux::server {
namespace {

using std::chrono::seconds;

TEST(AuthThrottleTest, BlocksAfterMaxFailuresUntilTheWindowPasses) {
  AuthThrottle t(3, seconds(60));
  const auto t0 = AuthThrottle::Clock::time_point{} + seconds(1000);
  EXPECT_EQ(t.RetryAfter("a", t0), 0);
  t.RecordFailure("a", t0);
  t.RecordFailure("a", t0 + seconds(10));
  EXPECT_EQ(t.RetryAfter("a", t0 + seconds(10)), 0);
  t.RecordFailure("a", t0 + seconds(20));
  // Three failures in the window: blocked until the first leaves it (t0 + 60).
  EXPECT_EQ(t.RetryAfter("a", t0 + seconds(20)), 40);
  EXPECT_EQ(t.RetryAfter("a", t0 + seconds(59)), 1);
  EXPECT_EQ(t.RetryAfter("a", t0 + seconds(60)), 0);
  // Other addresses are unaffected.
  EXPECT_EQ(t.RetryAfter("b", t0 + seconds(20)), 0);
}

TEST(AuthThrottleTest, MemoryStaysBounded) {
  AuthThrottle t(2, seconds(60), /*max_addresses=*/4);
  const auto t0 = AuthThrottle::Clock::time_point{} + seconds(1000);
  for (int i = 0; i < 100; ++i) t.RecordFailure("addr" + std::to_string(i), t0);
  t.RecordFailure("x", t0);
  t.RecordFailure("x", t0);
  EXPECT_GT(t.RetryAfter("x", t0), 0);
}

}  // namespace
}  // namespace llmux::server
