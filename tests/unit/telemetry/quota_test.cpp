#include "llmux/quota.h"

#include <gtest/gtest.h>

namespace llmux {
namespace {

class QuotaTest : public ::testing::Test {
 protected:
  int64_t now_ = *ParseTimeArg("2024-05-31T23:00:00Z");
  QuotaTracker tracker_{[this] { return now_; }};
};

TEST_F(QuotaTest, NoQuotaAlwaysAdmits) {
  tracker_.Record("a", now_, 1000000000, 1000000000);
  EXPECT_TRUE(tracker_.Check("a", std::nullopt).allowed);
}

TEST_F(QuotaTest, TokensPerDayRefusesAtTheLimitUntilUtcMidnight) {
  Quota q;
  q.tokens_per_day = 100;
  tracker_.Record("a", now_, 99, 0);
  EXPECT_TRUE(tracker_.Check("a", q).allowed);
  tracker_.Record("a", now_, 1, 0);
  QuotaDecision d = tracker_.Check("a", q);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limit, "tokens_per_day");
  EXPECT_EQ(d.reset_unix_ms, *ParseTimeArg("2024-06-01"));
  EXPECT_EQ(d.retry_after_seconds, 3600);
  EXPECT_EQ(d.message,
            "quota exceeded: this tenant used 100 of its 100 tokens per day (UTC); it resets at "
            "2024-06-01T00:00:00.000Z");
  EXPECT_TRUE(tracker_.Check("b", q).allowed);  // per tenant
  now_ = *ParseTimeArg("2024-06-01T00:00:00Z");
  EXPECT_TRUE(tracker_.Check("a", q).allowed);
  EXPECT_EQ(tracker_.TokensToday("a"), 0);
}

TEST_F(QuotaTest, SpendPerMonthRefusesUntilTheNextCalendarMonth) {
  Quota q;
  q.spend_per_month_nano = 1000;
  now_ = *ParseTimeArg("2024-02-10T12:00:00Z");
  tracker_.Record("a", now_, 1, 999);
  EXPECT_TRUE(tracker_.Check("a", q).allowed);
  now_ += 86400000;  // the next day: same month, spend kept
  tracker_.Record("a", now_, 1, 1);
  QuotaDecision d = tracker_.Check("a", q);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limit, "spend_per_month");
  EXPECT_EQ(d.reset_unix_ms, *ParseTimeArg("2024-03-01"));
  EXPECT_EQ(d.retry_after_seconds, (d.reset_unix_ms - now_) / 1000);
  EXPECT_EQ(d.message,
            "quota exceeded: this tenant spent 0.000001000 of its 0.000001000 per calendar month "
            "(UTC); it resets at 2024-03-01T00:00:00.000Z");
  now_ = *ParseTimeArg("2024-03-01T00:00:00.001Z");
  EXPECT_TRUE(tracker_.Check("a", q).allowed);
}

TEST_F(QuotaTest, RecordsOfAnEarlierPeriodDoNotCount) {
  Quota q;
  q.tokens_per_day = 10;
  tracker_.Record("a", now_ - 86400000, 50, 0);  // finished yesterday
  EXPECT_TRUE(tracker_.Check("a", q).allowed);
}

TEST_F(QuotaTest, LoadsTodayAndThisMonthFromTheLedger) {
  const auto dir = std::filesystem::temp_directory_path() / "llmux-quota-load-test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto ledger = std::move(UsageLedger::Open(dir / "u.db")).value();
  auto row = [](std::string when, int64_t p, int64_t c, int64_t cost) {
    UsageRecord r;
    r.tenant = "a";
    r.finished_unix_ms = *ParseTimeArg(when);
    r.prompt_tokens = p;
    r.completion_tokens = c;
    r.cost_nano = cost;
    r.outcome = "ok";
    return r;
  };
  ASSERT_TRUE(
      ledger->AppendSync(row("2024-04-30T23:59:59Z", 1000, 1000, 1000)).ok());  // last month
  ASSERT_TRUE(ledger->AppendSync(row("2024-05-02T00:00:00Z", 7, 3, 40)).ok());  // this month
  ASSERT_TRUE(ledger->AppendSync(row("2024-05-31T01:00:00Z", 5, 6, 2)).ok());   // today
  ASSERT_TRUE(tracker_.LoadFrom(*ledger).ok());
  EXPECT_EQ(tracker_.TokensToday("a"), 11);
  EXPECT_EQ(tracker_.SpendThisMonth("a"), 42);
  ledger->Close();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace llmux
