#include "llmux/usage_ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

#include "common/scratch_dir.h"
#include "unit/telemetry/usage_rows.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;

class UsageLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("llmux-ledger");
    path_ = dir_ / "usage.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  static UsageRecord Row(const std::string& tenant, const std::string& when, int64_t prompt,
                         int64_t cached, int64_t completion, int64_t cost) {
    std::string id = "cmpl-";
    id.append(tenant).append("-").append(when);
    return telemetry_test::UsageRow(std::move(id), tenant, when, prompt, cached, completion, cost);
  }

  fs::path dir_;
  fs::path path_;
};

TEST_F(UsageLedgerTest, UsesWalAndKeepsRowsAcrossReopen) {
  {
    auto ledger = UsageLedger::Open(path_);
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    ASSERT_TRUE((*ledger)->AppendSync(Row("a", "2024-05-01T10:00:00Z", 10, 2, 5, 100)).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);

  auto again = UsageLedger::Open(path_);
  ASSERT_TRUE(again.ok());
  auto rows = (*again)->Records({});
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0], Row("a", "2024-05-01T10:00:00Z", 10, 2, 5, 100));
}

TEST_F(UsageLedgerTest, XRequestIdColumnIsMigratedOntoOldLedgersAndNullable) {
  // A ledger written before the column existed (the old schema, one row).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE usage (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, "
                         "tenant TEXT NOT NULL, model TEXT NOT NULL, lane TEXT NOT NULL, pool TEXT "
                         "NOT NULL, finished_unix_ms INTEGER NOT NULL, prompt_tokens INTEGER NOT "
                         "NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
                         "queue_ms INTEGER NOT NULL, ttft_ms INTEGER NOT NULL, duration_ms INTEGER "
                         "NOT NULL, outcome TEXT NOT NULL, cost_nano INTEGER NOT NULL);"
                         "INSERT INTO usage VALUES (1, 'cmpl-old', 'a', 'stories', 'standard', "
                         "'shared', 1714557600000, 10, 2, 5, 1, 2, 3, 'ok', 100);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  for (int open = 0; open < 2; ++open) {  // the migration runs once, then is a no-op
    auto ledger = UsageLedger::Open(path_);
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    if (open == 0) {
      UsageRecord r = Row("a", "2024-05-01T11:00:00Z", 1, 0, 1, 7);
      r.x_request_id = "client-42";
      ASSERT_TRUE((*ledger)->AppendSync(r).ok());
    }
    auto rows = (*ledger)->Records({});
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    ASSERT_EQ(rows->size(), 2u);
    EXPECT_EQ((*rows)[0].request_id, "cmpl-old");
    EXPECT_EQ((*rows)[0].x_request_id, "");
    EXPECT_EQ((*rows)[1].x_request_id, "client-42");
  }
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT x_request_id IS NULL FROM usage ORDER BY id", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(UsageLedgerTest, SummarizesPerTenantWithDailyBucketsInTheRange) {
  auto ledger = std::move(UsageLedger::Open(path_)).value();
  for (const UsageRecord& r :
       {Row("a", "2024-05-01T00:00:00Z", 10, 0, 5, 100),
        Row("a", "2024-05-01T23:59:59.999Z", 20, 4, 6, 200),
        Row("a", "2024-05-02T00:00:00Z", 1, 1, 1, 7), Row("b", "2024-05-01T12:00:00Z", 3, 0, 3, 9),
        Row("a", "2024-05-03T00:00:00Z", 99, 0, 99, 999)}) {
    ASSERT_TRUE(ledger->AppendSync(r).ok());
  }
  UsageQuery q;
  q.start_ms = *ParseTimeArg("2024-05-01");
  q.end_ms = *ParseTimeArg("2024-05-03");  // exclusive
  auto all = ledger->Summarize(q);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  const TenantUsage& a = (*all)[0];
  EXPECT_EQ(a.tenant, "a");
  EXPECT_EQ(a.totals, (UsageTotals{3, 31, 5, 12, 307}));
  ASSERT_EQ(a.daily.size(), 2u);
  EXPECT_EQ(a.daily[0], (DailyUsage{"2024-05-01", {2, 30, 4, 11, 300}}));
  EXPECT_EQ(a.daily[1], (DailyUsage{"2024-05-02", {1, 1, 1, 1, 7}}));
  EXPECT_EQ((*all)[1].tenant, "b");
  EXPECT_EQ((*all)[1].totals, (UsageTotals{1, 3, 0, 3, 9}));

  q.tenant = "b";
  auto only_b = ledger->Summarize(q);
  ASSERT_TRUE(only_b.ok());
  ASSERT_EQ(only_b->size(), 1u);
  EXPECT_EQ((*only_b)[0].tenant, "b");
  q.tenant = "nobody";
  EXPECT_TRUE(ledger->Summarize(q)->empty());
}

TEST_F(UsageLedgerTest, PruneDeletesRowsBeforeTheCutoffOnly) {
  auto ledger = std::move(UsageLedger::Open(path_)).value();
  ASSERT_TRUE(ledger->AppendSync(Row("a", "2024-04-30T23:59:59.999Z", 1, 0, 1, 1)).ok());
  ASSERT_TRUE(ledger->AppendSync(Row("a", "2024-05-01T00:00:00Z", 2, 0, 2, 2)).ok());
  auto n = ledger->Prune(*ParseTimeArg("2024-05-01"));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  auto rows = ledger->Records({});
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].prompt_tokens, 2);
}

TEST_F(UsageLedgerTest, ConcurrentAppendsAllCommitAndCallBackOnce) {
  auto ledger = std::move(UsageLedger::Open(path_)).value();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (const char* tenant : {"t0", "t1", "t2", "t3"}) {
    threads.emplace_back([&, tenant] {
      for (int i = 0; i < 50; ++i) {
        UsageRecord r = Row(tenant, "2024-05-01T00:00:00Z", 1, 0, 1, 1);
        ledger->Append(r, [&](const Status& s) { ok += s.ok() ? 1 : 0; });
      }
    });
  }
  for (auto& th : threads) th.join();
  ledger->Close();
  EXPECT_EQ(ok.load(), 200);
  auto rows = ledger->Records({});
  EXPECT_EQ(rows->size(), 200u);
  bool after_close = true;
  ledger->Append(Row("x", "2024-05-01", 1, 0, 1, 1),
                 [&](const Status& s) { after_close = s.code() == StatusCode::kUnavailable; });
  EXPECT_TRUE(after_close);
}

TEST(UsageExport, CsvQuotesAndJsonCarriesEveryField) {
  UsageRecord r;
  r.request_id = "cmpl-1";
  r.tenant = "acme";
  r.model = "m,odel\"x";
  r.lane = "premium";
  r.pool = "shared";
  r.finished_unix_ms = 1714521600250;
  r.prompt_tokens = 10;
  r.cached_tokens = 4;
  r.completion_tokens = 5;
  r.queue_ms = 1;
  r.ttft_ms = 2;
  r.duration_ms = 3;
  r.outcome = "ok";
  r.cost_nano = 4200;
  r.engine_ms = 7;
  EXPECT_EQ(UsageRecordsCsv({r}),
            "request_id,tenant,model,lane,pool,finished_at,prompt_tokens,cached_tokens,"
            "completion_tokens,queue_ms,ttft_ms,duration_ms,outcome,cost_nano,engine_ms\r\n"
            "cmpl-1,acme,\"m,odel\"\"x\",premium,shared,2024-05-01T00:00:00.250Z,10,4,5,1,2,3,ok,"
            "4200,7\r\n");
  EXPECT_EQ(UsageRecordsJson({r}),
            R"([{"request_id":"cmpl-1","tenant":"acme","model":"m,odel\"x","lane":"premium",)"
            R"("pool":"shared","finished_at":"2024-05-01T00:00:00.250Z","prompt_tokens":10,)"
            R"("cached_tokens":4,"completion_tokens":5,"queue_ms":1,"ttft_ms":2,"duration_ms":3,)"
            R"("outcome":"ok","cost_nano":4200,"engine_ms":7}])");
  EXPECT_EQ(UsageRecordsJson({}), "[]");
}

}  // namespace
}  // namespace llmux
