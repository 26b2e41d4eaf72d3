// llmux-bench's pure statistics: percentiles, Jain's index, backlogged windows, service gap.
#include <gtest/gtest.h>

#include "../../../benchmarks/llmux-bench/stats.h"

namespace llmux::bench {
namespace {

TEST(BenchStats, PercentileInterpolatesLikeNumpy) {
  const std::vector<double> v = {4, 1, 3, 2};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);    // numpy.percentile([1,2,3,4], 50)
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);   // 1 + 0.99 * 3 = rank 2.97
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
  EXPECT_DOUBLE_EQ(Mean(v), 2.5);
  EXPECT_DOUBLE_EQ(Mean({}), 0);
}

TEST(BenchStats, JainIndexOverWeightNormalisedService) {
  EXPECT_DOUBLE_EQ(JainIndex({10, 20, 40}, {1, 2, 4}), 1.0);  // exactly the weighted shares
  EXPECT_DOUBLE_EQ(JainIndex({5, 0, 0, 0}, {1, 1, 1, 1}), 0.25);  // one tenant got everything
  // x = {1, 0.5}: 1.5^2 / (2 * 1.25) = 0.9
  EXPECT_DOUBLE_EQ(JainIndex({1, 1}, {1, 2}), 0.9);
  EXPECT_DOUBLE_EQ(JainIndex({}, {}), 1.0);
  EXPECT_DOUBLE_EQ(JainIndex({0, 0}, {1, 1}), 1.0);
}

TEST(BenchStats, CommonBackloggedWindowIsTheLongestCommonStretch) {
  // Tenant 0 busy [0,4) and [6,10); tenant 1 busy [1,7) and [8,9).
  const std::vector<std::vector<Interval>> busy = {{{0, 4}, {6, 10}}, {{1, 7}, {8, 9}}};
  const Interval w = CommonBackloggedWindow(busy);
  EXPECT_DOUBLE_EQ(w.start, 1);
  EXPECT_DOUBLE_EQ(w.end, 4);
  // Overlapping requests of one tenant merge; a gap of 0.01 s is bridged only with join_gap.
  const std::vector<std::vector<Interval>> loop = {{{0, 2}, {2.01, 5}}, {{0, 5}}};
  EXPECT_DOUBLE_EQ(CommonBackloggedWindow(loop).start, 2.01);  // the longer of two pieces
  EXPECT_DOUBLE_EQ(CommonBackloggedWindow(loop, 0.05).start, 0);
  EXPECT_DOUBLE_EQ(CommonBackloggedWindow(loop, 0.05).end, 5);
  EXPECT_DOUBLE_EQ(CommonBackloggedWindow({{{0, 1}}, {{2, 3}}}).end, 0);  // never together
}

TEST(BenchStats, MaxServiceGapIsMeasuredAfterEveryInstant) {
  // Weights 1 and 2. Tenant 0 gets 4 at t=1; tenant 1 gets 4 at t=2 (=2 normalised) and 4
  // at t=3 (=4 normalised). Normalised: t=1 {4,0} gap 4; t=2 {4,2} gap 2; t=3 {4,4} gap 0.
  const std::vector<std::vector<ServiceEvent>> ev = {{{1, 4}}, {{2, 4}, {3, 4}}};
  EXPECT_DOUBLE_EQ(MaxServiceGap(ev, {1, 2}, {0, 10}), 4);
  // Only [1.5, 10): tenant 0's event is outside; tenant 1 alone gets 2 then 4.
  EXPECT_DOUBLE_EQ(MaxServiceGap(ev, {1, 2}, {1.5, 10}), 4);
  EXPECT_DOUBLE_EQ(MaxServiceGap(ev, {1, 2}, {1.5, 2.5}), 2);
  // Simultaneous events are applied together: no transient gap.
  EXPECT_DOUBLE_EQ(MaxServiceGap({{{1, 3}}, {{1, 3}}}, {1, 1}, {0, 2}), 0);
  EXPECT_DOUBLE_EQ(MaxServiceGap({{{1, 3}}}, {1}, {0, 2}), 0);
  const std::vector<double> in = ServiceInWindow(ev, {1.5, 2.5});
  EXPECT_EQ(in, (std::vector<double>{0, 4}));
}

}  // namespace
}  // namespace llmux::bench
