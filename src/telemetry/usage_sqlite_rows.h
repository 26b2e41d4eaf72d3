// The SQLite `usage` table shared by the SQLite ledger and the PostgreSQL ledger's local spool:
// schema, insert and the row <-> statement mapping (telemetry only).
#pragma once

#include <sqlite3.h>

#include "llmux/usage_ledger.h"

namespace llmux::sqlite {

// Creates the `usage` table and its indexes when missing (idempotent).
extern const char* const kUsageSchema;
// Inserts one row from ?1..?15 (BindUsageRow's order).
extern const char* const kUsageInsert;
// The 15 columns ReadUsageRow expects, in its order (for SELECT lists).
extern const char* const kUsageColumns;

// Binds `r` to ?1..?15 of kUsageInsert (x_request_id NULL when empty).
void BindUsageRow(sqlite3_stmt* stmt, const UsageRecord& r);
// Reads the kUsageColumns starting at column `first`.
UsageRecord ReadUsageRow(sqlite3_stmt* stmt, int first);
// Sets the journal mode to WAL and `synchronous` to match `sync` on `db`.
Status ApplySync(sqlite3* db, LedgerSync sync);
// Migration: adds the nullable x_request_id column to a table created before it existed (a
// no-op when it is there).
Status AddUsageRequestIdColumn(sqlite3* db);

}  // namespace llmux::sqlite
