#include "llmux/status.h"

#include <gtest/gtest.h>

#include "llmux/dtype.h"

namespace llmux {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Status UseHalf(int x, int* out) {
  LLMUX_ASSIGN_OR_RETURN(*out, Half(x));
  return Status::Ok();
}

TEST(StatusTest, OkAndErrorPropagate) {
  int v = 0;
  EXPECT_TRUE(UseHalf(8, &v).ok());
  EXPECT_EQ(v, 4);
  Status s = UseHalf(7, &v);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "INVALID_ARGUMENT: odd: 7");
  EXPECT_EQ(s.WithContext("ctx").message(), "ctx: odd: 7");
}

TEST(StatusTest, StatusOrFromOkStatusIsInternal) {
  StatusOr<int> s{Status::Ok()};
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInternal);
}

TEST(StatusDeathTest, CheckAbortsWithMessage) {
  EXPECT_DEATH({ LLMUX_CHECK(1 == 2) << "because " << 42; }, "CHECK failed.*1 == 2 because 42");
}

TEST(DTypeTest, HalfRoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    if ((bits & 0x7c00) == 0x7c00) continue;  // inf/NaN
    EXPECT_EQ(FloatToHalf(HalfToFloat(bits)), bits) << "bits " << h;
  }
  EXPECT_EQ(HalfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xc000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x0001), 5.960464477539063e-08f);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(FloatToHalf(1.0f + 1.0f / 2048), 0x3c00);  // tie to even
}

TEST(DTypeTest, Bf16) {
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3f80);  // halfway, ties to even
  EXPECT_EQ(ParseDType("BF16").value(), DType::kBF16);
  EXPECT_FALSE(ParseDType("F8").ok());
}

}  // namespace
}  // namespace llmux
