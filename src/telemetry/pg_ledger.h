// The PostgreSQL usage ledger, shared by every replica, with a local SQLite spool. Internal to
// telemetry: callers use UsageLedger::Open.
#pragma once

#include <memory>

#include "llmux/usage_ledger.h"

namespace llmux {

// See UsageLedger::Open(const LedgerOptions&) for the contract.
StatusOr<std::unique_ptr<UsageLedger>> OpenPgLedger(const LedgerOptions& options);

}  // namespace llmux
