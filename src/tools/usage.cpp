// `llmux usage export|prune`: reads the usage ledger (telemetry.usage_db: a SQLite file or a
// postgresql:// URI) offline. Safe while llmuxd runs (SQLite WAL: readers do not block the
// daemon's writer; PostgreSQL: ordinary concurrent transactions). A shared PostgreSQL ledger
// gives every replica's rows; rows still in a replica's local spool are not included.
#include <cstdio>
#include <string>
#include <vector>

#include "llmux/usage_ledger.h"
#include "tools/command.h"

namespace llmux::tools {
namespace {

constexpr const char* kUsage =
    "usage: llmux usage export --db FILE|URI --format csv|json [--rows calls|capacity|summary]\n"
    "                          [--tenant T] [--start TIME] [--end TIME]\n"
    "       llmux usage prune --db FILE|URI --before TIME\n"
    "FILE|URI: the SQLite ledger file or a postgresql:// URI (telemetry.usage_db).\n"
    "TIME: RFC 3339 (2024-05-01T00:00:00Z), a date (2024-05-01, midnight UTC) or Unix seconds.\n"
    "export writes to stdout the call rows finished in [start, end) (--rows calls, the default),\n"
    "the capacity rows of the hours starting in it (--rows capacity), or per tenant the token,\n"
    "capacity and total charges (--rows summary); prune deletes call rows finished, and\n"
    "capacity rows of hours started, before TIME and prints how many call rows.\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "llmux usage: %s\n", message.c_str());
  return 1;
}

// No spool: a reader never writes, and must not replay a daemon's spool behind its back.
StatusOr<std::unique_ptr<UsageLedger>> OpenLedger(const std::string& db) {
  LedgerOptions options;
  options.target = db;
  return UsageLedger::Open(options);
}

int Export(const Args& args) {
  if (std::string u =
          args.FirstUnknown({"--db", "--format", "--rows", "--tenant", "--start", "--end"}, {});
      !u.empty()) {
    return Fail("unknown option " + u);
  }
  const auto db = args.Get("--db");
  const auto format = args.Get("--format");
  const std::string rows_kind = args.Get("--rows").value_or("calls");
  if (!db || !format || (*format != "csv" && *format != "json")) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (rows_kind != "calls" && rows_kind != "capacity" && rows_kind != "summary") {
    return Fail("--rows must be calls, capacity or summary (got \"" + rows_kind + "\")");
  }
  UsageQuery q;
  if (auto t = args.Get("--tenant")) q.tenant = *t;
  for (const char* flag : {"--start", "--end"}) {
    if (auto v = args.Get(flag)) {
      auto t = ParseTimeArg(*v);
      if (!t.ok()) return Fail(t.status().message());
      (std::string(flag) == "--start" ? q.start_ms : q.end_ms) = *t;
    }
  }
  auto ledger = OpenLedger(*db);
  if (!ledger.ok()) return Fail(ledger.status().message());
  const bool csv = *format == "csv";
  std::string out;
  if (rows_kind == "capacity") {
    auto rows = (*ledger)->CapacityRecords(q);
    if (!rows.ok()) return Fail(rows.status().message());
    out = csv ? CapacityRecordsCsv(*rows) : CapacityRecordsJson(*rows) + "\n";
  } else if (rows_kind == "summary") {
    auto usage = (*ledger)->Summarize(q);
    if (!usage.ok()) return Fail(usage.status().message());
    out = csv ? UsageSummaryCsv(*usage) : UsageSummaryJson(*usage) + "\n";
  } else {
    auto rows = (*ledger)->Records(q);
    if (!rows.ok()) return Fail(rows.status().message());
    out = csv ? UsageRecordsCsv(*rows) : UsageRecordsJson(*rows) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int Prune(const Args& args) {
  if (std::string u = args.FirstUnknown({"--db", "--before"}, {}); !u.empty()) {
    return Fail("unknown option " + u);
  }
  const auto db = args.Get("--db");
  const auto before = args.Get("--before");
  if (!db || !before) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto t = ParseTimeArg(*before);
  if (!t.ok()) return Fail(t.status().message());
  auto ledger = OpenLedger(*db);
  if (!ledger.ok()) return Fail(ledger.status().message());
  auto n = (*ledger)->Prune(*t);
  if (!n.ok()) return Fail(n.status().message());
  std::printf("pruned %lld rows finished before %s\n", static_cast<long long>(*n),
              FormatRfc3339(*t).c_str());
  return 0;
}

int UsageCommand(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "--help") {
    std::fputs(kUsage, argv.empty() ? stderr : stdout);
    return argv.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  const Args args(rest);
  if (argv[0] == "export") return Export(args);
  if (argv[0] == "prune") return Prune(args);
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace

LLMUX_REGISTER_COMMAND("usage", "export or prune the usage ledger (billing)", UsageCommand);

}  // namespace llmux::tools
