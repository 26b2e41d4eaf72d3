// ClusterAdmission against a real redis-server: the Lua scripts' semantics (rate windows,
// quota reserve/settle, queue caps, in-flight leases and their expiry), failure modes
// (local_share with N, reconciliation, reject) and the timeout bound.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "llmux/cluster.h"
#include "llmux/usage_ledger.h"
#include "unit/cluster/redis_server.h"

namespace llmux {
namespace {

using cluster::testing::RedisServer;
using Clock = std::chrono::steady_clock;

TenantConfig Tenant() {
  TenantConfig t;
  t.name = "acme";
  t.max_queued_requests = 64;
  t.max_inflight_tokens = 1000000;
  return t;
}

AdmissionRequest Req(int64_t tokens, int choices = 1, int64_t nano = 0) {
  return AdmissionRequest{tokens, nano, choices};
}

const AdmissionTicket* Ticket(const AdmissionResult& r) { return std::get_if<AdmissionTicket>(&r); }
const AdmissionRefusal* Refusal(const AdmissionResult& r) {
  return std::get_if<AdmissionRefusal>(&r);
}

std::unique_ptr<ClusterAdmission> Replica(const RedisServer& redis, const std::string& id,
                                          StoreFailureMode mode = StoreFailureMode::kLocalShare) {
  ClusterSection c = redis.Config(id);
  c.on_store_failure = mode;
  auto a = ClusterAdmission::Create(c);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE((*a)->Flush(Millis(3000))) << "store never came up for " << id;
  return std::move(a).value();
}

int64_t HGet(RedisServer& redis, const std::string& key, const std::string& field) {
  auto c = redis.Client();
  auto r = c->Command({"HGET", key, field});
  return r.ok() && !r->values.empty() ? r->values[0] : 0;
}

TEST(ClusterAdmissionTest, RequestsPerMinuteAreExactAcrossReplicas) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.rate_limit.requests_per_minute = 2;
  int admitted = 0;
  for (int i = 0; i < 6; ++i) {
    Admission& r = i % 2 == 0 ? static_cast<Admission&>(*a) : *b;
    AdmissionResult res = r.Admit("acme", t, Req(10));
    if (Ticket(res) != nullptr) {
      ++admitted;
    } else {
      const AdmissionRefusal* no = Refusal(res);
      EXPECT_EQ(no->code, "rate_limit_exceeded") << "at call " << i;
      EXPECT_EQ(no->status.code(), StatusCode::kResourceExhausted);
      // 2 per minute refill one request every 30 s.
      EXPECT_GE(no->retry_after_seconds, 29) << "at call " << i;
      EXPECT_LE(no->retry_after_seconds, 30) << "at call " << i;
    }
  }
  EXPECT_EQ(admitted, 2);
}

TEST(ClusterAdmissionTest, LedgerUsageSeedsAPeriodRedisDoesNotKnow) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  // This replica's ledger already holds 30 tokens of today (before cluster mode was enabled).
  QuotaTracker ledger([] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  });
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  ledger.Record("acme", now_ms, 30, 0);
  ClusterSection c = redis.Config("a");
  auto a = ClusterAdmission::Create(c, &ledger);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Flush(Millis(3000)));
  TenantConfig t = Tenant();
  t.quota = Quota{100, std::nullopt};
  AdmissionResult r = (*a)->Admit("acme", t, Req(10));
  ASSERT_NE(Ticket(r), nullptr);
  (*a)->Finish(*Ticket(r), AdmissionUsage{5, 0});
  ASSERT_TRUE((*a)->Flush(Millis(2000)));
  EXPECT_EQ(HGet(redis, "test:used:acme:" + FormatDate(now_ms), "a"), 35);
  // A second process of the same replica adds to what Redis has, not to its ledger again.
  a->reset();
  ledger.Record("acme", now_ms, 5, 0);  // the first process's call, committed to the ledger
  auto again = ClusterAdmission::Create(c, &ledger);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->Flush(Millis(3000)));
  AdmissionResult r2 = (*again)->Admit("acme", t, Req(10));
  ASSERT_NE(Ticket(r2), nullptr);
  (*again)->Finish(*Ticket(r2), AdmissionUsage{7, 0});
  ASSERT_TRUE((*again)->Flush(Millis(2000)));
  EXPECT_EQ(HGet(redis, "test:used:acme:" + FormatDate(now_ms), "a"), 42);
}

TEST(ClusterAdmissionTest, AFlushedScriptCacheIsReloaded) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  TenantConfig t = Tenant();
  ASSERT_NE(Ticket(a->Admit("acme", t, Req(10))), nullptr);
  ASSERT_TRUE(redis.Client()->Command({"SCRIPT", "FLUSH"}).ok());
  // NOSCRIPT -> EVAL with the source: still decided in Redis.
  ASSERT_NE(Ticket(a->Admit("acme", t, Req(10))), nullptr);
  EXPECT_TRUE(a->Stats().store_up);
  EXPECT_EQ(a->Stats().local_decisions, 0);
  EXPECT_EQ(HGet(redis, "test:hold:acme", "a|tok"), 20);
}

TEST(ClusterAdmissionTest, TokensPerMinuteAndTooLargeRequests) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.rate_limit.tokens_per_minute = 100;
  EXPECT_NE(Ticket(a->Admit("acme", t, Req(40))), nullptr);
  EXPECT_NE(Ticket(b->Admit("acme", t, Req(40))), nullptr);
  const AdmissionResult third = a->Admit("acme", t, Req(40));
  ASSERT_NE(Refusal(third), nullptr);
  EXPECT_EQ(Refusal(third)->code, "rate_limit_exceeded");
  // 20 left: the missing 20 refill in 20 / 100 of a minute = 12 s.
  EXPECT_GE(Refusal(third)->retry_after_seconds, 12);
  const AdmissionResult huge = b->Admit("acme", t, Req(101));
  ASSERT_NE(Refusal(huge), nullptr);
  EXPECT_EQ(Refusal(huge)->status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Refusal(huge)->param, "max_tokens");
}

TEST(ClusterAdmissionTest, QuotaReservesAtAdmissionAndSettlesToUsage) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.quota = Quota{100, std::nullopt};
  AdmissionResult first = a->Admit("acme", t, Req(60));
  AdmissionResult second = b->Admit("acme", t, Req(60));
  ASSERT_NE(Ticket(first), nullptr);
  ASSERT_NE(Ticket(second), nullptr);  // 0 used + 60 reserved < 100
  const AdmissionResult third = a->Admit("acme", t, Req(1));
  ASSERT_NE(Refusal(third), nullptr);
  EXPECT_EQ(Refusal(third)->code, "quota_exceeded");
  EXPECT_NE(Refusal(third)->status.message().find("used 0 of its 100 tokens per day (UTC) across "
                                                  "all replicas, and calls in flight hold 120 more"),
            std::string::npos)
      << Refusal(third)->status.message();
  a->Finish(*Ticket(first), AdmissionUsage{10, 0});
  b->Finish(*Ticket(second), AdmissionUsage{15, 0});
  ASSERT_TRUE(a->Flush(Millis(2000)));
  ASSERT_TRUE(b->Flush(Millis(2000)));
  // 25 used, nothing reserved: 75 more reach the limit.
  AdmissionResult fourth = b->Admit("acme", t, Req(75));
  ASSERT_NE(Ticket(fourth), nullptr);
  const AdmissionResult fifth = a->Admit("acme", t, Req(1));
  ASSERT_NE(Refusal(fifth), nullptr);
  EXPECT_NE(Refusal(fifth)->status.message().find("used 25 of its 100 tokens per day (UTC) across "
                                                  "all replicas, and calls in flight hold 75 more"),
            std::string::npos)
      << Refusal(fifth)->status.message();
  b->Finish(*Ticket(fourth), AdmissionUsage{80, 0});
  ASSERT_TRUE(b->Flush(Millis(2000)));
  const AdmissionResult sixth = a->Admit("acme", t, Req(1));
  ASSERT_NE(Refusal(sixth), nullptr);
  EXPECT_NE(Refusal(sixth)->status.message().find("used 105 of its 100"), std::string::npos)
      << Refusal(sixth)->status.message();
  EXPECT_GE(Refusal(sixth)->retry_after_seconds, 1);
}

TEST(ClusterAdmissionTest, SpendPerMonthReservesCost) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  TenantConfig t = Tenant();
  t.quota = Quota{std::nullopt, 1000};
  AdmissionResult first = a->Admit("acme", t, Req(10, 1, 900));
  ASSERT_NE(Ticket(first), nullptr);
  const AdmissionResult second = a->Admit("acme", t, Req(10, 1, 100));
  ASSERT_NE(Ticket(second), nullptr);  // 900 reserved < 1000
  const AdmissionResult third = a->Admit("acme", t, Req(10, 1, 1));
  ASSERT_NE(Refusal(third), nullptr);
  EXPECT_EQ(Refusal(third)->code, "quota_exceeded");
  EXPECT_NE(Refusal(third)->status.message().find("per calendar month (UTC) across all replicas"), std::string::npos)
      << Refusal(third)->status.message();
  a->Finish(*Ticket(first), AdmissionUsage{10, 100});
  a->Finish(*Ticket(second), AdmissionUsage{10, 20});
  ASSERT_TRUE(a->Flush(Millis(2000)));
  EXPECT_NE(Ticket(a->Admit("acme", t, Req(10, 1, 1))), nullptr);  // 120 spent
}

// Capacity charges (reserved KV or sequences, dedicated pools) count toward the fleet's spend
// quota: replica a's hourly charge refuses a call on replica b; a charge for a month that has
// rolled over counts for nothing.
TEST(ClusterAdmissionTest, CapacityChargesCountTowardFleetSpend) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.quota = Quota{std::nullopt, 1000};
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  a->RecordCharge("acme", now, 950);
  a->RecordCharge("acme", now - 40LL * 86400000, 500);  // an earlier month: not counted
  ASSERT_TRUE(a->Flush(Millis(2000)));
  const AdmissionResult under = b->Admit("acme", t, Req(10, 1, 0));  // 950 spent < 1000
  ASSERT_NE(Ticket(under), nullptr);
  b->Finish(*Ticket(under), AdmissionUsage{10, 0});
  ASSERT_TRUE(b->Flush(Millis(2000)));
  a->RecordCharge("acme", now, 50);
  ASSERT_TRUE(a->Flush(Millis(2000)));
  const AdmissionResult over = b->Admit("acme", t, Req(10, 1, 0));
  ASSERT_NE(Refusal(over), nullptr);
  EXPECT_EQ(Refusal(over)->code, "quota_exceeded");
  EXPECT_NE(Refusal(over)->status.message().find("spent 0.000001000 of its 0.000001000"),
            std::string::npos)
      << Refusal(over)->status.message();
}

TEST(ClusterAdmissionTest, QueueCapCountsEveryReplica) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.max_queued_requests = 3;
  AdmissionResult two = a->Admit("acme", t, Req(10, 2));
  ASSERT_NE(Ticket(two), nullptr);
  ASSERT_NE(Ticket(b->Admit("acme", t, Req(10, 1))), nullptr);
  const AdmissionResult full = b->Admit("acme", t, Req(10, 1));
  ASSERT_NE(Refusal(full), nullptr);
  EXPECT_EQ(Refusal(full)->code, "queue_full");
  EXPECT_EQ(Refusal(full)->retry_after_seconds, 1);
  EXPECT_EQ(a->Queued("acme"), 2);
  a->LeaveQueue(*Ticket(two), 2);
  EXPECT_EQ(a->Queued("acme"), 0);
  ASSERT_TRUE(a->Flush(Millis(2000)));
  EXPECT_NE(Ticket(b->Admit("acme", t, Req(10, 2))), nullptr);
}

TEST(ClusterAdmissionTest, InflightBudgetIsLeasedFleetWide) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.max_inflight_tokens = 100;
  AdmissionResult held = a->Admit("acme", t, Req(60));
  ASSERT_NE(Ticket(held), nullptr);
  const AdmissionResult over = b->Admit("acme", t, Req(50));
  ASSERT_NE(Refusal(over), nullptr);
  EXPECT_EQ(Refusal(over)->code, "inflight_budget_exceeded");
  EXPECT_EQ(Refusal(over)->status.message(),
            "this tenant's calls in flight across all replicas hold 60 of its 100 "
            "max_inflight_tokens; this call needs 50");
  EXPECT_EQ(HGet(redis, "test:hold:acme", "a|tok"), 60);
  a->Finish(*Ticket(held), AdmissionUsage{30, 0});
  ASSERT_TRUE(a->Flush(Millis(2000)));
  EXPECT_EQ(HGet(redis, "test:hold:acme", "a|tok"), 0);
  EXPECT_NE(Ticket(b->Admit("acme", t, Req(50))), nullptr);
  // Alone above the budget: left to the engine, which refuses what can never fit.
  auto c = Replica(redis, "c");
  TenantConfig other = Tenant();
  other.name = "solo";
  other.max_inflight_tokens = 100;
  EXPECT_NE(Ticket(c->Admit("solo", other, Req(150))), nullptr);
}

TEST(ClusterAdmissionTest, DeadReplicasLeasesExpire) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  TenantConfig t = Tenant();
  t.max_inflight_tokens = 100;
  // A replica "dead" that registered 300 ms of lease and holds 80 tokens, then stopped renewing.
  auto direct = redis.Client();
  auto now = direct->Command({"TIME"});
  ASSERT_TRUE(now.ok());
  const int64_t now_ms = now->values[0] * 1000 + now->values[1] / 1000;
  ASSERT_TRUE(direct->Command({"ZADD", "test:replicas", std::to_string(now_ms + 300), "dead"}).ok());
  ASSERT_TRUE(direct->Command({"HSET", "test:hold:acme", "dead|tok", "80", "dead|q", "1"}).ok());
  const AdmissionResult blocked = a->Admit("acme", t, Req(50));
  ASSERT_NE(Refusal(blocked), nullptr);
  EXPECT_EQ(Refusal(blocked)->code, "inflight_budget_exceeded");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_NE(Ticket(a->Admit("acme", t, Req(50))), nullptr);
  // The dead replica's fields are gone.
  auto fields = direct->Command({"HEXISTS", "test:hold:acme", "dead|tok"});
  ASSERT_TRUE(fields.ok());
  EXPECT_EQ(fields->values, std::vector<int64_t>{0});
}

TEST(ClusterAdmissionTest, CleanStopReturnsHoldsAtOnce) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.max_inflight_tokens = 100;
  ASSERT_NE(Ticket(a->Admit("acme", t, Req(90))), nullptr);
  ASSERT_NE(Refusal(b->Admit("acme", t, Req(20))), nullptr);
  a.reset();
  EXPECT_NE(Ticket(b->Admit("acme", t, Req(20))), nullptr);
}

TEST(ClusterAdmissionTest, LocalShareDividesByLiveReplicasAndReconciles) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  auto b = Replica(redis, "b");
  TenantConfig t = Tenant();
  t.rate_limit.requests_per_minute = 4;
  t.max_inflight_tokens = 1000;
  // Let a's heartbeat see both replicas.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(a->Stats().live_replicas, 2);
  AdmissionResult before = a->Admit("acme", t, Req(100));
  ASSERT_NE(Ticket(before), nullptr);
  redis.Stop();
  // Each replica now enforces 4 / 2 = 2 requests per minute (its fresh local bucket).
  int admitted = 0;
  std::vector<AdmissionTicket> tickets;
  for (int i = 0; i < 5; ++i) {
    AdmissionResult r = a->Admit("acme", t, Req(100));
    if (const AdmissionTicket* k = Ticket(r)) {
      ++admitted;
      tickets.push_back(*k);
    } else {
      EXPECT_EQ(Refusal(r)->code, "rate_limit_exceeded") << "at call " << i;
    }
  }
  EXPECT_EQ(admitted, 2);
  AdmissionStats s = a->Stats();
  EXPECT_FALSE(s.store_up);
  EXPECT_TRUE(s.shared_store);
  EXPECT_EQ(s.local_decisions, 5);
  EXPECT_GE(s.store_errors, 1);
  // Budget share: 1000 / 2 = 500 per replica; 300 held here.
  t.rate_limit.requests_per_minute = 0;
  AdmissionResult over = a->Admit("acme", t, Req(250));
  ASSERT_NE(Refusal(over), nullptr);
  EXPECT_EQ(Refusal(over)->code, "inflight_budget_exceeded");
  a->Finish(tickets[0], AdmissionUsage{40, 0});

  // Redis returns empty (no persistence): a writes back what it holds (before + tickets[1]).
  ASSERT_TRUE(redis.Start());
  ASSERT_TRUE(a->Flush(Millis(5000)));
  EXPECT_EQ(HGet(redis, "test:hold:acme", "a|tok"), 200);
  EXPECT_EQ(HGet(redis, "test:hold:acme", "a|q"), 2);
  EXPECT_TRUE(a->Stats().store_up);
  // The fleet's usage carries what a settled while Redis was away.
  a->Finish(*Ticket(before), AdmissionUsage{7, 0});
  ASSERT_TRUE(a->Flush(Millis(2000)));
  auto direct = redis.Client();
  auto keys = direct->Command({"KEYS", "test:used:acme:*"});
  ASSERT_TRUE(keys.ok());
  auto hv = direct->Command({"EVAL",
                             "local k = redis.call('KEYS', 'test:used:acme:*')[1] "
                             "return redis.call('HGET', k, 'a')",
                             "0"});
  ASSERT_TRUE(hv.ok());
  EXPECT_EQ(hv->values, std::vector<int64_t>{47});
}

TEST(ClusterAdmissionTest, RejectModeRefusesWith503WhileDown) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a", StoreFailureMode::kReject);
  TenantConfig t = Tenant();
  ASSERT_NE(Ticket(a->Admit("acme", t, Req(10))), nullptr);
  redis.Stop();
  AdmissionResult r = a->Admit("acme", t, Req(10));  // finds out now
  if (Ticket(r) == nullptr) {
    EXPECT_EQ(Refusal(r)->status.code(), StatusCode::kUnavailable);
  }
  r = a->Admit("acme", t, Req(10));
  ASSERT_NE(Refusal(r), nullptr);
  EXPECT_EQ(Refusal(r)->status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(Refusal(r)->code, "store_unavailable");
  EXPECT_EQ(Refusal(r)->retry_after_seconds, 1);
  EXPECT_GE(a->Stats().store_unavailable_refusals, 1);
  ASSERT_TRUE(redis.Start());
  ASSERT_TRUE(a->Flush(Millis(5000)));
  EXPECT_NE(Ticket(a->Admit("acme", t, Req(10))), nullptr);
}

TEST(ClusterAdmissionTest, StoppedRedisNeverBlocksLongerThanTheTimeout) {
  RedisServer redis;
  LLMUX_START_REDIS(redis);
  auto a = Replica(redis, "a");
  TenantConfig t = Tenant();
  ASSERT_NE(Ticket(a->Admit("acme", t, Req(10))), nullptr);
  redis.Pause();
  const auto start = Clock::now();
  AdmissionResult r = a->Admit("acme", t, Req(10));
  const auto first_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  // One command timeout (50 ms) plus scheduling slack on a loaded 2-core machine.
  EXPECT_LT(first_ms, 250);
  EXPECT_NE(Ticket(r), nullptr);  // decided locally (local_share)
  const auto second = Clock::now();
  (void)a->Admit("acme", t, Req(10));
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - second).count(),
            20);  // the store is known down: no Redis call at all
  EXPECT_FALSE(a->Stats().store_up);
  redis.Resume();
  EXPECT_TRUE(a->Flush(Millis(5000)));
}

}  // namespace
}  // namespace llmux
