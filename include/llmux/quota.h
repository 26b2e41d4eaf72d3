// Spend and volume quotas (TenantConfig::quota), enforced at admission from running totals
// that mirror the usage ledger: tokens per UTC day, spend per UTC calendar month.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "llmux/status.h"
#include "llmux/tenant_policy.h"
#include "llmux/thread_annotations.h"
#include "llmux/usage_ledger.h"

namespace llmux {

// Wall clock in Unix milliseconds (injected in tests).
using UnixMsClock = std::function<int64_t()>;

struct QuotaDecision {
  bool allowed = true;
  // When refused: which limit, the message for the client (limit, usage and reset time), the
  // reset time and the whole seconds until it (>= 1).
  std::string limit;  // "tokens_per_day" | "spend_per_month"
  std::string message;
  int64_t reset_unix_ms = 0;
  int64_t retry_after_seconds = 0;
};

// Thread-safe: Check from I/O threads, Record from the ledger's writer thread.
class QuotaTracker {
 public:
  explicit QuotaTracker(UnixMsClock clock);

  // Loads the current day's tokens and the current month's spend (token and capacity charges)
  // of every tenant from the ledger (replacing what was recorded). The ledger's error on failure.
  Status LoadFrom(UsageLedger& ledger);
  // Adds one committed call's tokens (prompt + completion) and cost, at `finished_unix_ms`; a
  // capacity charge is recorded with tokens 0 at its row's hour.
  void Record(const std::string& tenant, int64_t finished_unix_ms, int64_t tokens,
              int64_t cost_nano);
  // Whether a new request of `tenant` may start under `quota` (nullopt = no quota). A tenant
  // at or past a limit is refused until the period resets.
  QuotaDecision Check(const std::string& tenant, const std::optional<Quota>& quota);

  // The running totals now (for tests and /admin/stats).
  int64_t TokensToday(const std::string& tenant);
  int64_t SpendThisMonth(const std::string& tenant);

 private:
  struct Totals {
    int64_t day_start_ms = 0;
    int64_t tokens = 0;
    int64_t month_start_ms = 0;
    int64_t spend_nano = 0;
  };
  // Rolls `t` forward to the periods holding `now_ms` (zeroing a finished period).
  static void Roll(Totals& t, int64_t now_ms);

  UnixMsClock clock_;
  Mutex mutex_;
  std::map<std::string, Totals, std::less<>> totals_ GUARDED_BY(mutex_);
};

}  // namespace llmux
