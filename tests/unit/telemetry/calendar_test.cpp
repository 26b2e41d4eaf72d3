#include <gtest/gtest.h>

#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

TEST(ParseTimeArg, AcceptsRfc3339DatesAndUnixSeconds) {
  EXPECT_EQ(*ParseTimeArg("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseTimeArg("2024-05-01T00:00:00Z"), 1714521600000);
  EXPECT_EQ(*ParseTimeArg("2024-05-01"), 1714521600000);
  EXPECT_EQ(*ParseTimeArg("1714521600"), 1714521600000);
  EXPECT_EQ(*ParseTimeArg("2024-05-01T02:00:00.250+02:00"), 1714521600250);
  EXPECT_EQ(*ParseTimeArg("2024-04-30T19:30:00-04:30"), 1714521600000);
  EXPECT_EQ(*ParseTimeArg("2024-02-29T23:59:59.9999Z"), 1709251199999);
}

TEST(ParseTimeArg, RejectsMalformedText) {
  for (const char* bad : {"", "2024-13-01", "2023-02-29", "2024-05-01T00:00:00",
                          "2024-05-01T24:00:00Z", "2024-05-01 00:00:00Z", "yesterday", "-5",
                          "2024-05-01T00:00:00Zjunk", "2024-05-01T00:00:00+0200"}) {
    EXPECT_FALSE(ParseTimeArg(bad).ok()) << bad;
  }
}

TEST(Calendar, FormatsAndFindsPeriodStarts) {
  EXPECT_EQ(FormatRfc3339(1714521600250), "2024-05-01T00:00:00.250Z");
  EXPECT_EQ(FormatDate(1709251199999), "2024-02-29");
  const int64_t t = *ParseTimeArg("2024-12-31T23:59:59Z");
  EXPECT_EQ(StartOfDayMs(t), *ParseTimeArg("2024-12-31"));
  EXPECT_EQ(StartOfMonthMs(t), *ParseTimeArg("2024-12-01"));
  EXPECT_EQ(StartOfNextMonthMs(t), *ParseTimeArg("2025-01-01"));
  EXPECT_EQ(StartOfNextMonthMs(*ParseTimeArg("2024-01-31T12:00:00Z")), *ParseTimeArg("2024-02-01"));
}

TEST(Calendar, FormatNanoIsExact) {
  EXPECT_EQ(FormatNano(0), "0.000000000");
  EXPECT_EQ(FormatNano(200), "0.000000200");
  EXPECT_EQ(FormatNano(50000000000), "50.000000000");
  EXPECT_EQ(FormatNano(-1), "-0.000000001");
}

}  // namespace
}  // namespace llmux
