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
  // Engine time attributed to the call (all its choices): its shares of the steps its
  // sequences were in (docs/metrics.md, "Engine time per tenant"). 0 on rows written before the
  // column existed.
  int64_t engine_ms = 0;

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
  int64_t cost_nano = 0;           // token charges: the sum of the calls' cost_nano
  int64_t capacity_cost_nano = 0;  // capacity charges: the sum of the capacity rows' cost_nano
  bool operator==(const UsageTotals&) const = default;

  // Token and capacity charges together (saturating at INT64_MAX).
  int64_t total_cost_nano() const;
};

// ---- Capacity charges (docs/billing.md, "Capacity charges") ----

// What a tenant holds and pays per hour whether it uses it or not: its reservation in its pool,
// and its pool itself when that pool is not the shared one.
struct CapacityHold {
  std::string pool;
  int64_t reserved_kv_tokens = 0;
  int64_t reserved_seqs = 0;
  bool dedicated = false;  // pool != "shared": the pool price applies
  CapacityPrices prices;
  bool operator==(const CapacityHold&) const = default;

  // The hourly price in milli-nano-units (1/1000 of a nano-unit, so that a price per 1000 KV
  // tokens stays exact): kv_tokens * kv_price + 1000 * (seqs * seq_price + pool_price).
  // Saturates at INT64_MAX.
  int64_t MilliNanoPerHour() const;
};

// The hold `tenant` is charged for under its policy.
CapacityHold HoldOf(const TenantConfig& tenant);

// `tenant` held `hold` during [from_ms, to_ms), which lies within one UTC hour.
struct CapacityAccrual {
  std::string tenant;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  CapacityHold hold;
  bool operator==(const CapacityAccrual&) const = default;
};

// One capacity row: a tenant's held capacity during one UTC hour.
struct CapacityRecord {
  std::string tenant;
  int64_t hour_start_ms = 0;  // decides the row's day and month
  // The hold at the end of what the row covers (a reload mid-hour changes it; the cost is
  // prorated over both).
  std::string pool;
  int64_t reserved_kv_tokens = 0;
  int64_t reserved_seqs = 0;
  bool dedicated = false;
  int64_t held_ms = 0;  // milliseconds of the hour the hold was charged for (<= 3600000)
  int64_t cost_nano = 0;
  bool operator==(const CapacityRecord&) const = default;
};

// What one AccrueCapacity added to a row's cost (for the quota totals).
struct CapacityCharge {
  std::string tenant;
  int64_t hour_start_ms = 0;
  int64_t added_nano = 0;
  bool operator==(const CapacityCharge&) const = default;
};

// A capacity row's exact running amount: (quotient, remainder) of sum(rate * ms) by
// kCapacityDivisor, so that cost_nano = quotient rounded half up by the remainder is rounded
// once per row however many accruals built it.
inline constexpr int64_t kCapacityDivisor = 3'600'000'000;  // ms per hour * 1000 (milli-nano)
struct CapacityAmount {
  int64_t quot = 0;
  int64_t rem = 0;  // [0, kCapacityDivisor)
  bool operator==(const CapacityAmount&) const = default;

  // Adds rate * ms (both >= 0); saturates the quotient at INT64_MAX.
  void Add(int64_t milli_nano_per_hour, int64_t ms);
  // Nano-units, rounded half up.
  int64_t CostNano() const;
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
  // Deletes rows finished before `before_ms` (and capacity rows of hours that started before
  // it); returns how many call rows. Any thread.
  virtual StatusOr<int64_t> Prune(int64_t before_ms) = 0;

  // Adds each accrual's time to its tenant's row of that UTC hour, in one transaction. Only the
  // part after what the row already covers is added (a row covers up to the latest `to_ms`
  // accrued into it), so replaying an accrual, or a restarted daemon accruing from its own
  // start, never charges a millisecond twice. Returns the cost each touched row gained. Any
  // thread. PostgreSQL: Unavailable while it is unreachable (capacity is not spooled; the
  // caller keeps the accruals and retries).
  virtual StatusOr<std::vector<CapacityCharge>> AccrueCapacity(
      const std::vector<CapacityAccrual>& accruals) = 0;
  // Capacity rows whose hour starts in [start_ms, end_ms), of one tenant or of all, in
  // (hour_start_ms, tenant) order. Any thread.
  virtual StatusOr<std::vector<CapacityRecord>> CapacityRecords(const UsageQuery& query) = 0;

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
// Capacity rows: CSV columns tenant,hour_start,pool,reserved_kv_tokens,reserved_seqs,dedicated,
// held_ms,cost_nano (hour_start in RFC 3339 UTC), or a JSON array with the same keys.
std::string CapacityRecordsCsv(const std::vector<CapacityRecord>& records);
std::string CapacityRecordsJson(const std::vector<CapacityRecord>& records);
// Per-tenant totals: CSV columns tenant,requests,prompt_tokens,cached_tokens,completion_tokens,
// token_cost_nano,capacity_cost_nano,total_cost_nano, or a JSON array with the same keys.
std::string UsageSummaryCsv(const std::vector<TenantUsage>& usage);
std::string UsageSummaryJson(const std::vector<TenantUsage>& usage);

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
