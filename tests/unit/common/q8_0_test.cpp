// Q8_0 block quantization (dtype.h): GGML's layout and rounding, byte for byte.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "llmux/dtype.h"

namespace llmux {
namespace {

TEST(Q8Test, QuantizesOneBlockLikeGgml) {
  // max |x| = 2.54 -> d = 0.02; x / d rounds half away from zero (1.5 -> 2, -2.5 -> -3).
  std::vector<float> x(32, 0.0f);
  x[0] = 2.54f;
  x[1] = -2.54f;
  x[2] = 0.03f;   // 1.5 -> 2
  x[3] = -0.05f;  // -2.5 -> -3
  x[4] = 0.009f;  // 0.45 -> 0
  std::vector<std::byte> blk(kQ8BlockBytes);
  QuantizeRowQ8_0(x.data(), 32, blk.data());
  uint16_t d;
  std::memcpy(&d, blk.data(), 2);
  EXPECT_EQ(d, FloatToHalf(2.54f / 127.0f));
  const auto* q = reinterpret_cast<const int8_t*>(blk.data() + 2);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[2], static_cast<int8_t>(std::lround(0.03f * (1.0f / (2.54f / 127.0f)))));
  EXPECT_EQ(q[3], static_cast<int8_t>(std::lround(-0.05f * (1.0f / (2.54f / 127.0f)))));
  EXPECT_EQ(q[4], 0);
  for (int i = 5; i < 32; ++i) EXPECT_EQ(q[i], 0);
}

TEST(Q8Test, ZeroBlockHasZeroScale) {
  std::vector<float> x(64, 0.0f);
  x[40] = -1.0f;
  std::vector<std::byte> row(2 * kQ8BlockBytes, std::byte{0x55});
  QuantizeRowQ8_0(x.data(), 64, row.data());
  for (size_t i = 0; i < kQ8BlockBytes; ++i) EXPECT_EQ(row[i], std::byte{0}) << i;  // d = 0, q = 0
  std::vector<float> back(64, 9.0f);
  DequantizeRowQ8_0(row.data(), 64, back.data());
  for (int i = 0; i < 64; ++i) {
    // -1 is q = -127 times d = 1/127 rounded to F16: exact up to the scale's rounding.
    if (i == 40) {
      EXPECT_EQ(back[i], -127.0f * HalfToFloat(FloatToHalf(1.0f / 127.0f)));
    } else {
      EXPECT_EQ(back[i], 0.0f) << i;
    }
  }
}

TEST(Q8Test, RoundTripErrorIsAtMostHalfAStep) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  constexpr int64_t kN = 32 * 200;
  std::vector<float> x(kN);
  for (auto& v : x) v = dist(rng);
  std::vector<std::byte> row(DTypeBytes(DType::kQ8_0, kN));
  ASSERT_EQ(row.size(), 200u * 34u);
  QuantizeRowQ8_0(x.data(), kN, row.data());
  std::vector<float> back(kN);
  DequantizeRowQ8_0(row.data(), kN, back.data());
  for (int64_t b = 0; b < kN / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const float step = amax / 127.0f;
    for (int i = 0; i < 32; ++i) {
      // Half a step, plus the F16 rounding of the scale (2^-11 relative) times 127.
      ASSERT_LE(std::fabs(back[b * 32 + i] - x[b * 32 + i]), 0.5f * step + amax * 0.0005f)
          << "block " << b << " element " << i;
    }
  }
}

TEST(Q8Test, NonFiniteWeightsDoNotCrash) {
  std::vector<float> x(32, 0.5f);
  x[3] = std::nanf("");
  std::vector<std::byte> blk(kQ8BlockBytes);
  QuantizeRowQ8_0(x.data(), 32, blk.data());
  const auto* q = reinterpret_cast<const int8_t*>(blk.data() + 2);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[3], 0);
}

TEST(Q8Test, SizesAndNames) {
  EXPECT_EQ(DTypeBytes(DType::kQ8_0, 576), 18u * 34u);
  EXPECT_EQ(DTypeBytes(DType::kF16, 576), 1152u);
  EXPECT_EQ(DTypeName(DType::kQ8_0), "q8_0");
  EXPECT_FALSE(ParseDType("Q8_0").ok());  // not a safetensors dtype
}

}  // namespace
}  // namespace llmux
