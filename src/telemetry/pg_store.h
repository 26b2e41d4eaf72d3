// One connection to the PostgreSQL usage ledger (table llmux_usage): schema migrations, batch
// inserts idempotent by request id, and the ledger's queries. Not thread-safe: each thread of
// the PostgreSQL ledger owns its own PgStore. No libpqxx types here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/usage_ledger.h"

namespace llmux {

class PgStore {
 public:
  // Connects to `url` (a libpq URI; connect_timeout, tcp_user_timeout and application_name are
  // added unless it sets them), then sets statement_timeout and synchronous_commit (on for
  // kFull, off for kNormal). Unavailable when the server cannot be reached; InvalidArgument
  // for a malformed URI. Messages never carry the password.
  static StatusOr<std::unique_ptr<PgStore>> Connect(const std::string& url, LedgerSync sync,
                                                    int statement_timeout_ms,
                                                    int connect_timeout_s);
  ~PgStore();
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  // Creates or upgrades the schema to the latest version, serialized across replicas by an
  // advisory lock; idempotent.
  Status Migrate();
  // Commits `rows` in one transaction; rows whose request_id is already there are skipped
  // (ON CONFLICT DO NOTHING), so a replay after an uncertain commit adds nothing twice.
  Status Insert(const std::vector<const UsageRecord*>& rows);
  StatusOr<std::vector<TenantUsage>> Summarize(const UsageQuery& query);
  StatusOr<std::vector<UsageRecord>> Records(const UsageQuery& query);
  // Deletes call rows finished, and capacity rows of hours started, before `before_ms`;
  // returns how many call rows.
  StatusOr<int64_t> Prune(int64_t before_ms);
  // UsageLedger::AccrueCapacity in one transaction; concurrent replicas serialize on each
  // row's lock.
  StatusOr<std::vector<CapacityCharge>> AccrueCapacity(const std::vector<CapacityAccrual>& accruals);
  StatusOr<std::vector<CapacityRecord>> CapacityRecords(const UsageQuery& query);

  // The session's value of a run-time setting (SHOW), e.g. "synchronous_commit" -> "off".
  StatusOr<std::string> Show(const std::string& setting);

  // False once the connection was lost; the owner then drops this store and connects anew.
  bool usable() const;

  struct Impl;

 private:
  explicit PgStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `url` with the password replaced by "***" (for logs and error messages).
std::string RedactUrl(std::string_view url);

}  // namespace llmux
