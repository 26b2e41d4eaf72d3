// The usage ledger (billing): one durable row per HTTP completion call that reached the engine,
// priced in integer nano-units of the currency. Kept in a SQLite file per replica (the default)
// or in one PostgreSQL database shared by every replica, with a local SQLite spool that holds
// rows while PostgreSQL is unreachable. See docs/billing.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"
#include "llmux/tenant_policy.h"

namespace llmux {

// One HTTP completion call (all its choices summed) that reached the engine.
struct UsageRecord {
  std::string request_id;  // the response id ("chatcmpl-..." / "cmpl-...")
  std::string tenant;
  std::string model;
  std::string lane;
  std::string pool;
  int64_t finished_unix_ms = 0;  // when the call ended; decides its day and month
  int64_t prompt_tokens = 0;     // billed prompt tokens, cached ones included
  int64_t cached_tokens = 0;     // of prompt_tokens, those served from the prefix cache
  int64_t completion_tokens = 0;
  int64_t queue_ms = 0;
  int64_t ttft_ms = 0;  // 0 when no token was produced
  int64_t duration_ms = 0;
  std::string outcome;  // "ok" | "aborted" | "error"
  int64_t cost_nano = 0;
  // The HTTP request's x-request-id (the client's X-Request-Id when sane, else generated);
  // "" = none (a NULL column; rows written before the column existed).
  std::string x_request_id = {};

  bool operator==(const UsageRecord&) const = default;
};

// Cost in nano-units: (uncached prompt * input + cached * cached_price + completion * output)
// nano-per-Mtok, divided by 10^6 once for the whole call and rounded half up (a remainder of
// >= 500000 rounds up). Exact (128-bit intermediate); saturates at INT64_MAX.
int64_t CostNano(const Prices& prices, int64_t prompt_tokens, int64_t cached_tokens,
                 int64_t completion_tokens);

struct UsageTotals {
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cost_nano = 0;
  bool operator==(const UsageTotals&) const = default;
};

struct DailyUsage {
  std::string date;  // "YYYY-MM-DD" (UTC)
  UsageTotals totals;
  bool operator==(const DailyUsage&) const = default;
};

struct TenantUsage {
  std::string tenant;
  UsageTotals totals;
  std::vector<DailyUsage> daily;  // ascending; only days with rows
};

// Rows with start_ms <= finished_unix_ms < end_ms, of one tenant or of all.
struct UsageQuery {
  std::optional<std::string> tenant;
  int64_t start_ms = 0;
  int64_t end_ms = INT64_MAX;
};

// LedgerSync (how durable a committed row is) is declared in llmux/config.h.
// "full" | "normal".
std::string_view LedgerSyncName(LedgerSync sync);

// True for "postgresql://..." and "postgres://..." (libpq connection URIs).
bool IsPostgresUrl(std::string_view target);

struct LedgerOptions {
  // A SQLite file path, or a PostgreSQL URI ("postgresql://user@host:5432/db?...").
  std::string target;
  LedgerSync sync = LedgerSync::kFull;
  // PostgreSQL only: the local SQLite spool that holds rows while PostgreSQL is unreachable.
  // Empty = no spool: Append fails (OnCommitted gets Unavailable) while it is unreachable;
  // fine for readers such as `llmux usage export`, not for llmuxd.
  std::filesystem::path spool;
  // PostgreSQL only: statement_timeout of every statement, and the connect timeout.
  int statement_timeout_ms = 5000;
  int connect_timeout_s = 3;
  // PostgreSQL only: how often the replay thread retries an unreachable PostgreSQL.
  int retry_interval_ms = 1000;
  // PostgreSQL only: runs on the replay thread each time PostgreSQL became reachable again and
  // the spool was drained into it (e.g. to reload quota totals). May be empty.
  std::function<void()> on_store_up;
};

// State for /metrics (llmux_ledger_*).
struct LedgerHealth {
  bool store_up = true;       // the ledger's store answered its last statement
  int64_t spooled_rows = 0;   // rows committed to the local spool, not yet in PostgreSQL
  int64_t replayed_rows = 0;  // rows moved from the spool to PostgreSQL since start
};

class UsageLedger {
 public:
  // Called on the ledger's writer thread once the row's transaction committed (OK) or failed.
  using OnCommitted = std::function<void(const Status&)>;

  virtual ~UsageLedger() = default;

  // Opens (creating when missing) the SQLite database in WAL mode with synchronous=FULL, and
  // starts the writer thread. Internal naming the file and SQLite's message on failure.
  static StatusOr<std::unique_ptr<UsageLedger>> Open(const std::filesystem::path& path);
  // Opens the ledger `options.target` names. SQLite: as above with `options.sync`. PostgreSQL:
  // connects, creates or migrates the schema, opens the spool and starts the writer and replay
  // threads; an unreachable PostgreSQL is not an error when there is a spool (rows go there
  // until it returns), and is Unavailable otherwise. InvalidArgument for a bad target.
  static StatusOr<std::unique_ptr<UsageLedger>> Open(const LedgerOptions& options);

  // Queues a row; the writer thread commits queued rows in one transaction (group commit),
  // then runs each row's `on_committed`. Any thread. After Close, `on_committed` runs at once
  // with Unavailable.
  virtual void Append(UsageRecord record, OnCommitted on_committed) = 0;
  // Append and wait for the commit. Any thread but the writer's.
  virtual Status AppendSync(UsageRecord record) = 0;

  // Per-tenant totals and daily buckets (tenants in name order). Any thread. PostgreSQL:
  // Unavailable while it is unreachable (rows spooled by this replica are not in the answer).
  virtual StatusOr<std::vector<TenantUsage>> Summarize(const UsageQuery& query) = 0;
  // The rows themselves, in (finished_unix_ms, id) order. Any thread.
  virtual StatusOr<std::vector<UsageRecord>> Records(const UsageQuery& query) = 0;
  // Deletes rows finished before `before_ms`; returns how many. Any thread.
  virtual StatusOr<int64_t> Prune(int64_t before_ms) = 0;

  // Store reachability and spool state. Any thread.
  virtual LedgerHealth Health() const { return {}; }

  // Commits what is queued, runs its callbacks and stops the writer. Idempotent.
  virtual void Close() = 0;
};

// ---- Export formats (llmux usage export, GET /admin/usage) ----

// CSV with a header line; fields RFC 4180-quoted when needed; times as RFC 3339 (UTC, ms).
std::string UsageRecordsCsv(const std::vector<UsageRecord>& records);
// A JSON array of objects (keys as the CSV header).
std::string UsageRecordsJson(const std::vector<UsageRecord>& records);

// ---- Time arguments (UTC) ----

// "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.250+02:00", "2024-05-01" (midnight UTC) or
// Unix seconds ("1714564800") -> Unix milliseconds. InvalidArgument naming the text otherwise.
StatusOr<int64_t> ParseTimeArg(std::string_view text);
// Unix ms -> "2024-05-01T12:00:00.250Z" (".000" included).
std::string FormatRfc3339(int64_t unix_ms);
// Unix ms -> "2024-05-01".
std::string FormatDate(int64_t unix_ms);
// Start of the UTC day / calendar month holding `unix_ms`, and of the next one.
int64_t StartOfDayMs(int64_t unix_ms);
int64_t StartOfMonthMs(int64_t unix_ms);
int64_t StartOfNextMonthMs(int64_t unix_ms);
// Nano-units -> a decimal string with 9 decimals ("0.000000200").
std::string FormatNano(int64_t nano);

}  // namespace llmux
