// Capacity billing: the exact arithmetic of a capacity row, accrual into the SQLite ledger
// (idempotent, prorated, migrated onto an old file), the CapacityMeter across reloads and
// ledger failures, and the worked month of docs/billing.md reproduced from the ledger.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/scratch_dir.h"
#include "llmux/capacity_meter.h"
#include "llmux/quota.h"
#include "llmux/tenant_policy.h"
#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kHour = 3'600'000;

int64_t T(const char* when) { return *ParseTimeArg(when); }

std::shared_ptr<const TenantPolicy> Policy(const std::string& tenants) {
  auto p = ParseTenantPolicy("lanes: [{name: standard}]\ntenants:\n" + tenants, "tenants.yaml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : nullptr;
}

CapacityHold Hold(int64_t kv, int64_t seqs, int64_t kv_price, int64_t seq_price) {
  CapacityHold h;
  h.pool = "shared";
  h.reserved_kv_tokens = kv;
  h.reserved_seqs = seqs;
  h.prices.reserved_kv_nano_per_1k_tokens_hour = kv_price;
  h.prices.reserved_seq_nano_per_hour = seq_price;
  return h;
}

class CapacityLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("llmux-capacity");
    path_ = dir_ / "usage.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<UsageLedger> Open() {
    auto l = UsageLedger::Open(path_);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? std::move(l).value() : nullptr;
  }

  fs::path dir_;
  fs::path path_;
};

TEST(CapacityAmountTest, RateIsExactInMilliNanoUnits) {
  // 1000 KV tokens at 0.000000001 per 1k per hour is one nano-unit an hour; 1 token is 1/1000.
  EXPECT_EQ(Hold(1000, 0, 1, 0).MilliNanoPerHour(), 1000);
  EXPECT_EQ(Hold(1, 0, 1, 0).MilliNanoPerHour(), 1);
  EXPECT_EQ(Hold(16384, 8, 4'000'000, 10'000'000).MilliNanoPerHour(), 145'536'000'000);
  CapacityHold pool;
  pool.dedicated = true;
  pool.prices.dedicated_pool_nano_per_hour = 1'200'000'000;
  EXPECT_EQ(pool.MilliNanoPerHour(), 1'200'000'000'000);
  pool.dedicated = false;  // the pool price applies only to a dedicated pool
  EXPECT_EQ(pool.MilliNanoPerHour(), 0);
  CapacityHold huge = Hold(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX);
  EXPECT_EQ(huge.MilliNanoPerHour(), INT64_MAX);
}

TEST(CapacityAmountTest, RoundsHalfUpOncePerRowWhateverTheSplit) {
  // 1 nano-unit per hour held for half an hour: exactly 0.5 -> 1 (half up); 1 ms less -> 0.
  CapacityAmount half;
  half.Add(1000, kHour / 2);
  EXPECT_EQ(half.CostNano(), 1);
  CapacityAmount below;
  below.Add(1000, kHour / 2 - 1);
  EXPECT_EQ(below.CostNano(), 0);
  // 3600 accruals of one second each add up to the same row as one of an hour: no rounding
  // per accrual (7 nano-units an hour, 1/3600 of it a second, is not a whole number).
  CapacityAmount pieces, whole;
  for (int i = 0; i < 3600; ++i) pieces.Add(7000, 1000);
  whole.Add(7000, kHour);
  EXPECT_EQ(pieces, whole);
  EXPECT_EQ(pieces.CostNano(), 7);
  CapacityAmount big;
  big.Add(INT64_MAX, INT64_MAX);
  EXPECT_EQ(big.CostNano(), INT64_MAX);
}

TEST_F(CapacityLedgerTest, AccrualIsIdempotentAndAddsOnlyUncoveredTime) {
  auto ledger = Open();
  const CapacityHold h = Hold(0, 1, 0, 3'600'000);  // 3600000 nano an hour = 1000 a second
  const CapacityAccrual first{"acme", T("2026-06-01T10:00:00Z"), T("2026-06-01T10:30:00Z"), h};
  auto c = ledger->AccrueCapacity({first});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, (std::vector<CapacityCharge>{{"acme", T("2026-06-01T10:00:00Z"), 1'800'000}}));
  // The same accrual again (a replay after an uncertain commit) adds nothing.
  c = ledger->AccrueCapacity({first});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->empty());
  // An overlapping one adds only the time after what the row covers.
  c = ledger->AccrueCapacity(
      {{"acme", T("2026-06-01T10:15:00Z"), T("2026-06-01T10:45:00Z"), h}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, (std::vector<CapacityCharge>{{"acme", T("2026-06-01T10:00:00Z"), 900'000}}));

  UsageQuery all;
  auto rows = ledger->CapacityRecords(all);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0], (CapacityRecord{"acme", T("2026-06-01T10:00:00Z"), "shared", 0, 1, false,
                                        45 * 60 * 1000, 2'700'000}));
  EXPECT_EQ(CapacityRecordsCsv(*rows),
            "tenant,hour_start,pool,reserved_kv_tokens,reserved_seqs,dedicated,held_ms,cost_nano\r\n"
            "acme,2026-06-01T10:00:00.000Z,shared,0,1,false,2700000,2700000\r\n");
  EXPECT_EQ(CapacityRecordsJson(*rows),
            R"([{"tenant":"acme","hour_start":"2026-06-01T10:00:00.000Z","pool":"shared",)"
            R"("reserved_kv_tokens":0,"reserved_seqs":1,"dedicated":false,"held_ms":2700000,)"
            R"("cost_nano":2700000}])");
}

TEST_F(CapacityLedgerTest, RowsSurviveReopenAndMergeIntoTheSummaryBesideTokenCharges) {
  {
    auto ledger = Open();
    UsageRecord call;
    call.request_id = "cmpl-1";
    call.tenant = "acme";
    call.model = "m";
    call.lane = "standard";
    call.pool = "shared";
    call.finished_unix_ms = T("2026-06-02T08:00:00Z");
    call.prompt_tokens = 10;
    call.completion_tokens = 5;
    call.outcome = "ok";
    call.cost_nano = 300;
    ASSERT_TRUE(ledger->AppendSync(call).ok());
    const CapacityHold h = Hold(0, 1, 0, 1000);
    ASSERT_TRUE(ledger
                    ->AccrueCapacity({{"acme", T("2026-06-01T23:00:00Z"), T("2026-06-02T00:00:00Z"), h},
                                      {"acme", T("2026-06-02T00:00:00Z"), T("2026-06-02T01:00:00Z"), h},
                                      {"zeta", T("2026-06-02T05:00:00Z"), T("2026-06-02T06:00:00Z"), h}})
                    .ok());
  }
  auto ledger = Open();  // a restart: the rows are there, and covered time is not charged again
  auto again = ledger->AccrueCapacity(
      {{"acme", T("2026-06-02T00:00:00Z"), T("2026-06-02T01:00:00Z"), Hold(0, 1, 0, 1000)}});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  UsageQuery all;
  auto sum = ledger->Summarize(all);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  ASSERT_EQ(sum->size(), 2u);
  EXPECT_EQ((*sum)[0].tenant, "acme");
  EXPECT_EQ((*sum)[0].totals, (UsageTotals{1, 10, 0, 5, 300, 2000}));
  EXPECT_EQ((*sum)[0].totals.total_cost_nano(), 2300);
  ASSERT_EQ((*sum)[0].daily.size(), 2u);
  EXPECT_EQ((*sum)[0].daily[0], (DailyUsage{"2026-06-01", {0, 0, 0, 0, 0, 1000}}));
  EXPECT_EQ((*sum)[0].daily[1], (DailyUsage{"2026-06-02", {1, 10, 0, 5, 300, 1000}}));
  EXPECT_EQ((*sum)[1].tenant, "zeta");  // a tenant with only capacity rows is listed
  EXPECT_EQ((*sum)[1].totals, (UsageTotals{0, 0, 0, 0, 0, 1000}));
  EXPECT_EQ(UsageSummaryCsv(*sum),
            "tenant,requests,prompt_tokens,cached_tokens,completion_tokens,token_cost_nano,"
            "capacity_cost_nano,total_cost_nano\r\n"
            "acme,1,10,0,5,300,2000,2300\r\nzeta,0,0,0,0,0,1000,1000\r\n");
  // Pruning takes capacity rows of the hours before the cut with the calls.
  ASSERT_TRUE(ledger->Prune(T("2026-06-02")).ok());
  EXPECT_EQ(ledger->CapacityRecords(all)->size(), 2u);
}

TEST_F(CapacityLedgerTest, OpeningALedgerFileFromBeforeCapacityRowsAddsTheTable) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE usage (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, "
                           "tenant TEXT NOT NULL, model TEXT NOT NULL, lane TEXT NOT NULL, pool "
                           "TEXT NOT NULL, finished_unix_ms INTEGER NOT NULL, prompt_tokens "
                           "INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens "
                           "INTEGER NOT NULL, queue_ms INTEGER NOT NULL, ttft_ms INTEGER NOT "
                           "NULL, duration_ms INTEGER NOT NULL, outcome TEXT NOT NULL, cost_nano "
                           "INTEGER NOT NULL)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto ledger = Open();
  ASSERT_NE(ledger, nullptr);
  auto c = ledger->AccrueCapacity(
      {{"acme", T("2026-06-01T00:00:00Z"), T("2026-06-01T01:00:00Z"), Hold(0, 2, 0, 5)}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, (std::vector<CapacityCharge>{{"acme", T("2026-06-01T00:00:00Z"), 10}}));
}

// A ledger whose capacity writes fail while `down` (PostgreSQL unreachable).
class FlakyLedger final : public UsageLedger {
 public:
  explicit FlakyLedger(UsageLedger* inner) : inner_(inner) {}
  bool down = false;
  void Append(UsageRecord r, OnCommitted c) override { inner_->Append(std::move(r), std::move(c)); }
  Status AppendSync(UsageRecord r) override { return inner_->AppendSync(std::move(r)); }
  StatusOr<std::vector<TenantUsage>> Summarize(const UsageQuery& q) override {
    return inner_->Summarize(q);
  }
  StatusOr<std::vector<UsageRecord>> Records(const UsageQuery& q) override {
    return inner_->Records(q);
  }
  StatusOr<int64_t> Prune(int64_t before) override { return inner_->Prune(before); }
  StatusOr<std::vector<CapacityCharge>> AccrueCapacity(
      const std::vector<CapacityAccrual>& a) override {
    if (down) return Unavailable("usage store (PostgreSQL) unreachable: test");
    return inner_->AccrueCapacity(a);
  }
  StatusOr<std::vector<CapacityRecord>> CapacityRecords(const UsageQuery& q) override {
    return inner_->CapacityRecords(q);
  }
  void Close() override {}

 private:
  UsageLedger* inner_;
};

TEST_F(CapacityLedgerTest, MeterProratesAReloadAndKeepsTimeWhileTheLedgerIsDown) {
  auto sqlite = Open();
  FlakyLedger ledger(sqlite.get());
  CapacityMeter meter;
  const auto one = Policy(
      "  acme: {reserved: {seqs: 1}, capacity_prices: {reserved_seq_per_hour: 0.0036}}\n"
      "  free: {reserved: {seqs: 1}}\n");  // no capacity price: no rows
  const auto two = Policy(
      "  acme: {reserved: {seqs: 3}, capacity_prices: {reserved_seq_per_hour: 0.0036}}\n");
  meter.Apply(*one, T("2026-06-01T10:00:00Z"));
  ledger.down = true;
  auto failed = meter.Flush(ledger, T("2026-06-01T10:20:00Z"));
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  meter.Apply(*two, T("2026-06-01T10:30:00Z"));  // reload mid-hour: 1 seq, then 3
  EXPECT_EQ(meter.Flush(ledger, T("2026-06-01T11:10:00Z")).status().code(),
            StatusCode::kUnavailable);
  // Kept: [10:00, 10:30) at 1 seq, [10:30, 11:00) and [11:00, 11:10) at 3 seqs.
  EXPECT_EQ(meter.pending(), 3u);
  ledger.down = false;
  auto charges = meter.Flush(ledger, T("2026-06-01T11:20:00Z"));
  ASSERT_TRUE(charges.ok()) << charges.status().ToString();
  EXPECT_EQ(meter.pending(), 0u);
  // 0.0036 per seq-hour = 3600000 nano: 1 seq half an hour + 3 seqs half an hour; then 3 seqs
  // for 20 minutes.
  EXPECT_EQ(*charges, (std::vector<CapacityCharge>{{"acme", T("2026-06-01T10:00:00Z"), 1'800'000},
                                                   {"acme", T("2026-06-01T10:00:00Z"), 5'400'000},
                                                   {"acme", T("2026-06-01T11:00:00Z"), 3'600'000}}));
  meter.Stop(T("2026-06-01T11:30:00Z"));
  ASSERT_TRUE(meter.Flush(ledger, T("2026-06-01T12:00:00Z")).ok());  // stopped: nothing after 11:30
  UsageQuery all;
  auto rows = ledger.CapacityRecords(all);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*rows,
            (std::vector<CapacityRecord>{
                {"acme", T("2026-06-01T10:00:00Z"), "shared", 0, 3, false, kHour, 7'200'000},
                {"acme", T("2026-06-01T11:00:00Z"), "shared", 0, 3, false, kHour / 2, 5'400'000}}));
}

// docs/billing.md, "A worked month": three tenants through June 2026, the meter flushed every
// hour as the daemon's timer would (every minute) and the token calls of the month; the bill
// read back from the ledger must be the one the document prints.
TEST_F(CapacityLedgerTest, WorkedMonthOfBillingMdFromTheLedger) {
  const std::string acme =
      "  acme:\n"
      "    prices: {input_per_mtok: 0.20, output_per_mtok: 0.60, cached_per_mtok: 0.05}\n";
  const std::string globex_small =
      "  globex:\n"
      "    reserved: {kv_tokens: 16384, seqs: 8}\n"
      "    prices: {input_per_mtok: 0.10, output_per_mtok: 0.30}\n"
      "    capacity_prices: {reserved_kv_per_1k_tokens_hour: 0.004, reserved_seq_per_hour: 0.01}\n";
  const std::string globex_large =
      "  globex:\n"
      "    reserved: {kv_tokens: 32768, seqs: 16}\n"
      "    prices: {input_per_mtok: 0.10, output_per_mtok: 0.30}\n"
      "    capacity_prices: {reserved_kv_per_1k_tokens_hour: 0.004, reserved_seq_per_hour: 0.01}\n";
  const std::string initech =
      "  initech:\n"
      "    pool: initech-a10\n"
      "    capacity_prices: {dedicated_pool_per_hour: 1.20}\n";
  // The policy history: June 1 acme and globex; June 10 09:15 initech signs on; June 16 00:30
  // globex doubles its reservation.
  const auto p1 = Policy(acme + globex_small);
  const auto p2 = Policy(acme + globex_small + initech);
  const auto p3 = Policy(acme + globex_large + initech);

  auto ledger = Open();
  CapacityMeter meter;
  const int64_t start = T("2026-06-01T00:00:00Z");
  const int64_t end = T("2026-07-01T00:00:00Z");
  meter.Apply(*p1, start);
  for (int64_t now = start + kHour; now <= end; now += kHour) {
    if (now - kHour < T("2026-06-10T09:15:00Z") && now > T("2026-06-10T09:15:00Z")) {
      meter.Apply(*p2, T("2026-06-10T09:15:00Z"));
    }
    if (now - kHour < T("2026-06-16T00:30:00Z") && now > T("2026-06-16T00:30:00Z")) {
      meter.Apply(*p3, T("2026-06-16T00:30:00Z"));
    }
    ASSERT_TRUE(meter.Flush(*ledger, now).ok()) << "at " << FormatRfc3339(now);
  }
  meter.Stop(end);
  ASSERT_TRUE(meter.Flush(*ledger, end).ok());

  struct Call {
    const char* id;
    const char* tenant;
    const char* when;
    int64_t prompt, cached, completion;
  };
  const Call calls[] = {
      {"cmpl-a1", "acme", "2026-06-03T14:00:00Z", 4'000'000, 1'000'000, 800'000},
      {"cmpl-g1", "globex", "2026-06-12T09:00:00Z", 10'000'000, 0, 2'000'000},
      {"cmpl-i1", "initech", "2026-06-15T18:00:00Z", 50'000'000, 0, 10'000'000},
      {"cmpl-a2", "acme", "2026-06-21T11:00:00Z", 2'500'000, 0, 1'200'000},
      {"cmpl-g2", "globex", "2026-06-25T16:00:00Z", 6'000'000, 0, 3'000'000},
  };
  for (const Call& c : calls) {
    UsageRecord r;
    r.request_id = c.id;
    r.tenant = c.tenant;
    r.model = "m";
    r.lane = "standard";
    r.pool = p3->Find(c.tenant)->pool;
    r.finished_unix_ms = T(c.when);
    r.prompt_tokens = c.prompt;
    r.cached_tokens = c.cached;
    r.completion_tokens = c.completion;
    r.outcome = "ok";
    r.cost_nano = CostNano(p3->Find(c.tenant)->prices, c.prompt, c.cached, c.completion);
    ASSERT_TRUE(ledger->AppendSync(r).ok());
  }

  UsageQuery june;
  june.start_ms = start;
  june.end_ms = end;
  auto bill = ledger->Summarize(june);
  ASSERT_TRUE(bill.ok()) << bill.status().ToString();
  // The table of docs/billing.md.
  EXPECT_EQ(UsageSummaryCsv(*bill),
            "tenant,requests,prompt_tokens,cached_tokens,completion_tokens,token_cost_nano,"
            "capacity_cost_nano,total_cost_nano\r\n"
            "acme,2,6500000,1000000,2000000,2350000000,0,2350000000\r\n"
            "globex,2,16000000,0,5000000,3100000000,157106112000,160206112000\r\n"
            "initech,1,50000000,0,10000000,0,593700000000,593700000000\r\n");
  // One row per tenant and hour held: globex all 720 hours of June, initech from the hour of
  // June 10 09:00 on (494.75 hours held in 495 rows).
  auto rows = ledger->CapacityRecords(june);
  ASSERT_TRUE(rows.ok());
  int globex_rows = 0, initech_rows = 0;
  for (const CapacityRecord& r : *rows) (r.tenant == "globex" ? globex_rows : initech_rows)++;
  EXPECT_EQ(globex_rows, 720);
  EXPECT_EQ(initech_rows, 495);
  const std::vector<CapacityRecord> split = [&] {
    UsageQuery q;
    q.tenant = "globex";
    q.start_ms = T("2026-06-16T00:00:00Z");
    q.end_ms = T("2026-06-16T01:00:00Z");
    return *ledger->CapacityRecords(q);
  }();
  EXPECT_EQ(split, (std::vector<CapacityRecord>{{"globex", T("2026-06-16T00:00:00Z"), "shared",
                                                 32768, 16, false, kHour, 218'304'000}}));
  UsageQuery first_initech;
  first_initech.tenant = "initech";
  first_initech.start_ms = T("2026-06-10T09:00:00Z");
  first_initech.end_ms = T("2026-06-10T10:00:00Z");
  EXPECT_EQ(*ledger->CapacityRecords(first_initech),
            (std::vector<CapacityRecord>{{"initech", T("2026-06-10T09:00:00Z"), "initech-a10", 0,
                                          0, true, 45 * 60 * 1000, 900'000'000}}));

  // Spend quotas count both kinds of charge.
  QuotaTracker quota([] { return T("2026-06-30T23:30:00Z"); });
  ASSERT_TRUE(quota.LoadFrom(*ledger).ok());
  EXPECT_EQ(quota.SpendThisMonth("globex"), 160'206'112'000);
  EXPECT_EQ(quota.SpendThisMonth("initech"), 593'700'000'000);
}

}  // namespace
}  // namespace llmux
