// SQLite usage ledger: WAL, synchronous=FULL or NORMAL (ledger_sync), one writer thread doing
// group commits.
//
// Thread ownership: `write_db_` belongs to the writer thread (and to Close after it joined);
// `read_db_` is shared by query callers under `read_mutex_`. SQLite's own locking (with a busy
// timeout) orders the writer's transactions against Prune on the read connection.
#include "llmux/thread_annotations.h"
#include "telemetry/sqlite_ledger.h"

#include <sqlite3.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "llmux/log.h"
#include "telemetry/capacity_rows.h"
#include "telemetry/sqlite_util.h"
#include "telemetry/usage_sqlite_rows.h"

namespace llmux {
namespace {

constexpr int kMaxBatch = 512;  // rows per group commit

class SqliteLedger final : public UsageLedger {
 public:
  SqliteLedger(sqlite::Db write_db, sqlite::Db read_db)
      : write_db_(std::move(write_db)), read_db_(std::move(read_db)) {
    writer_ = std::thread([this] { WriterMain(); });
  }
  ~SqliteLedger() override { Close(); }

  void Append(UsageRecord record, OnCommitted on_committed) override {
    {
      MutexLock lock(mutex_);
      if (!closed_) {
        queue_.push_back({std::move(record), std::move(on_committed)});
        cv_.NotifyOne();
        return;
      }
    }
    if (on_committed) on_committed(Unavailable("usage ledger closed"));
  }

  Status AppendSync(UsageRecord record) override {
    auto done = std::make_shared<std::promise<Status>>();
    std::future<Status> f = done->get_future();
    Append(std::move(record), [done](const Status& s) { done->set_value(s); });
    return f.get();
  }

  StatusOr<std::vector<TenantUsage>> Summarize(const UsageQuery& q) override;
  StatusOr<std::vector<UsageRecord>> Records(const UsageQuery& q) override;
  StatusOr<int64_t> Prune(int64_t before_ms) override;

  // NOTE: capacity rows are written on the read connection, not through the writer thread's
  // group commit: they come once a minute, and SQLite's write lock (busy timeout) orders them
  // against the writer's transactions.
  StatusOr<std::vector<CapacityCharge>> AccrueCapacity(
      const std::vector<CapacityAccrual>& accruals) override {
    MutexLock lock(read_mutex_);
    return sqlite::AccrueCapacity(read_db_.get(), accruals);
  }
  StatusOr<std::vector<CapacityRecord>> CapacityRecords(const UsageQuery& q) override {
    MutexLock lock(read_mutex_);
    return sqlite::ReadCapacity(read_db_.get(), q);
  }

  void Close() override {
    {
      MutexLock lock(mutex_);
      if (closed_) return;
      closed_ = true;
    }
    cv_.NotifyOne();
    if (writer_.joinable()) writer_.join();
  }

 private:
  struct Pending {
    UsageRecord record;
    OnCommitted on_committed;
  };

  void WriterMain();
  Status WriteBatch(const std::deque<Pending>& batch);

  sqlite::Db write_db_;  // writer thread only
  Mutex read_mutex_;
  sqlite::Db read_db_ GUARDED_BY(read_mutex_);

  Mutex mutex_;
  CondVar cv_;
  std::deque<Pending> queue_ GUARDED_BY(mutex_);
  bool closed_ GUARDED_BY(mutex_) = false;
  std::thread writer_;
};

void SqliteLedger::WriterMain() {
  for (;;) {
    std::deque<Pending> batch;
    {
      MutexLock lock(mutex_);
      cv_.Wait(lock, [this]() REQUIRES(mutex_) { return closed_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closed and drained
      while (!queue_.empty() && static_cast<int>(batch.size()) < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const Status s = WriteBatch(batch);
    if (!s.ok()) {
      LogEvent(LogLevel::kError, "usage_write_failed",
               {F("rows", static_cast<long long>(batch.size())), F("error", s.message())});
    }
    for (Pending& p : batch) {
      if (p.on_committed) p.on_committed(s);
    }
  }
}

Status SqliteLedger::WriteBatch(const std::deque<Pending>& batch) {
  sqlite3* db = write_db_.get();
  LLMUX_RETURN_IF_ERROR(sqlite::Exec(db, "BEGIN IMMEDIATE"));
  sqlite::Stmt stmt;
  Status s = sqlite::Prepare(db, sqlite::kUsageInsert, &stmt);
  for (size_t i = 0; s.ok() && i < batch.size(); ++i) {
    sqlite3_reset(stmt.get());
    sqlite::BindUsageRow(stmt.get(), batch[i].record);
    if (sqlite3_step(stmt.get()) != SQLITE_DONE) s = sqlite::Error(db, "insert usage row");
  }
  stmt.reset();
  if (!s.ok()) {
    (void)sqlite::Exec(db, "ROLLBACK");
    return s;
  }
  return sqlite::Exec(db, "COMMIT");
}

// Binds ?1..?3 (tenant or NULL, start, end) shared by both queries.
const char* TenantFilter(const UsageQuery& q) {
  return q.tenant ? "tenant = ?1 AND finished_unix_ms >= ?2 AND finished_unix_ms < ?3"
                  : "?1 IS NULL AND finished_unix_ms >= ?2 AND finished_unix_ms < ?3";
}

void BindQuery(sqlite3_stmt* stmt, const UsageQuery& q) {
  if (q.tenant) {
    sqlite::BindText(stmt, 1, *q.tenant);
  } else {
    sqlite3_bind_null(stmt, 1);
  }
  sqlite3_bind_int64(stmt, 2, q.start_ms);
  sqlite3_bind_int64(stmt, 3, q.end_ms);
}

StatusOr<std::vector<TenantUsage>> SqliteLedger::Summarize(const UsageQuery& q) {
  MutexLock lock(read_mutex_);
  sqlite3* db = read_db_.get();
  // NOTE: integer division floors for the non-negative times a ledger holds.
  const std::string sql = std::string(
                              "SELECT tenant, finished_unix_ms / 86400000 AS day, COUNT(*), "
                              "SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens), "
                              "SUM(cost_nano) FROM usage WHERE ") +
                          TenantFilter(q) + " GROUP BY tenant, day ORDER BY tenant, day";
  sqlite::Stmt stmt;
  LLMUX_RETURN_IF_ERROR(sqlite::Prepare(db, sql.c_str(), &stmt));
  BindQuery(stmt.get(), q);
  std::vector<TenantUsage> out;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    const std::string tenant = sqlite::ColumnText(stmt.get(), 0);
    if (out.empty() || out.back().tenant != tenant) out.push_back(TenantUsage{tenant, {}, {}});
    DailyUsage d;
    d.date = FormatDate(sqlite3_column_int64(stmt.get(), 1) * 86400000);
    d.totals.requests = sqlite3_column_int64(stmt.get(), 2);
    d.totals.prompt_tokens = sqlite3_column_int64(stmt.get(), 3);
    d.totals.cached_tokens = sqlite3_column_int64(stmt.get(), 4);
    d.totals.completion_tokens = sqlite3_column_int64(stmt.get(), 5);
    d.totals.cost_nano = sqlite3_column_int64(stmt.get(), 6);
    UsageTotals& t = out.back().totals;
    t.requests += d.totals.requests;
    t.prompt_tokens += d.totals.prompt_tokens;
    t.cached_tokens += d.totals.cached_tokens;
    t.completion_tokens += d.totals.completion_tokens;
    t.cost_nano += d.totals.cost_nano;
    out.back().daily.push_back(std::move(d));
  }
  if (rc != SQLITE_DONE) return sqlite::Error(db, "summarize usage");
  LLMUX_RETURN_IF_ERROR(sqlite::SummarizeCapacity(db, q, &out));
  return out;
}

StatusOr<std::vector<UsageRecord>> SqliteLedger::Records(const UsageQuery& q) {
  MutexLock lock(read_mutex_);
  sqlite3* db = read_db_.get();
  const std::string sql = std::string("SELECT ") + sqlite::kUsageColumns + " FROM usage WHERE " +
                          TenantFilter(q) + " ORDER BY finished_unix_ms, id";
  sqlite::Stmt stmt;
  LLMUX_RETURN_IF_ERROR(sqlite::Prepare(db, sql.c_str(), &stmt));
  BindQuery(stmt.get(), q);
  std::vector<UsageRecord> out;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    out.push_back(sqlite::ReadUsageRow(stmt.get(), 0));
  }
  if (rc != SQLITE_DONE) return sqlite::Error(db, "read usage rows");
  return out;
}

StatusOr<int64_t> SqliteLedger::Prune(int64_t before_ms) {
  MutexLock lock(read_mutex_);
  sqlite3* db = read_db_.get();
  sqlite::Stmt stmt;
  LLMUX_RETURN_IF_ERROR(
      sqlite::Prepare(db, "DELETE FROM usage WHERE finished_unix_ms < ?1", &stmt));
  sqlite3_bind_int64(stmt.get(), 1, before_ms);
  if (sqlite3_step(stmt.get()) != SQLITE_DONE) return sqlite::Error(db, "prune usage");
  const auto pruned = static_cast<int64_t>(sqlite3_changes(db));
  LLMUX_RETURN_IF_ERROR(sqlite::PruneCapacity(db, before_ms));
  return pruned;
}

}  // namespace

StatusOr<std::unique_ptr<UsageLedger>> OpenSqliteLedger(const std::filesystem::path& path,
                                                        LedgerSync sync) {
  LLMUX_ASSIGN_OR_RETURN(sqlite::Db write_db, sqlite::OpenDb(path));
  LLMUX_RETURN_IF_ERROR(sqlite::ApplySync(write_db.get(), sync));
  LLMUX_RETURN_IF_ERROR(sqlite::Exec(write_db.get(), sqlite::kUsageSchema));
  LLMUX_RETURN_IF_ERROR(sqlite::AddUsageRequestIdColumn(write_db.get()));
  LLMUX_RETURN_IF_ERROR(sqlite::Exec(write_db.get(), sqlite::kCapacitySchema));
  LLMUX_ASSIGN_OR_RETURN(sqlite::Db read_db, sqlite::OpenDb(path));
  LLMUX_RETURN_IF_ERROR(sqlite::ApplySync(read_db.get(), sync));
  return std::unique_ptr<UsageLedger>(new SqliteLedger(std::move(write_db), std::move(read_db)));
}

StatusOr<std::unique_ptr<UsageLedger>> UsageLedger::Open(const std::filesystem::path& path) {
  return OpenSqliteLedger(path, LedgerSync::kFull);
}

}  // namespace llmux
