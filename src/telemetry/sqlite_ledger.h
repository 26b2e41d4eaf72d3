// The SQLite usage ledger (one file per replica). Internal to telemetry: callers use
// UsageLedger::Open.
#pragma once

#include <filesystem>
#include <memory>

#include "llmux/usage_ledger.h"

namespace llmux {

// Opens (creating when missing) `path` in WAL mode with `sync` and starts the writer thread.
// Internal naming the file and SQLite's message on failure.
StatusOr<std::unique_ptr<UsageLedger>> OpenSqliteLedger(const std::filesystem::path& path,
                                                        LedgerSync sync);

}  // namespace llmux
