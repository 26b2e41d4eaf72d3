// Small RAII and error helpers over the SQLite C API (telemetry only).
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <string>

#include "llmux/status.h"

namespace llmux::sqlite {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Opens (creating) `path` with a 10 s busy timeout. Internal naming the file on failure.
StatusOr<Db> OpenDb(const std::filesystem::path& path);
// Runs one or more statements without results. Internal with SQLite's message on failure.
Status Exec(sqlite3* db, const char* sql);
Status Prepare(sqlite3* db, const char* sql, Stmt* out);
// Internal("WHAT: <sqlite message>").
Status Error(sqlite3* db, const std::string& what);
void BindText(sqlite3_stmt* stmt, int index, const std::string& text);
std::string ColumnText(sqlite3_stmt* stmt, int column);

}  // namespace llmux::sqlite
