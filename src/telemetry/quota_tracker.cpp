#include <algorithm>

#include "llmux/quota.h"

namespace llmux {

QuotaTracker::QuotaTracker(UnixMsClock clock) : clock_(std::move(clock)) {}

void QuotaTracker::Roll(Totals& t, int64_t now_ms) {
  const int64_t day = StartOfDayMs(now_ms);
  if (t.day_start_ms != day) {
    t.day_start_ms = day;
    t.tokens = 0;
  }
  const int64_t month = StartOfMonthMs(now_ms);
  if (t.month_start_ms != month) {
    t.month_start_ms = month;
    t.spend_nano = 0;
  }
}

Status QuotaTracker::LoadFrom(UsageLedger& ledger) {
  const int64_t now = clock_();
  UsageQuery q;
  q.start_ms = std::min(StartOfMonthMs(now), StartOfDayMs(now));
  q.end_ms = INT64_MAX;
  LLMUX_ASSIGN_OR_RETURN(std::vector<TenantUsage> usage, ledger.Summarize(q));
  const std::string today = FormatDate(now);
  MutexLock lock(mutex_);
  totals_.clear();
  for (const TenantUsage& u : usage) {
    Totals& t = totals_[u.tenant];
    Roll(t, now);
    t.spend_nano = u.totals.total_cost_nano();  // token and capacity charges
    for (const DailyUsage& d : u.daily) {
      if (d.date == today) t.tokens = d.totals.prompt_tokens + d.totals.completion_tokens;
    }
  }
  return Status::Ok();
}

void QuotaTracker::Record(const std::string& tenant, int64_t finished_unix_ms, int64_t tokens,
                          int64_t cost_nano) {
  const int64_t now = clock_();
  MutexLock lock(mutex_);
  Totals& t = totals_[tenant];
  Roll(t, now);
  if (StartOfDayMs(finished_unix_ms) == t.day_start_ms) t.tokens += tokens;
  if (StartOfMonthMs(finished_unix_ms) == t.month_start_ms) t.spend_nano += cost_nano;
}

QuotaDecision QuotaTracker::Check(const std::string& tenant, const std::optional<Quota>& quota) {
  QuotaDecision d;
  if (!quota) return d;
  const int64_t now = clock_();
  Totals t;
  {
    MutexLock lock(mutex_);
    Totals& stored = totals_[tenant];
    Roll(stored, now);
    t = stored;
  }
  auto refuse = [&](std::string limit, std::string message, int64_t reset) {
    d.allowed = false;
    d.limit = std::move(limit);
    d.reset_unix_ms = reset;
    d.retry_after_seconds = std::max<int64_t>(1, (reset - now + 999) / 1000);
    d.message = std::move(message) + "; it resets at " + FormatRfc3339(reset);
  };
  if (quota->tokens_per_day && t.tokens >= *quota->tokens_per_day) {
    refuse("tokens_per_day",
           "quota exceeded: this tenant used " + std::to_string(t.tokens) + " of its " +
               std::to_string(*quota->tokens_per_day) + " tokens per day (UTC)",
           t.day_start_ms + 86400000);
  } else if (quota->spend_per_month_nano && t.spend_nano >= *quota->spend_per_month_nano) {
    refuse("spend_per_month",
           "quota exceeded: this tenant spent " + FormatNano(t.spend_nano) + " of its " +
               FormatNano(*quota->spend_per_month_nano) + " per calendar month (UTC)",
           StartOfNextMonthMs(now));
  }
  return d;
}

int64_t QuotaTracker::TokensToday(const std::string& tenant) {
  MutexLock lock(mutex_);
  Totals& t = totals_[tenant];
  Roll(t, clock_());
  return t.tokens;
}

int64_t QuotaTracker::SpendThisMonth(const std::string& tenant) {
  MutexLock lock(mutex_);
  Totals& t = totals_[tenant];
  Roll(t, clock_());
  return t.spend_nano;
}

}  // namespace llmux
