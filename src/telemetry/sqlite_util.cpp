#include "telemetry/sqlite_util.h"

namespace llmux::sqlite {

StatusOr<Db> OpenDb(const std::filesystem::path& path) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return Internal("cannot open usage database " + path.string() + ": " +
                    (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db.get(), 10000);
  return db;
}

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = Internal(std::string("sqlite: ") + (err ? err : sqlite3_errmsg(db)));
    sqlite3_free(err);
    return s;
  }
  return Status::Ok();
}

Status Prepare(sqlite3* db, const char* sql, Stmt* out) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
    return Error(db, "prepare");
  }
  out->reset(raw);
  return Status::Ok();
}

Status Error(sqlite3* db, const std::string& what) {
  return Internal(what + ": " + sqlite3_errmsg(db));
}

void BindText(sqlite3_stmt* stmt, int index, const std::string& text) {
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

std::string ColumnText(sqlite3_stmt* stmt, int column) {
  const unsigned char* p = sqlite3_column_text(stmt, column);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(stmt, column)))
           : std::string();
}

}  // namespace llmux::sqlite
