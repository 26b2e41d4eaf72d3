// libpqxx throws; every public method here catches at its edge and returns a Status:
// connection-level failures (lost connection, uncertain commit, statement timeout, server
// shutting down) map to Unavailable, anything else to Internal.
#include "telemetry/pg_store.h"

#include "telemetry/capacity_rows.h"

#include <libpq-fe.h>

#include <pqxx/pqxx>

namespace llmux {
namespace {

// Serializes schema migrations of concurrently starting replicas (pg_advisory_xact_lock key).
constexpr int64_t kMigrationLockKey = 0x6c6d7578;  // "lmux"

// Migration N brings the schema from version N-1 to N. Append only; never edit a shipped one.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE IF NOT EXISTS llmux_usage (
  id BIGSERIAL PRIMARY KEY,
  request_id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL,
  model TEXT NOT NULL,
  lane TEXT NOT NULL,
  pool TEXT NOT NULL,
  finished_unix_ms BIGINT NOT NULL,
  prompt_tokens BIGINT NOT NULL,
  cached_tokens BIGINT NOT NULL,
  completion_tokens BIGINT NOT NULL,
  queue_ms BIGINT NOT NULL,
  ttft_ms BIGINT NOT NULL,
  duration_ms BIGINT NOT NULL,
  outcome TEXT NOT NULL,
  cost_nano BIGINT NOT NULL,
  inserted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS llmux_usage_tenant_time ON llmux_usage (tenant, finished_unix_ms);
CREATE INDEX IF NOT EXISTS llmux_usage_time ON llmux_usage (finished_unix_ms);
)sql",
    // 2: the client's X-Request-Id (nullable).
    "ALTER TABLE llmux_usage ADD COLUMN IF NOT EXISTS x_request_id TEXT",
    // 3: capacity rows, one per tenant and UTC hour (docs/billing.md, "Capacity charges").
    R"sql(
CREATE TABLE IF NOT EXISTS llmux_capacity (
  tenant TEXT NOT NULL,
  hour_start_ms BIGINT NOT NULL,
  pool TEXT NOT NULL,
  reserved_kv_tokens BIGINT NOT NULL,
  reserved_seqs BIGINT NOT NULL,
  dedicated BOOLEAN NOT NULL,
  held_ms BIGINT NOT NULL,
  covered_until_ms BIGINT NOT NULL,
  amount_quot BIGINT NOT NULL,
  amount_rem BIGINT NOT NULL,
  cost_nano BIGINT NOT NULL,
  PRIMARY KEY (tenant, hour_start_ms)
);
CREATE INDEX IF NOT EXISTS llmux_capacity_time ON llmux_capacity (hour_start_ms);
)sql",
    // 4: the engine time attributed to the call.
    "ALTER TABLE llmux_usage ADD COLUMN IF NOT EXISTS engine_ms BIGINT NOT NULL DEFAULT 0",
};

constexpr const char* kColumns =
    "request_id, tenant, model, lane, pool, finished_unix_ms, prompt_tokens, cached_tokens, "
    "completion_tokens, queue_ms, ttft_ms, duration_ms, outcome, cost_nano, x_request_id, "
    "engine_ms";

std::string WithDefaults(const std::string& url, int connect_timeout_s) {
  std::string out = url;
  auto add = [&out](const char* key, const std::string& value) {
    if (out.find(std::string(key) + "=") != std::string::npos) return;
    out += out.find('?') == std::string::npos ? '?' : '&';
    out += std::string(key) + "=" + value;
  };
  add("connect_timeout", std::to_string(connect_timeout_s));
  // NOTE: without it a query to a host that vanished (no RST) waits for TCP's own timeout,
  // minutes; statement_timeout is enforced by the server and cannot help then.
  add("tcp_user_timeout", std::to_string(connect_timeout_s * 1000));
  add("application_name", "llmuxd");
  return out;
}

bool IsConnectionState(const std::string& sqlstate) {
  // 08: connection exception; 57: operator intervention (57014 statement timeout, 57P01
  // admin shutdown, 57P03 cannot connect now); 53: insufficient resources.
  return sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57", 0) == 0 ||
         sqlstate.rfind("53", 0) == 0;
}

std::string OneLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

// Appends `value` as a string literal. NOTE: not `t.quote()`, whose inlined concatenation trips
// GCC 12's -Wrestrict false positive; esc() is the same escaping (standard_conforming_strings).
void AppendQuoted(pqxx::transaction_base& t, const std::string& value, std::string* out) {
  out->push_back('\'');
  out->append(t.esc(value));
  out->push_back('\'');
}

}  // namespace

struct PgStore::Impl {
  std::unique_ptr<pqxx::connection> conn;
  bool broken = false;

  // Runs `body`, converting libpqxx exceptions to a Status prefixed with `what`.
  template <typename F>
  Status Guard(const char* what, F&& body) {
    try {
      body();
      return Status::Ok();
    } catch (const pqxx::broken_connection& e) {
      broken = true;
      return Unavailable(std::string("usage store (PostgreSQL) unreachable: ") + what + ": " +
                         OneLine(e.what()));
    } catch (const pqxx::in_doubt_error& e) {
      broken = true;
      return Unavailable(std::string("usage store (PostgreSQL) commit uncertain: ") + what + ": " +
                         OneLine(e.what()));
    } catch (const pqxx::sql_error& e) {
      if (!conn->is_open()) broken = true;
      if (IsConnectionState(e.sqlstate()) || broken) {
        broken = true;  // a timed-out or shut-down session is not reused
        return Unavailable(std::string("usage store (PostgreSQL) unavailable: ") + what + ": " +
                           OneLine(e.what()));
      }
      return Internal(std::string("usage store (PostgreSQL): ") + what + ": " + OneLine(e.what()));
    } catch (const std::exception& e) {
      if (!conn->is_open()) broken = true;
      return (broken ? Unavailable : Internal)(std::string("usage store (PostgreSQL): ") + what +
                                               ": " + OneLine(e.what()));
    }
  }
};

PgStore::PgStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PgStore::~PgStore() = default;

bool PgStore::usable() const { return !impl_->broken && impl_->conn && impl_->conn->is_open(); }

StatusOr<std::unique_ptr<PgStore>> PgStore::Connect(const std::string& url, LedgerSync sync,
                                                    int statement_timeout_ms,
                                                    int connect_timeout_s) {
  // A malformed URI is the operator's mistake, not an outage: say so instead of retrying.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &parse_error);
  if (parsed == nullptr) {
    const std::string why = parse_error ? OneLine(parse_error) : "cannot parse";
    if (parse_error) PQfreemem(parse_error);
    return InvalidArgument("telemetry.usage_db " + RedactUrl(url) + ": " + why);
  }
  PQconninfoFree(parsed);
  auto impl = std::make_unique<Impl>();
  try {
    impl->conn = std::make_unique<pqxx::connection>(WithDefaults(url, connect_timeout_s));
  } catch (const pqxx::broken_connection& e) {
    return Unavailable("usage store (PostgreSQL) unreachable at " + RedactUrl(url) + ": " +
                       OneLine(e.what()));
  } catch (const std::exception& e) {
    return InvalidArgument("telemetry.usage_db " + RedactUrl(url) + ": " + OneLine(e.what()));
  }
  Impl* raw = impl.get();
  Status s = raw->Guard("session settings", [&] {
    pqxx::nontransaction n(*raw->conn);
    n.exec("SET statement_timeout = " + std::to_string(statement_timeout_ms));
    n.exec(std::string("SET synchronous_commit = ") + (sync == LedgerSync::kFull ? "on" : "off"));
  });
  if (!s.ok()) return s;
  return std::unique_ptr<PgStore>(new PgStore(std::move(impl)));
}

Status PgStore::Migrate() {
  return impl_->Guard("schema migration", [&] {
    pqxx::work w(*impl_->conn);
    w.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockKey) + ")");
    w.exec("CREATE TABLE IF NOT EXISTS llmux_schema_version (version INTEGER NOT NULL)");
    const pqxx::result r = w.exec("SELECT COALESCE(MAX(version), 0) FROM llmux_schema_version");
    const int current = r[0][0].as<int>();
    const int latest = static_cast<int>(std::size(kMigrations));
    for (int v = current + 1; v <= latest; ++v) {
      w.exec(kMigrations[v - 1]);
      w.exec("INSERT INTO llmux_schema_version (version) VALUES (" + std::to_string(v) + ")");
    }
    w.commit();
  });
}

Status PgStore::Insert(const std::vector<const UsageRecord*>& rows) {
  if (rows.empty()) return Status::Ok();
  return impl_->Guard("insert usage rows", [&] {
    pqxx::work w(*impl_->conn);
    // One statement for the whole batch: one round trip however many rows are grouped.
    std::string sql = std::string("INSERT INTO llmux_usage (") + kColumns + ") VALUES ";
    for (size_t i = 0; i < rows.size(); ++i) {
      const UsageRecord& r = *rows[i];
      if (i > 0) sql += ',';
      sql += '(';
      for (const std::string* t : {&r.request_id, &r.tenant, &r.model, &r.lane, &r.pool}) {
        AppendQuoted(w, *t, &sql);
        sql += ',';
      }
      for (int64_t v : {r.finished_unix_ms, r.prompt_tokens, r.cached_tokens, r.completion_tokens,
                        r.queue_ms, r.ttft_ms, r.duration_ms}) {
        sql += std::to_string(v);
        sql += ',';
      }
      AppendQuoted(w, r.outcome, &sql);
      sql += ',';
      sql += std::to_string(r.cost_nano);
      sql += ',';
      if (r.x_request_id.empty()) {
        sql += "NULL";
      } else {
        AppendQuoted(w, r.x_request_id, &sql);
      }
      sql += ',';
      sql += std::to_string(r.engine_ms);
      sql += ')';
    }
    sql += " ON CONFLICT (request_id) DO NOTHING";
    w.exec(sql);
    w.commit();
  });
}

namespace {

std::string Filter(pqxx::transaction_base& t, const UsageQuery& q) {
  std::string f = "finished_unix_ms >= " + std::to_string(q.start_ms) + " AND finished_unix_ms < " +
                  std::to_string(q.end_ms);
  if (q.tenant) {
    f += " AND tenant = ";
    AppendQuoted(t, *q.tenant, &f);
  }
  return f;
}

std::string CapacityFilter(pqxx::transaction_base& t, const UsageQuery& q) {
  std::string f = "hour_start_ms >= " + std::to_string(q.start_ms) + " AND hour_start_ms < " +
                  std::to_string(q.end_ms);
  if (q.tenant) {
    f += " AND tenant = ";
    AppendQuoted(t, *q.tenant, &f);
  }
  return f;
}

constexpr const char* kCapacityColumns =
    "tenant, hour_start_ms, pool, reserved_kv_tokens, reserved_seqs, dedicated, held_ms, "
    "cost_nano";

CapacityRecord ReadCapacityRow(const pqxx::row& row) {
  CapacityRecord r;
  r.tenant = row[0].c_str();
  r.hour_start_ms = row[1].as<int64_t>();
  r.pool = row[2].c_str();
  r.reserved_kv_tokens = row[3].as<int64_t>();
  r.reserved_seqs = row[4].as<int64_t>();
  r.dedicated = row[5].as<bool>();
  r.held_ms = row[6].as<int64_t>();
  r.cost_nano = row[7].as<int64_t>();
  return r;
}

}  // namespace

StatusOr<std::vector<CapacityCharge>> PgStore::AccrueCapacity(
    const std::vector<CapacityAccrual>& accruals) {
  std::vector<CapacityCharge> charges;
  if (accruals.empty()) return charges;
  Status s = impl_->Guard("accrue capacity", [&] {
    charges.clear();
    pqxx::work w(*impl_->conn);
    for (const CapacityAccrual& a : accruals) {
      const int64_t hour = a.from_ms - a.from_ms % kMsPerHour;
      std::string key;
      AppendQuoted(w, a.tenant, &key);
      key += ", " + std::to_string(hour);
      // NOTE: the empty row first, then FOR UPDATE: replicas accruing the same tenant and hour
      // take turns on the row lock, and each adds only what the other has not covered.
      w.exec("INSERT INTO llmux_capacity (tenant, hour_start_ms, pool, reserved_kv_tokens, "
             "reserved_seqs, dedicated, held_ms, covered_until_ms, amount_quot, amount_rem, "
             "cost_nano) VALUES (" + key + ", '', 0, 0, false, 0, " + std::to_string(hour) +
             ", 0, 0, 0) ON CONFLICT (tenant, hour_start_ms) DO NOTHING");
      const pqxx::result r =
          w.exec(std::string("SELECT ") + kCapacityColumns +
                 ", covered_until_ms, amount_quot, amount_rem FROM llmux_capacity WHERE "
                 "(tenant, hour_start_ms) = (" + key + ") FOR UPDATE");
      CapacityRowState row;
      row.exists = true;
      row.record = ReadCapacityRow(r[0]);
      row.covered_until_ms = r[0][8].as<int64_t>();
      row.amount.quot = r[0][9].as<int64_t>();
      row.amount.rem = r[0][10].as<int64_t>();
      const int64_t held_before = row.record.held_ms;
      const int64_t added = ApplyCapacityAccrual(a, &row);
      if (row.record.held_ms == held_before) continue;
      const CapacityRecord& c = row.record;
      std::string sql = "UPDATE llmux_capacity SET pool = ";
      AppendQuoted(w, c.pool, &sql);
      sql += ", reserved_kv_tokens = " + std::to_string(c.reserved_kv_tokens) +
             ", reserved_seqs = " + std::to_string(c.reserved_seqs) +
             ", dedicated = " + (c.dedicated ? "true" : "false") +
             ", held_ms = " + std::to_string(c.held_ms) +
             ", covered_until_ms = " + std::to_string(row.covered_until_ms) +
             ", amount_quot = " + std::to_string(row.amount.quot) +
             ", amount_rem = " + std::to_string(row.amount.rem) +
             ", cost_nano = " + std::to_string(c.cost_nano) +
             " WHERE (tenant, hour_start_ms) = (" + key + ")";
      w.exec(sql);
      if (added != 0) charges.push_back(CapacityCharge{c.tenant, hour, added});
    }
    w.commit();
  });
  if (!s.ok()) return s;
  return charges;
}

StatusOr<std::vector<CapacityRecord>> PgStore::CapacityRecords(const UsageQuery& q) {
  std::vector<CapacityRecord> out;
  Status s = impl_->Guard("read capacity rows", [&] {
    pqxx::read_transaction t(*impl_->conn);
    const pqxx::result r =
        t.exec(std::string("SELECT ") + kCapacityColumns + " FROM llmux_capacity WHERE " +
               CapacityFilter(t, q) + " AND held_ms > 0 ORDER BY hour_start_ms, tenant COLLATE \"C\"");
    for (const pqxx::row& row : r) out.push_back(ReadCapacityRow(row));
  });
  if (!s.ok()) return s;
  return out;
}

StatusOr<std::vector<TenantUsage>> PgStore::Summarize(const UsageQuery& q) {
  std::vector<TenantUsage> out;
  Status s = impl_->Guard("summarize usage", [&] {
    pqxx::read_transaction t(*impl_->conn);
    // NOTE: COLLATE "C" orders tenants bytewise, as the SQLite ledger does, whatever the
    // database's locale. SUM(bigint) is numeric in PostgreSQL, hence the casts.
    const pqxx::result r = t.exec(
        "SELECT tenant, finished_unix_ms / 86400000 AS day, COUNT(*), SUM(prompt_tokens)::bigint, "
        "SUM(cached_tokens)::bigint, SUM(completion_tokens)::bigint, SUM(cost_nano)::bigint "
        "FROM llmux_usage WHERE " +
        Filter(t, q) + " GROUP BY tenant, day ORDER BY tenant COLLATE \"C\", day");
    for (const pqxx::row& row : r) {
      DailyUsage d;
      d.date = FormatDate(row[1].as<int64_t>() * 86400000);
      d.totals.requests = row[2].as<int64_t>();
      d.totals.prompt_tokens = row[3].as<int64_t>();
      d.totals.cached_tokens = row[4].as<int64_t>();
      d.totals.completion_tokens = row[5].as<int64_t>();
      d.totals.cost_nano = row[6].as<int64_t>();
      AppendUsageDay(&out, row[0].c_str(), std::move(d));
    }
    const pqxx::result c = t.exec(
        "SELECT tenant, hour_start_ms / 86400000 AS day, SUM(cost_nano)::bigint FROM "
        "llmux_capacity WHERE " +
        CapacityFilter(t, q) + " AND held_ms > 0 GROUP BY tenant, day");
    for (const pqxx::row& row : c) {
      MergeCapacityDay(&out, row[0].c_str(), row[1].as<int64_t>() * 86400000,
                       row[2].as<int64_t>());
    }
  });
  if (!s.ok()) return s;
  return out;
}

StatusOr<std::vector<UsageRecord>> PgStore::Records(const UsageQuery& q) {
  std::vector<UsageRecord> out;
  Status s = impl_->Guard("read usage rows", [&] {
    pqxx::read_transaction t(*impl_->conn);
    const pqxx::result r = t.exec(std::string("SELECT ") + kColumns + " FROM llmux_usage WHERE " +
                                  Filter(t, q) + " ORDER BY finished_unix_ms, id");
    out.reserve(r.size());
    for (const pqxx::row& row : r) {
      UsageRecord u;
      u.request_id = row[0].c_str();
      u.tenant = row[1].c_str();
      u.model = row[2].c_str();
      u.lane = row[3].c_str();
      u.pool = row[4].c_str();
      u.finished_unix_ms = row[5].as<int64_t>();
      u.prompt_tokens = row[6].as<int64_t>();
      u.cached_tokens = row[7].as<int64_t>();
      u.completion_tokens = row[8].as<int64_t>();
      u.queue_ms = row[9].as<int64_t>();
      u.ttft_ms = row[10].as<int64_t>();
      u.duration_ms = row[11].as<int64_t>();
      u.outcome = row[12].c_str();
      u.cost_nano = row[13].as<int64_t>();
      if (!row[14].is_null()) u.x_request_id = row[14].c_str();
      u.engine_ms = row[15].as<int64_t>();
      out.push_back(std::move(u));
    }
  });
  if (!s.ok()) return s;
  return out;
}

StatusOr<int64_t> PgStore::Prune(int64_t before_ms) {
  int64_t n = 0;
  Status s = impl_->Guard("prune usage", [&] {
    pqxx::work w(*impl_->conn);
    const pqxx::result r =
        w.exec("DELETE FROM llmux_usage WHERE finished_unix_ms < " + std::to_string(before_ms));
    n = static_cast<int64_t>(r.affected_rows());
    w.exec("DELETE FROM llmux_capacity WHERE hour_start_ms < " + std::to_string(before_ms));
    w.commit();
  });
  if (!s.ok()) return s;
  return n;
}

StatusOr<std::string> PgStore::Show(const std::string& setting) {
  std::string value;
  Status s = impl_->Guard("show setting", [&] {
    pqxx::nontransaction n(*impl_->conn);
    const pqxx::result r = n.exec("SHOW " + n.quote_name(setting));
    value = r[0][0].c_str();
  });
  if (!s.ok()) return s;
  return value;
}

std::string RedactUrl(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const size_t start = scheme + 3;
  const size_t end = url.find_first_of("/?", start);
  const size_t at = url.rfind('@', end == std::string_view::npos ? url.size() : end);
  if (at == std::string_view::npos || at < start) return std::string(url);
  const size_t colon = url.find(':', start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

}  // namespace llmux
