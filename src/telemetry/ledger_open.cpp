// UsageLedger::Open(options): picks the ledger implementation the target names.
#include "llmux/usage_ledger.h"
#if defined(LLMUX_HAVE_PQXX)
#include "telemetry/pg_ledger.h"
#endif
#include "telemetry/sqlite_ledger.h"

namespace llmux {

std::string_view LedgerSyncName(LedgerSync sync) {
  switch (sync) {
    case LedgerSync::kFull:
      return "full";
    case LedgerSync::kNormal:
      return "normal";
  }
  return "full";
}

bool IsPostgresUrl(std::string_view target) {
  return target.rfind("postgresql://", 0) == 0 || target.rfind("postgres://", 0) == 0;
}

StatusOr<std::unique_ptr<UsageLedger>> UsageLedger::Open(const LedgerOptions& options) {
  if (options.target.empty()) return InvalidArgument("usage ledger: no database given");
  if (IsPostgresUrl(options.target)) {
#if defined(LLMUX_HAVE_PQXX)
    return OpenPgLedger(options);
#else
    return Unimplemented("usage ledger: this build has no PostgreSQL support (libpqxx-dev)");
#endif
  }
  return OpenSqliteLedger(options.target, options.sync);
}

}  // namespace llmux
