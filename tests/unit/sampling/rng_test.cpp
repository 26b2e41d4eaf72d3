#include "llmux/rng.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>

namespace llmux {
namespace {

TEST(RngTest, Mix64IsSplitMix64) {
  // The first outputs of the reference splitmix64 generator seeded with 0 (Vigna's
  // splitmix64.c: state += golden gamma, then the finalizer).
  EXPECT_EQ(Mix64(0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(Mix64(0x9e3779b97f4a7c15ULL), 0x6e789e6aa1b965f4ULL);
}

TEST(RngTest, UniformAtIsAPureFunctionOfSeedAndCounter) {
  // Values from an independent Python implementation of the same keying.
  EXPECT_DOUBLE_EQ(UniformAt(42, 0), 0.7427515654493413);
  EXPECT_DOUBLE_EQ(UniformAt(42, 1), 0.24606580027527702);
  EXPECT_DOUBLE_EQ(UniformAt(42, 2), 0.20217947033582206);
  EXPECT_EQ(UniformAt(42, 1), UniformAt(42, 1));
  EXPECT_NE(CounterHash(1, 2), CounterHash(2, 1));
  EXPECT_NE(CounterHash(0, 1), CounterHash(1, 0));
}

TEST(RngTest, UniformAtIsUniformAcrossCountersAndSeeds) {
  constexpr int kN = 100000;
  double by_counter = 0.0;
  double by_seed = 0.0;
  int buckets[10] = {};
  for (int i = 0; i < kN; ++i) {
    const double u = UniformAt(7, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    by_counter += u;
    ++buckets[static_cast<int>(u * 10)];
    by_seed += UniformAt(static_cast<uint64_t>(i), 5);
  }
  // Standard error of the mean is 0.0009; 5 sigma.
  EXPECT_NEAR(by_counter / kN, 0.5, 0.0045);
  EXPECT_NEAR(by_seed / kN, 0.5, 0.0045);
  for (int b = 0; b < 10; ++b) EXPECT_NEAR(buckets[b], kN / 10, 500) << "bucket " << b;
}

TEST(RngTest, RandomSeedsDiffer) {
  std::set<uint64_t> seeds;
  for (int i = 0; i < 8; ++i) seeds.insert(RandomSeed());
  EXPECT_EQ(seeds.size(), 8u);
}

}  // namespace
}  // namespace llmux
