#include <gtest/gtest.h>

#include <limits>

#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

Prices P(int64_t in, int64_t out, int64_t cached) { return Prices{in, out, cached}; }

TEST(CostNano, OneTokenAtTwentyCentsPerMillionIs200Nano) {
  EXPECT_EQ(CostNano(P(200000000, 0, 0), 1, 0, 0), 200);
  EXPECT_EQ(CostNano(P(0, 200000000, 0), 0, 0, 1), 200);
}

TEST(CostNano, CachedTokensUseTheCachedPriceAndUncachedTheInputPrice) {
  // 100 prompt tokens, 40 cached: 60 * 0.20 + 40 * 0.05 + 10 * 0.60 per Mtok.
  const Prices p = P(200000000, 600000000, 50000000);
  EXPECT_EQ(CostNano(p, 100, 40, 10), 60 * 200 + 40 * 50 + 10 * 600);
}

TEST(CostNano, RoundsHalfUpOnceForTheWholeCall) {
  // 0.000001/Mtok = 1000 nano per Mtok = 0.001 nano per token.
  const Prices p = P(1000, 0, 0);
  EXPECT_EQ(CostNano(p, 499, 0, 0), 0);   // 0.499 -> 0
  EXPECT_EQ(CostNano(p, 500, 0, 0), 1);   // 0.5 -> 1
  EXPECT_EQ(CostNano(p, 1499, 0, 0), 1);  // 1.499 -> 1
  EXPECT_EQ(CostNano(p, 1500, 0, 0), 2);
  // The fractions of the three parts add up before rounding: 0.3 + 0.3 -> 0.6 -> 1.
  EXPECT_EQ(CostNano(P(1000, 1000, 0), 300, 0, 300), 1);
}

TEST(CostNano, CachedAboveThePromptIsClampedAndNegativesCountAsZero) {
  const Prices p = P(200000000, 600000000, 50000000);
  EXPECT_EQ(CostNano(p, 10, 50, 0), 10 * 50);
  EXPECT_EQ(CostNano(p, -5, 0, -3), 0);
}

TEST(CostNano, SaturatesInsteadOfOverflowing) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(CostNano(P(max, max, max), max, 0, max), max);
}

}  // namespace
}  // namespace llmux
