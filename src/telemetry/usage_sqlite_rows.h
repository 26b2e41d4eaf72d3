// The SQLite `usage` table shared by the SQLite ledger and the PostgreSQL ledger's local spool:
// schema, insert and the row <-> statement mapping (telemetry only).
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <vector>

#include "llmux/usage_ledger.h"
#include "telemetry/sqlite_util.h"

namespace llmux::sqlite {

// Creates the `usage` table and its indexes when missing (idempotent).
extern const char* const kUsageSchema;
// Inserts one row from ?1..?16 (BindUsageRow's order).
extern const char* const kUsageInsert;
// The 16 columns ReadUsageRow expects, in its order (for SELECT lists).
extern const char* const kUsageColumns;

// Binds `r` to ?1..?16 of kUsageInsert (x_request_id NULL when empty).
void BindUsageRow(sqlite3_stmt* stmt, const UsageRecord& r);
// Reads the kUsageColumns starting at column `first`.
UsageRecord ReadUsageRow(sqlite3_stmt* stmt, int first);
// Sets the journal mode to WAL and `synchronous` to match `sync` on `db`.
Status ApplySync(sqlite3* db, LedgerSync sync);
// Migrations: adds the nullable x_request_id column and the engine_ms column (default 0) to a
// table created before they existed (a no-op for a column that is there).
Status AddUsageRequestIdColumn(sqlite3* db);
// Opens (creating when missing) `path` with `sync` (ApplySync) and the `usage` table at its
// current schema (kUsageSchema, then the migrations). Internal naming the file or the step.
StatusOr<Db> OpenUsageDb(const std::filesystem::path& path, LedgerSync sync);
// Inserts `rows` in one transaction; on failure rolls it back and returns
// Internal("WHAT: <sqlite message>"). Durable per the connection's `synchronous` once OK.
Status InsertUsageRows(sqlite3* db, const std::vector<const UsageRecord*>& rows, const char* what);

}  // namespace llmux::sqlite
