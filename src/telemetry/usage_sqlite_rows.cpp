#include "telemetry/usage_sqlite_rows.h"

#include "telemetry/sqlite_util.h"

namespace llmux::sqlite {

const char* const kUsageSchema = R"sql(
CREATE TABLE IF NOT EXISTS usage (
  id INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  tenant TEXT NOT NULL,
  model TEXT NOT NULL,
  lane TEXT NOT NULL,
  pool TEXT NOT NULL,
  finished_unix_ms INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  queue_ms INTEGER NOT NULL,
  ttft_ms INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  cost_nano INTEGER NOT NULL,
  x_request_id TEXT,
  engine_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_tenant_time ON usage(tenant, finished_unix_ms);
CREATE INDEX IF NOT EXISTS usage_time ON usage(finished_unix_ms);
)sql";

const char* const kUsageInsert =
    "INSERT INTO usage (request_id, tenant, model, lane, pool, finished_unix_ms, prompt_tokens, "
    "cached_tokens, completion_tokens, queue_ms, ttft_ms, duration_ms, outcome, cost_nano, "
    "x_request_id, engine_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
    "?15, ?16)";

const char* const kUsageColumns =
    "request_id, tenant, model, lane, pool, finished_unix_ms, prompt_tokens, cached_tokens, "
    "completion_tokens, queue_ms, ttft_ms, duration_ms, outcome, cost_nano, x_request_id, "
    "engine_ms";

void BindUsageRow(sqlite3_stmt* stmt, const UsageRecord& r) {
  BindText(stmt, 1, r.request_id);
  BindText(stmt, 2, r.tenant);
  BindText(stmt, 3, r.model);
  BindText(stmt, 4, r.lane);
  BindText(stmt, 5, r.pool);
  const int64_t ints[] = {r.finished_unix_ms, r.prompt_tokens, r.cached_tokens, r.completion_tokens,
                          r.queue_ms,         r.ttft_ms,       r.duration_ms};
  for (int k = 0; k < 7; ++k) sqlite3_bind_int64(stmt, 6 + k, ints[k]);
  BindText(stmt, 13, r.outcome);
  sqlite3_bind_int64(stmt, 14, r.cost_nano);
  if (r.x_request_id.empty()) {
    sqlite3_bind_null(stmt, 15);
  } else {
    BindText(stmt, 15, r.x_request_id);
  }
  sqlite3_bind_int64(stmt, 16, r.engine_ms);
}

UsageRecord ReadUsageRow(sqlite3_stmt* s, int first) {
  UsageRecord r;
  r.request_id = ColumnText(s, first + 0);
  r.tenant = ColumnText(s, first + 1);
  r.model = ColumnText(s, first + 2);
  r.lane = ColumnText(s, first + 3);
  r.pool = ColumnText(s, first + 4);
  r.finished_unix_ms = sqlite3_column_int64(s, first + 5);
  r.prompt_tokens = sqlite3_column_int64(s, first + 6);
  r.cached_tokens = sqlite3_column_int64(s, first + 7);
  r.completion_tokens = sqlite3_column_int64(s, first + 8);
  r.queue_ms = sqlite3_column_int64(s, first + 9);
  r.ttft_ms = sqlite3_column_int64(s, first + 10);
  r.duration_ms = sqlite3_column_int64(s, first + 11);
  r.outcome = ColumnText(s, first + 12);
  r.cost_nano = sqlite3_column_int64(s, first + 13);
  if (sqlite3_column_type(s, first + 14) != SQLITE_NULL) r.x_request_id = ColumnText(s, first + 14);
  r.engine_ms = sqlite3_column_int64(s, first + 15);
  return r;
}

Status AddUsageRequestIdColumn(sqlite3* db) {
  Status s = Exec(db, "ALTER TABLE usage ADD COLUMN x_request_id TEXT");
  if (!s.ok() && s.message().find("duplicate column") == std::string::npos) return s;
  s = Exec(db, "ALTER TABLE usage ADD COLUMN engine_ms INTEGER NOT NULL DEFAULT 0");
  if (!s.ok() && s.message().find("duplicate column") != std::string::npos) return Status::Ok();
  return s;
}

StatusOr<Db> OpenUsageDb(const std::filesystem::path& path, LedgerSync sync) {
  LLMUX_ASSIGN_OR_RETURN(Db db, OpenDb(path));
  LLMUX_RETURN_IF_ERROR(ApplySync(db.get(), sync));
  LLMUX_RETURN_IF_ERROR(Exec(db.get(), kUsageSchema));
  LLMUX_RETURN_IF_ERROR(AddUsageRequestIdColumn(db.get()));
  return db;
}

Status InsertUsageRows(sqlite3* db, const std::vector<const UsageRecord*>& rows, const char* what) {
  LLMUX_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  Stmt stmt;
  Status s = Prepare(db, kUsageInsert, &stmt);
  for (size_t i = 0; s.ok() && i < rows.size(); ++i) {
    sqlite3_reset(stmt.get());
    BindUsageRow(stmt.get(), *rows[i]);
    if (sqlite3_step(stmt.get()) != SQLITE_DONE) s = Error(db, what);
  }
  stmt.reset();
  if (!s.ok()) {
    (void)Exec(db, "ROLLBACK");
    return s;
  }
  return Exec(db, "COMMIT");
}

Status ApplySync(sqlite3* db, LedgerSync sync) {
  LLMUX_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL"));
  switch (sync) {
    case LedgerSync::kFull:
      return Exec(db, "PRAGMA synchronous=FULL");
    case LedgerSync::kNormal:
      return Exec(db, "PRAGMA synchronous=NORMAL");
  }
  return Internal("unknown ledger_sync");
}

}  // namespace llmux::sqlite
