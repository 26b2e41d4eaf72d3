#include "telemetry/capacity_rows.h"

#include <algorithm>
#include <utility>

#include "telemetry/sqlite_util.h"

namespace llmux {

int64_t ApplyCapacityAccrual(const CapacityAccrual& a, CapacityRowState* row) {
  const int64_t hour = row->record.hour_start_ms;
  const int64_t from = std::max({a.from_ms, hour, row->exists ? row->covered_until_ms : hour});
  const int64_t to = std::min(a.to_ms, hour + kMsPerHour);
  if (to <= from) return 0;
  const int64_t before = row->amount.CostNano();
  row->amount.Add(a.hold.MilliNanoPerHour(), to - from);
  row->covered_until_ms = to;
  row->exists = true;
  CapacityRecord& r = row->record;
  r.tenant = a.tenant;
  r.pool = a.hold.pool;
  r.reserved_kv_tokens = a.hold.reserved_kv_tokens;
  r.reserved_seqs = a.hold.reserved_seqs;
  r.dedicated = a.hold.dedicated;
  r.held_ms += to - from;
  r.cost_nano = row->amount.CostNano();
  return r.cost_nano - before;
}

void AppendUsageDay(std::vector<TenantUsage>* usage, const std::string& tenant, DailyUsage day) {
  if (usage->empty() || usage->back().tenant != tenant) {
    usage->push_back(TenantUsage{tenant, {}, {}});
  }
  UsageTotals& t = usage->back().totals;
  t.requests += day.totals.requests;
  t.prompt_tokens += day.totals.prompt_tokens;
  t.cached_tokens += day.totals.cached_tokens;
  t.completion_tokens += day.totals.completion_tokens;
  t.cost_nano += day.totals.cost_nano;
  usage->back().daily.push_back(std::move(day));
}

void MergeCapacityDay(std::vector<TenantUsage>* usage, const std::string& tenant,
                      int64_t day_start_ms, int64_t cost_nano) {
  auto t = std::lower_bound(usage->begin(), usage->end(), tenant,
                            [](const TenantUsage& u, const std::string& name) {
                              return u.tenant < name;
                            });
  if (t == usage->end() || t->tenant != tenant) t = usage->insert(t, TenantUsage{tenant, {}, {}});
  const std::string date = FormatDate(day_start_ms);
  auto d = std::lower_bound(t->daily.begin(), t->daily.end(), date,
                            [](const DailyUsage& u, const std::string& day) {
                              return u.date < day;
                            });
  if (d == t->daily.end() || d->date != date) d = t->daily.insert(d, DailyUsage{date, {}});
  d->totals.capacity_cost_nano += cost_nano;
  t->totals.capacity_cost_nano += cost_nano;
}

namespace sqlite {

const char* const kCapacitySchema = R"sql(
CREATE TABLE IF NOT EXISTS capacity (
  tenant TEXT NOT NULL,
  hour_start_ms INTEGER NOT NULL,
  pool TEXT NOT NULL,
  reserved_kv_tokens INTEGER NOT NULL,
  reserved_seqs INTEGER NOT NULL,
  dedicated INTEGER NOT NULL,
  held_ms INTEGER NOT NULL,
  covered_until_ms INTEGER NOT NULL,
  amount_quot INTEGER NOT NULL,
  amount_rem INTEGER NOT NULL,
  cost_nano INTEGER NOT NULL,
  PRIMARY KEY (tenant, hour_start_ms)
);
CREATE INDEX IF NOT EXISTS capacity_time ON capacity(hour_start_ms);
)sql";

namespace {

constexpr const char* kCapacityColumns =
    "tenant, hour_start_ms, pool, reserved_kv_tokens, reserved_seqs, dedicated, held_ms, "
    "cost_nano";

CapacityRecord ReadRecord(sqlite3_stmt* s) {
  CapacityRecord r;
  r.tenant = ColumnText(s, 0);
  r.hour_start_ms = sqlite3_column_int64(s, 1);
  r.pool = ColumnText(s, 2);
  r.reserved_kv_tokens = sqlite3_column_int64(s, 3);
  r.reserved_seqs = sqlite3_column_int64(s, 4);
  r.dedicated = sqlite3_column_int64(s, 5) != 0;
  r.held_ms = sqlite3_column_int64(s, 6);
  r.cost_nano = sqlite3_column_int64(s, 7);
  return r;
}

Status AccrueAll(sqlite3* db, const std::vector<CapacityAccrual>& accruals,
                 std::vector<CapacityCharge>* charges) {
  Stmt select, upsert;
  LLMUX_RETURN_IF_ERROR(Prepare(
      db,
      (std::string("SELECT ") + kCapacityColumns +
       ", covered_until_ms, amount_quot, amount_rem FROM capacity WHERE tenant = ?1 AND "
       "hour_start_ms = ?2")
          .c_str(),
      &select));
  LLMUX_RETURN_IF_ERROR(Prepare(
      db,
      "INSERT OR REPLACE INTO capacity (tenant, hour_start_ms, pool, reserved_kv_tokens, "
      "reserved_seqs, dedicated, held_ms, covered_until_ms, amount_quot, amount_rem, cost_nano) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
      &upsert));
  for (const CapacityAccrual& a : accruals) {
    CapacityRowState row;
    row.record.hour_start_ms = a.from_ms - a.from_ms % kMsPerHour;
    sqlite3_reset(select.get());
    BindText(select.get(), 1, a.tenant);
    sqlite3_bind_int64(select.get(), 2, row.record.hour_start_ms);
    const int rc = sqlite3_step(select.get());
    if (rc == SQLITE_ROW) {
      row.exists = true;
      row.record = ReadRecord(select.get());
      row.covered_until_ms = sqlite3_column_int64(select.get(), 8);
      row.amount.quot = sqlite3_column_int64(select.get(), 9);
      row.amount.rem = sqlite3_column_int64(select.get(), 10);
    } else if (rc != SQLITE_DONE) {
      return Error(db, "read capacity row");
    }
    const int64_t before_held = row.record.held_ms;
    const int64_t added = ApplyCapacityAccrual(a, &row);
    if (row.record.held_ms == before_held) continue;  // nothing new for this row
    const CapacityRecord& r = row.record;
    sqlite3_stmt* u = upsert.get();
    sqlite3_reset(u);
    BindText(u, 1, r.tenant);
    sqlite3_bind_int64(u, 2, r.hour_start_ms);
    BindText(u, 3, r.pool);
    sqlite3_bind_int64(u, 4, r.reserved_kv_tokens);
    sqlite3_bind_int64(u, 5, r.reserved_seqs);
    sqlite3_bind_int64(u, 6, r.dedicated ? 1 : 0);
    sqlite3_bind_int64(u, 7, r.held_ms);
    sqlite3_bind_int64(u, 8, row.covered_until_ms);
    sqlite3_bind_int64(u, 9, row.amount.quot);
    sqlite3_bind_int64(u, 10, row.amount.rem);
    sqlite3_bind_int64(u, 11, r.cost_nano);
    if (sqlite3_step(upsert.get()) != SQLITE_DONE) return Error(db, "write capacity row");
    if (added != 0) charges->push_back(CapacityCharge{r.tenant, r.hour_start_ms, added});
  }
  return Status::Ok();
}

const char* Filter(const UsageQuery& q) {
  return q.tenant ? "tenant = ?1 AND hour_start_ms >= ?2 AND hour_start_ms < ?3"
                  : "?1 IS NULL AND hour_start_ms >= ?2 AND hour_start_ms < ?3";
}

void Bind(sqlite3_stmt* stmt, const UsageQuery& q) {
  if (q.tenant) {
    BindText(stmt, 1, *q.tenant);
  } else {
    sqlite3_bind_null(stmt, 1);
  }
  sqlite3_bind_int64(stmt, 2, q.start_ms);
  sqlite3_bind_int64(stmt, 3, q.end_ms);
}

}  // namespace

StatusOr<std::vector<CapacityCharge>> AccrueCapacity(
    sqlite3* db, const std::vector<CapacityAccrual>& accruals) {
  std::vector<CapacityCharge> charges;
  if (accruals.empty()) return charges;
  LLMUX_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  Status s = AccrueAll(db, accruals, &charges);
  if (!s.ok()) {
    (void)Exec(db, "ROLLBACK");
    return s;
  }
  LLMUX_RETURN_IF_ERROR(Exec(db, "COMMIT"));
  return charges;
}

StatusOr<std::vector<CapacityRecord>> ReadCapacity(sqlite3* db, const UsageQuery& q) {
  const std::string sql = std::string("SELECT ") + kCapacityColumns + " FROM capacity WHERE " +
                          Filter(q) + " ORDER BY hour_start_ms, tenant";
  Stmt stmt;
  LLMUX_RETURN_IF_ERROR(Prepare(db, sql.c_str(), &stmt));
  Bind(stmt.get(), q);
  std::vector<CapacityRecord> out;
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) out.push_back(ReadRecord(stmt.get()));
  if (rc != SQLITE_DONE) return Error(db, "read capacity rows");
  return out;
}

Status SummarizeCapacity(sqlite3* db, const UsageQuery& q, std::vector<TenantUsage>* usage) {
  const std::string sql = std::string(
                              "SELECT tenant, hour_start_ms / 86400000 AS day, SUM(cost_nano) "
                              "FROM capacity WHERE ") +
                          Filter(q) + " GROUP BY tenant, day ORDER BY tenant, day";
  Stmt stmt;
  LLMUX_RETURN_IF_ERROR(Prepare(db, sql.c_str(), &stmt));
  Bind(stmt.get(), q);
  int rc;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    MergeCapacityDay(usage, ColumnText(stmt.get(), 0), sqlite3_column_int64(stmt.get(), 1) * 86400000,
                     sqlite3_column_int64(stmt.get(), 2));
  }
  if (rc != SQLITE_DONE) return Error(db, "summarize capacity");
  return Status::Ok();
}

Status PruneCapacity(sqlite3* db, int64_t before_ms) {
  Stmt stmt;
  LLMUX_RETURN_IF_ERROR(Prepare(db, "DELETE FROM capacity WHERE hour_start_ms < ?1", &stmt));
  sqlite3_bind_int64(stmt.get(), 1, before_ms);
  if (sqlite3_step(stmt.get()) != SQLITE_DONE) return Error(db, "prune capacity");
  return Status::Ok();
}

}  // namespace sqlite
}  // namespace llmux
