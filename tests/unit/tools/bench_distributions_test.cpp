// llmux-bench's seeded random numbers and length distributions: a seed is the same workload
// everywhere, so the exact draws are pinned here.
#include <gtest/gtest.h>

#include "../../../benchmarks/llmux-bench/distributions.h"

namespace llmux::bench {
namespace {

TEST(BenchDistributions, RngDrawsArePinnedBySeed) {
  Rng r(1);
  EXPECT_DOUBLE_EQ(r.Uniform(), 0.13387664401253263);
  EXPECT_DOUBLE_EQ(r.Uniform(), 0.13640703636619722);
  Rng ints(7);
  std::vector<int64_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(ints.Int(10, 20));
  EXPECT_EQ(got, (std::vector<int64_t>{10, 17, 19, 12, 15, 20}));
  Rng e(42);
  EXPECT_NEAR(e.Exponential(2.0), 0.70356604920607191, 1e-15);
  EXPECT_NEAR(e.Normal(), 0.019241066361427629, 1e-12);
}

TEST(BenchDistributions, FixedAndUniform) {
  Rng r(3);
  LengthDist fixed;
  fixed.value = 64;
  EXPECT_EQ(fixed.Sample(r), 64);
  LengthDist u;
  u.kind = LengthDist::Kind::kUniform;
  u.min = 3;
  u.max = 5;
  Rng r7(3);
  std::vector<int64_t> got;
  for (int i = 0; i < 8; ++i) got.push_back(u.Sample(r7));
  EXPECT_EQ(got, (std::vector<int64_t>{5, 4, 4, 4, 5, 5, 5, 3}));
}

TEST(BenchDistributions, ShareGptIsLongTailedWithTheRequestedMean) {
  LengthDist d;
  d.kind = LengthDist::Kind::kShareGpt;
  d.mean = 200;
  d.min = 4;
  d.max = 1024;
  Rng r(1);
  std::vector<int64_t> first;
  for (int i = 0; i < 8; ++i) first.push_back(d.Sample(r));
  EXPECT_EQ(first, (std::vector<int64_t>{172, 359, 267, 332, 51, 81, 166, 121}));
  Rng big(1);
  double sum = 0;
  int64_t lo = 1 << 30, hi = 0, above_500 = 0;
  constexpr int kN = 100000;
  for (int i = 0; i < kN; ++i) {
    const int64_t v = d.Sample(big);
    sum += static_cast<double>(v);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    above_500 += v > 500;
  }
  // Clamping the tail at 1024 pulls the mean a little under 200.
  EXPECT_NEAR(sum / kN, 191.1, 0.1);
  EXPECT_EQ(lo, 4);
  EXPECT_EQ(hi, 1024);
  EXPECT_GT(above_500, kN / 50);  // a real tail: more than 2% above 2.5x the mean
}

TEST(BenchDistributions, TenantSeedsDiffer) {
  EXPECT_EQ(TenantSeed(1, 0), 10451216379200822465ULL);
  EXPECT_EQ(TenantSeed(1, 1), 13757245211066428519ULL);
  EXPECT_NE(TenantSeed(2, 0), TenantSeed(1, 0));
}

}  // namespace
}  // namespace llmux::bench
