#include "engine/stop_checker.h"

#include <gtest/gtest.h>

#include <vector>

namespace llmux {
namespace {

constexpr int32_t kEos = 2;
constexpr int32_t kEot = 9;  // a second EOS id, like Llama 3's <|eot_id|>

StopChecker Checker() { return StopChecker({kEos, kEot}, /*max_model_len=*/64); }

SamplingParams Params(int32_t max_tokens) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  return p;
}

TEST(StopCheckerTest, ContinuesOnOrdinaryTokens) {
  const std::vector<int32_t> out = {5, 6, 7};
  EXPECT_FALSE(Checker().Check(Params(10), 4, out).has_value());
}

TEST(StopCheckerTest, EosStops) {
  for (int32_t eos : {kEos, kEot}) {
    const std::vector<int32_t> out = {5, eos};
    const auto d = Checker().Check(Params(10), 4, out);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->reason, FinishReason::kStop);
    EXPECT_TRUE(d->eos);
    EXPECT_EQ(d->stop_token, eos);
  }
  // Only the LAST token counts.
  const std::vector<int32_t> earlier = {kEos, 5};
  EXPECT_FALSE(Checker().Check(Params(10), 4, earlier).has_value());
}

TEST(StopCheckerTest, StopTokenIdsStopAndAreReported) {
  SamplingParams p = Params(10);
  p.stop_token_ids = {11, 13};
  const std::vector<int32_t> out = {5, 13};
  const auto d = Checker().Check(p, 4, out);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->reason, FinishReason::kStop);
  EXPECT_FALSE(d->eos);
  EXPECT_EQ(d->stop_token, 13);
}

TEST(StopCheckerTest, IgnoreEosKeepsGoingButStopTokenIdsStillStop) {
  SamplingParams p = Params(10);
  p.ignore_eos = true;
  p.stop_token_ids = {11};
  const std::vector<int32_t> eos = {5, kEos};
  EXPECT_FALSE(Checker().Check(p, 4, eos).has_value());
  const std::vector<int32_t> stop = {5, 11};
  ASSERT_TRUE(Checker().Check(p, 4, stop).has_value());
  EXPECT_EQ(Checker().Check(p, 4, stop)->stop_token, 11);
}

TEST(StopCheckerTest, MinTokensDefersStops) {
  SamplingParams p = Params(10);
  p.min_tokens = 3;
  p.stop_token_ids = {11};
  const std::vector<int32_t> two = {5, kEos};
  EXPECT_FALSE(Checker().Check(p, 4, two).has_value());
  const std::vector<int32_t> two_stop = {5, 11};
  EXPECT_FALSE(Checker().Check(p, 4, two_stop).has_value());
  const std::vector<int32_t> three = {5, 6, kEos};
  ASSERT_TRUE(Checker().Check(p, 4, three).has_value());
  EXPECT_EQ(Checker().Check(p, 4, three)->reason, FinishReason::kStop);
}

TEST(StopCheckerTest, MaxTokensGivesLength) {
  const std::vector<int32_t> out = {5, 6, 7};
  EXPECT_FALSE(Checker().Check(Params(4), 4, out).has_value());
  const auto d = Checker().Check(Params(3), 4, out);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->reason, FinishReason::kLength);
  EXPECT_FALSE(d->stop_token.has_value());
  // EOS on the last allowed token is a stop, not a length.
  const std::vector<int32_t> eos_last = {5, 6, kEos};
  EXPECT_EQ(Checker().Check(Params(3), 4, eos_last)->reason, FinishReason::kStop);
}

TEST(StopCheckerTest, FullContextGivesLength) {
  const std::vector<int32_t> out = {5, 6, 7};
  EXPECT_FALSE(Checker().Check(Params(100), 60, out).has_value());  // 63 < 64
  const auto d = Checker().Check(Params(100), 61, out);             // 64 == 64
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->reason, FinishReason::kLength);
}

TEST(StopCheckerTest, FinishReasonNames) {
  EXPECT_EQ(FinishReasonName(FinishReason::kStop), "stop");
  EXPECT_EQ(FinishReasonName(FinishReason::kLength), "length");
  EXPECT_EQ(FinishReasonName(FinishReason::kAbort), "abort");
}

}  // namespace
}  // namespace llmux
