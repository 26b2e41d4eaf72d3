#include "telemetry/usage_spool.h"

#include <string>

#include "telemetry/usage_sqlite_rows.h"

namespace llmux {

StatusOr<std::unique_ptr<UsageSpool>> UsageSpool::Open(const std::filesystem::path& path,
                                                       LedgerSync sync) {
  LLMUX_ASSIGN_OR_RETURN(sqlite::Db db, sqlite::OpenUsageDb(path, sync));
  return std::unique_ptr<UsageSpool>(new UsageSpool(path, std::move(db)));
}

Status UsageSpool::Append(const std::vector<const UsageRecord*>& rows) {
  MutexLock lock(mutex_);
  return sqlite::InsertUsageRows(db_.get(), rows, "spool usage row");
}

StatusOr<std::vector<std::pair<int64_t, UsageRecord>>> UsageSpool::Oldest(int limit) {
  MutexLock lock(mutex_);
  sqlite3* db = db_.get();
  const std::string sql =
      std::string("SELECT id, ") + sqlite::kUsageColumns + " FROM usage ORDER BY id LIMIT ?1";
  sqlite::Stmt stmt;
  LLMUX_RETURN_IF_ERROR(sqlite::Prepare(db, sql.c_str(), &stmt));
  sqlite3_bind_int(stmt.get(), 1, limit);
  std::vector<std::pair<int64_t, UsageRecord>> out;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    out.emplace_back(sqlite3_column_int64(stmt.get(), 0), sqlite::ReadUsageRow(stmt.get(), 1));
  }
  if (rc != SQLITE_DONE) return sqlite::Error(db, "read spool");
  return out;
}

StatusOr<int64_t> UsageSpool::DeleteThrough(int64_t last_id) {
  MutexLock lock(mutex_);
  sqlite3* db = db_.get();
  sqlite::Stmt stmt;
  LLMUX_RETURN_IF_ERROR(sqlite::Prepare(db, "DELETE FROM usage WHERE id <= ?1", &stmt));
  sqlite3_bind_int64(stmt.get(), 1, last_id);
  if (sqlite3_step(stmt.get()) != SQLITE_DONE) return sqlite::Error(db, "delete spooled rows");
  return static_cast<int64_t>(sqlite3_changes(db));
}

StatusOr<int64_t> UsageSpool::Count() {
  MutexLock lock(mutex_);
  sqlite3* db = db_.get();
  sqlite::Stmt stmt;
  LLMUX_RETURN_IF_ERROR(sqlite::Prepare(db, "SELECT COUNT(*) FROM usage", &stmt));
  if (sqlite3_step(stmt.get()) != SQLITE_ROW) return sqlite::Error(db, "count spool");
  return static_cast<int64_t>(sqlite3_column_int64(stmt.get(), 0));
}

}  // namespace llmux
