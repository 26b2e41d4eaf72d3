// The PostgreSQL usage ledger against a real throwaway cluster (pg_test_cluster.h): rows
// written, read and exported; two ledgers ("replicas") sharing one database; PostgreSQL
// stopped under load (every call still committed, spooled, replayed once, no duplicates).
// Without PostgreSQL binaries the tests skip, and fail under CI=true; binaries that fail to
// start a cluster are a failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/test_data.h"
#include "llmux/quota.h"
#include "llmux/usage_ledger.h"
#include "telemetry/pg_store.h"
#include "telemetry/usage_spool.h"
#include "unit/telemetry/pg_test_cluster.h"
#include "unit/telemetry/usage_rows.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;
using testing_pg::PgCluster;

UsageRecord Row(const std::string& id, const std::string& tenant, const std::string& when,
                int64_t prompt, int64_t completion, int64_t cost) {
  return telemetry_test::UsageRow(id, tenant, when, prompt, prompt / 2, completion, cost);
}

// prefix + n. NOTE: not `"x" + std::to_string(n)`, which trips GCC 12's -Wrestrict false
// positive at -O3.
std::string Named(const char* prefix, int n) {
  std::string s(prefix);
  s.append(std::to_string(n));
  return s;
}

// Waits (bounded) until `pred` holds.
template <typename P>
bool WaitFor(P pred, std::chrono::milliseconds limit = std::chrono::milliseconds(30000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class PgLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::string error;
    bool missing = false;
    cluster_ = PgCluster::Start(name, &error, &missing);
    if (!cluster_) {
      if (!missing) FAIL() << "PostgreSQL did not start: " << error;
      if (testing::InCi()) FAIL() << "PostgreSQL is required under CI=true: " << error;
      GTEST_SKIP() << "PostgreSQL unavailable: " << error;
    }
    dir_ =
        fs::temp_directory_path() / ("llmux-pgledger-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    cluster_.reset();
    fs::remove_all(dir_);
  }

  LedgerOptions Options(const std::string& spool_name, LedgerSync sync = LedgerSync::kFull) {
    LedgerOptions o;
    o.target = cluster_->url();
    o.sync = sync;
    if (!spool_name.empty()) o.spool = dir_ / spool_name;
    o.retry_interval_ms = 50;
    o.statement_timeout_ms = 2000;
    o.connect_timeout_s = 2;
    return o;
  }

  std::unique_ptr<PgCluster> cluster_;
  fs::path dir_;
};

TEST_F(PgLedgerTest, WritesReadsExportsAndPrunesRows) {
  auto opened = UsageLedger::Open(Options("spool.db"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto ledger = std::move(opened).value();
  const UsageRecord a1 = Row("cmpl-a1", "a", "2024-05-01T10:00:00Z", 10, 5, 100);
  const UsageRecord a2 = Row("cmpl-a2", "a", "2024-05-02T11:00:00Z", 20, 6, 200);
  const UsageRecord b1 = Row("cmpl-b1", "b", "2024-05-01T12:00:00Z", 30, 7, 300);
  for (const UsageRecord& r : {a1, a2, b1}) ASSERT_TRUE(ledger->AppendSync(r).ok());
  // The same request id again (a replay) adds nothing.
  ASSERT_TRUE(ledger->AppendSync(a1).ok());

  UsageQuery all;
  auto rows = ledger->Records(all);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(*rows, (std::vector<UsageRecord>{a1, b1, a2}));

  auto sum = ledger->Summarize(all);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  ASSERT_EQ(sum->size(), 2u);
  EXPECT_EQ((*sum)[0].tenant, "a");
  EXPECT_EQ((*sum)[0].totals, (UsageTotals{2, 30, 15, 11, 300}));
  ASSERT_EQ((*sum)[0].daily.size(), 2u);
  EXPECT_EQ((*sum)[0].daily[0], (DailyUsage{"2024-05-01", {1, 10, 5, 5, 100}}));
  EXPECT_EQ((*sum)[0].daily[1], (DailyUsage{"2024-05-02", {1, 20, 10, 6, 200}}));
  EXPECT_EQ((*sum)[1].tenant, "b");
  EXPECT_EQ((*sum)[1].totals, (UsageTotals{1, 30, 15, 7, 300}));

  UsageQuery only_a;
  only_a.tenant = "a";
  only_a.start_ms = *ParseTimeArg("2024-05-02");
  auto a_rows = ledger->Records(only_a);
  ASSERT_TRUE(a_rows.ok());
  EXPECT_EQ(*a_rows, std::vector<UsageRecord>{a2});
  EXPECT_EQ(UsageRecordsCsv(*a_rows), UsageRecordsCsv({a2}));

  auto pruned = ledger->Prune(*ParseTimeArg("2024-05-02"));
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 2);
  EXPECT_EQ(ledger->Records(all)->size(), 1u);
  EXPECT_EQ(ledger->Health().store_up, true);
  EXPECT_EQ(ledger->Health().spooled_rows, 0);
}

TEST_F(PgLedgerTest, TwoReplicasWriteOneLedgerAndEachReadsTheSum) {
  auto r1 = std::move(UsageLedger::Open(Options("spool1.db"))).value();
  auto r2 = std::move(UsageLedger::Open(Options("spool2.db", LedgerSync::kNormal))).value();
  std::thread t1([&] {
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(r1->AppendSync(Row(Named("r1-", i), "t", "2024-05-01T00:00:01Z", 1, 2, 3)).ok());
    }
  });
  std::thread t2([&] {
    for (int i = 0; i < 30; ++i) {
      ASSERT_TRUE(
          r2->AppendSync(Row(Named("r2-", i), "t", "2024-05-01T00:00:02Z", 10, 20, 30)).ok());
    }
  });
  t1.join();
  t2.join();
  UsageQuery q;
  q.tenant = "t";
  for (UsageLedger* l : {r1.get(), r2.get()}) {
    auto s = l->Summarize(q);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_EQ(s->size(), 1u);
    // cached = prompt / 2: 0 for the 1-token prompts, 5 for the 10-token ones.
    EXPECT_EQ((*s)[0].totals, (UsageTotals{80, 50 + 300, 0 + 150, 100 + 600, 150 + 900}));
  }
}

TEST_F(PgLedgerTest, PostgresStoppedUnderLoadSpoolsThenReplaysEveryRowOnce) {
  auto ledger = std::move(UsageLedger::Open(Options("spool.db"))).value();
  constexpr int kThreads = 4;
  constexpr int kPerThread = 150;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::atomic<int> issued{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = Named("load-", t).append("-").append(std::to_string(i));
        ledger->Append(Row(id, Named("t", t), "2024-05-01T00:00:00Z", 1, 1, 1),
                       [&](const Status& s) { (s.ok() ? ok : failed).fetch_add(1); });
        issued.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok.load() >= 100; }));
  ASSERT_TRUE(cluster_->StopServer());
  ASSERT_TRUE(WaitFor([&] { return ledger->Health().spooled_rows > 0; }))
      << "no row went to the spool while PostgreSQL was down";
  EXPECT_FALSE(ledger->Health().store_up);
  // Reads say the store is unreachable rather than answering a partial sum.
  auto down = ledger->Summarize(UsageQuery{});
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), StatusCode::kUnavailable) << down.status().ToString();
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(WaitFor([&] { return ok.load() + failed.load() == kThreads * kPerThread; }));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  const int64_t spooled = ledger->Health().spooled_rows;
  EXPECT_GT(spooled, 0);

  ASSERT_TRUE(cluster_->StartServer());
  ASSERT_TRUE(WaitFor([&] {
    const LedgerHealth h = ledger->Health();
    return h.store_up && h.spooled_rows == 0;
  })) << "spool not replayed";
  EXPECT_EQ(ledger->Health().replayed_rows, spooled);
  auto rows = ledger->Records(UsageQuery{});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  std::set<std::string> ids;
  for (const UsageRecord& r : *rows) ids.insert(r.request_id);
  EXPECT_EQ(rows->size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(ids.size(), rows->size()) << "duplicate request ids";
  ledger->Close();

  // Replay twice: a spool still holding every row (as after a crash between the PostgreSQL
  // commit and the spool delete) replays into the same ledger without adding a row.
  {
    auto spool = std::move(UsageSpool::Open(dir_ / "again.db", LedgerSync::kFull)).value();
    std::vector<const UsageRecord*> again;
    for (const UsageRecord& r : *rows) again.push_back(&r);
    ASSERT_TRUE(spool->Append(again).ok());
  }
  auto second = std::move(UsageLedger::Open(Options("again.db"))).value();
  EXPECT_EQ(second->Health().spooled_rows, static_cast<int64_t>(rows->size()));
  ASSERT_TRUE(WaitFor([&] { return second->Health().spooled_rows == 0; }));
  auto after = second->Records(UsageQuery{});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(PgLedgerTest, OpensWhilePostgresIsDownAndReplaysWhenItStarts) {
  ASSERT_TRUE(cluster_->StopServer());
  {
    LedgerOptions no_spool = Options("");
    auto refused = UsageLedger::Open(no_spool);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(refused.status().message().find("unreachable"), std::string::npos)
        << refused.status().message();
  }
  std::atomic<int> store_up_calls{0};
  LedgerOptions o = Options("spool.db");
  o.on_store_up = [&] { store_up_calls.fetch_add(1); };
  auto opened = UsageLedger::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto ledger = std::move(opened).value();
  EXPECT_FALSE(ledger->Health().store_up);
  ASSERT_TRUE(ledger->AppendSync(Row("early-1", "a", "2024-05-01T00:00:00Z", 4, 5, 6)).ok());
  ASSERT_TRUE(ledger->AppendSync(Row("early-2", "a", "2024-05-01T00:00:00Z", 4, 5, 6)).ok());
  EXPECT_EQ(ledger->Health().spooled_rows, 2);
  ASSERT_TRUE(cluster_->StartServer());
  ASSERT_TRUE(WaitFor([&] { return store_up_calls.load() == 1; }));
  EXPECT_EQ(ledger->Health().spooled_rows, 0);
  // The schema was created by the replay (PostgreSQL was down at Open).
  auto rows = ledger->Records(UsageQuery{});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->size(), 2u);
  // Direct again: the next row lands in PostgreSQL, not the spool.
  ASSERT_TRUE(ledger->AppendSync(Row("late", "a", "2024-05-01T00:00:00Z", 4, 5, 6)).ok());
  EXPECT_EQ(ledger->Health().spooled_rows, 0);
  EXPECT_EQ(ledger->Records(UsageQuery{})->size(), 3u);
}

TEST_F(PgLedgerTest, StatementTimeoutSpoolsTheRowAndReplaysItOnceTheLockIsGone) {
  LedgerOptions o = Options("spool.db");
  o.statement_timeout_ms = 300;
  auto ledger = std::move(UsageLedger::Open(o)).value();
  ASSERT_TRUE(ledger->AppendSync(Row("before", "a", "2024-05-01T00:00:00Z", 1, 1, 1)).ok());
  // Another session holds the table locked for 3 s: the insert waits past statement_timeout.
  std::thread locker([&] {
    cluster_->Psql(
        "BEGIN; LOCK TABLE llmux_usage IN ACCESS EXCLUSIVE MODE; "
        "SELECT pg_sleep(3); COMMIT;");
  });
  ASSERT_TRUE(WaitFor([&] {
    return cluster_->Psql(
               "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' "
               "AND relation = 'llmux_usage'::regclass") == "1";
  }));
  const auto start = std::chrono::steady_clock::now();
  const Status s = ledger->AppendSync(Row("blocked", "a", "2024-05-01T00:00:00Z", 1, 1, 1));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_LT(waited, std::chrono::milliseconds(2500)) << "the timeout did not cut the wait";
  EXPECT_EQ(ledger->Health().spooled_rows, 1);
  EXPECT_FALSE(ledger->Health().store_up);
  locker.join();
  ASSERT_TRUE(WaitFor([&] { return ledger->Health().spooled_rows == 0; }));
  EXPECT_TRUE(ledger->Health().store_up);
  auto rows = ledger->Records(UsageQuery{});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].request_id, "before");
  EXPECT_EQ((*rows)[1].request_id, "blocked");
}

TEST_F(PgLedgerTest, LedgerSyncSetsSynchronousCommitAndTheStatementTimeout) {
  for (const auto& [sync, want] :
       {std::pair{LedgerSync::kFull, "on"}, std::pair{LedgerSync::kNormal, "off"}}) {
    auto store = PgStore::Connect(cluster_->url(), sync, 1234, 2);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ(*(*store)->Show("synchronous_commit"), want);
    EXPECT_EQ(*(*store)->Show("statement_timeout"), "1234ms");
    EXPECT_EQ(*(*store)->Show("application_name"), "llmuxd");
  }
}

TEST_F(PgLedgerTest, QuotaTotalsLoadFromPostgres) {
  auto ledger = std::move(UsageLedger::Open(Options("spool.db"))).value();
  ASSERT_TRUE(ledger->AppendSync(Row("q1", "a", "2024-04-30T23:59:59Z", 1000, 1000, 1000)).ok());
  ASSERT_TRUE(ledger->AppendSync(Row("q2", "a", "2024-05-02T00:00:00Z", 7, 3, 40)).ok());
  ASSERT_TRUE(ledger->AppendSync(Row("q3", "a", "2024-05-31T01:00:00Z", 5, 6, 2)).ok());
  const int64_t now = *ParseTimeArg("2024-05-31T23:00:00Z");
  QuotaTracker tracker([now] { return now; });
  ASSERT_TRUE(tracker.LoadFrom(*ledger).ok());
  EXPECT_EQ(tracker.TokensToday("a"), 11);
  EXPECT_EQ(tracker.SpendThisMonth("a"), 42);
}

// Capacity rows in the shared ledger: two replicas accruing the same tenant's hours (each from
// its own meter) charge each millisecond once, concurrently too, and the summary puts the
// capacity charges beside the token charges.
TEST_F(PgLedgerTest, TwoReplicasAccrueOneTenantHourOnceAndSummariesShowCapacity) {
  auto r1 = std::move(UsageLedger::Open(Options("spool1.db"))).value();
  auto r2 = std::move(UsageLedger::Open(Options("spool2.db"))).value();
  ASSERT_TRUE(r1->AppendSync(Row("cmpl-c1", "t", "2026-06-01T10:05:00Z", 10, 5, 300)).ok());
  CapacityHold hold;
  hold.pool = "shared";
  hold.reserved_seqs = 2;
  hold.prices.reserved_seq_nano_per_hour = 3'600'000;  // 2 seqs: 2000 nano-units a second
  const int64_t h = *ParseTimeArg("2026-06-01T10:00:00Z");
  const int64_t min = 60000;
  auto gained = [](const StatusOr<std::vector<CapacityCharge>>& c) {
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    int64_t n = 0;
    for (const CapacityCharge& x : *c) n += x.added_nano;
    return n;
  };
  // Replica 1 covers [0, 30) min, replica 2 [20, 50): only [30, 50) is new; replica 1's replay
  // adds nothing; replica 2 then [50, 60).
  EXPECT_EQ(gained(r1->AccrueCapacity({{"t", h, h + 30 * min, hold}})), 3'600'000);
  EXPECT_EQ(gained(r2->AccrueCapacity({{"t", h + 20 * min, h + 50 * min, hold}})), 2'400'000);
  EXPECT_EQ(gained(r1->AccrueCapacity({{"t", h, h + 30 * min, hold}})), 0);
  EXPECT_EQ(gained(r2->AccrueCapacity({{"t", h + 50 * min, h + 60 * min, hold}})), 1'200'000);
  // Both replicas accrue the next hour at once: the row lock lets one add it, the other nothing.
  const int64_t h2 = h + 60 * min;
  int64_t g1 = 0, g2 = 0;
  std::thread t1([&] { g1 = gained(r1->AccrueCapacity({{"t", h2, h2 + 60 * min, hold}})); });
  std::thread t2([&] { g2 = gained(r2->AccrueCapacity({{"t", h2, h2 + 60 * min, hold}})); });
  t1.join();
  t2.join();
  EXPECT_EQ(g1 + g2, 7'200'000);
  EXPECT_TRUE(g1 == 0 || g2 == 0);
  UsageQuery q;
  auto rows = r1->CapacityRecords(q);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(*rows, (std::vector<CapacityRecord>{{"t", h, "shared", 0, 2, false, 3'600'000, 7'200'000},
                                                {"t", h2, "shared", 0, 2, false, 3'600'000, 7'200'000}}));
  auto sum = r2->Summarize(q);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  ASSERT_EQ(sum->size(), 1u);
  EXPECT_EQ((*sum)[0].totals, (UsageTotals{1, 10, 5, 5, 300, 14'400'000}));
  QuotaTracker quota([] { return *ParseTimeArg("2026-06-02T00:00:00Z"); });
  ASSERT_TRUE(quota.LoadFrom(*r1).ok());
  EXPECT_EQ(quota.SpendThisMonth("t"), 14'400'300);
  ASSERT_TRUE(r1->Prune(*ParseTimeArg("2026-06-02")).ok());
  EXPECT_TRUE(r1->CapacityRecords(q)->empty());
}

TEST(PgUrlTest, RedactsThePasswordOnly) {
  EXPECT_EQ(RedactUrl("postgresql://llmux:s3cret@db:5432/usage?sslmode=require"),
            "postgresql://llmux:***@db:5432/usage?sslmode=require");
  EXPECT_EQ(RedactUrl("postgresql://llmux@db/usage"), "postgresql://llmux@db/usage");
  EXPECT_EQ(RedactUrl("postgresql://db/usage"), "postgresql://db/usage");
  EXPECT_TRUE(IsPostgresUrl("postgres://x"));
  EXPECT_FALSE(IsPostgresUrl("/var/lib/llmux/usage.db"));
}

TEST(PgUrlTest, BadUrlIsAnInvalidArgumentNamingIt) {
  LedgerOptions o;
  o.target = "postgresql://llmux@127.0.0.1:1/db?no_such_option=1";
  auto l = UsageLedger::Open(o);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kInvalidArgument) << l.status().ToString();
  EXPECT_NE(l.status().message().find("usage_db"), std::string::npos);
}

}  // namespace
}  // namespace llmux
