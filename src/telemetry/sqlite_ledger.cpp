// SQLite usage ledger: WAL, synchronous=FULL or NORMAL (ledger_sync), rows written through a
// GroupCommitQueue (one writer thread, group commits).
//
// Thread ownership: `write_db_` belongs to the queue's writer thread (and to Close after it
// joined); `read_db_` is shared by query callers under `read_mutex_`. SQLite's own locking
// (with a busy timeout) orders the writer's transactions against Prune on the read connection.
#include "llmux/thread_annotations.h"
#include "telemetry/sqlite_ledger.h"

#include <sqlite3.h>

#include "telemetry/capacity_rows.h"
#include "telemetry/group_commit_queue.h"
#include "telemetry/sqlite_util.h"
#include "telemetry/usage_sqlite_rows.h"

namespace llmux {
namespace {

class SqliteLedger final : public UsageLedger {
 public:
  SqliteLedger(sqlite::Db write_db, sqlite::Db read_db)
      : write_db_(std::move(write_db)),
        read_db_(std::move(read_db)),
        queue_([this](const std::vector<const UsageRecord*>& rows) {
          return sqlite::InsertUsageRows(write_db_.get(), rows, "insert usage row");
        }) {}
  ~SqliteLedger() override { Close(); }

  void Append(UsageRecord record, OnCommitted on_committed) override {
    queue_.Append(std::move(record), std::move(on_committed));
  }
  Status AppendSync(UsageRecord record) override { return queue_.AppendSync(std::move(record)); }

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

  void Close() override { queue_.Close(); }

 private:
  sqlite::Db write_db_;  // the queue's writer thread only
  Mutex read_mutex_;
  sqlite::Db read_db_ GUARDED_BY(read_mutex_);
  // Last: its writer thread uses `write_db_`, so it starts after the members above and stops
  // before they go.
  GroupCommitQueue queue_;
};

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
    DailyUsage d;
    d.date = FormatDate(sqlite3_column_int64(stmt.get(), 1) * 86400000);
    d.totals.requests = sqlite3_column_int64(stmt.get(), 2);
    d.totals.prompt_tokens = sqlite3_column_int64(stmt.get(), 3);
    d.totals.cached_tokens = sqlite3_column_int64(stmt.get(), 4);
    d.totals.completion_tokens = sqlite3_column_int64(stmt.get(), 5);
    d.totals.cost_nano = sqlite3_column_int64(stmt.get(), 6);
    AppendUsageDay(&out, sqlite::ColumnText(stmt.get(), 0), std::move(d));
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
  LLMUX_ASSIGN_OR_RETURN(sqlite::Db write_db, sqlite::OpenUsageDb(path, sync));
  LLMUX_RETURN_IF_ERROR(sqlite::Exec(write_db.get(), sqlite::kCapacitySchema));
  LLMUX_ASSIGN_OR_RETURN(sqlite::Db read_db, sqlite::OpenDb(path));
  LLMUX_RETURN_IF_ERROR(sqlite::ApplySync(read_db.get(), sync));
  return std::unique_ptr<UsageLedger>(new SqliteLedger(std::move(write_db), std::move(read_db)));
}

StatusOr<std::unique_ptr<UsageLedger>> UsageLedger::Open(const std::filesystem::path& path) {
  return OpenSqliteLedger(path, LedgerSync::kFull);
}

}  // namespace llmux
