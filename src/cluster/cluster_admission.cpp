// The fleet-wide admission: one Redis round trip (the ADMIT script) per call on the I/O thread,
// everything else (queue departures, settlements, heartbeats, reconnects, reconciliation) on
// one store thread per replica. While Redis is unreachable it decides locally with each limit
// divided by the live replicas (local_share) or refuses (reject).
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "cluster/connection_pool.h"
#include "cluster/redis_connection.h"
#include "cluster/scripts.h"
#include "llmux/cluster.h"
#include "llmux/log.h"
#include "llmux/thread_annotations.h"
#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

using cluster::ConnectionPool;
using cluster::RedisConnection;
using cluster::RedisReply;
using cluster::RedisScript;

int64_t UnixMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SecondsUntil(int64_t unix_ms, int64_t now_ms) {
  return std::max<int64_t>(1, (unix_ms - now_ms + 999) / 1000);
}

// limit / live replicas, at least 1 (0 stays 0 = unlimited).
int64_t Share(int64_t limit, int64_t replicas) {
  if (limit <= 0) return limit;
  return std::max<int64_t>(1, limit / std::max<int64_t>(replicas, 1));
}

enum class StoreState {
  kDown,         // unreachable: local_share or reject
  kReconciling,  // reachable again; this replica's holds and usage are being written back
  kUp,           // every admission goes through Redis
};

class RedisClusterAdmission final : public ClusterAdmission {
 public:
  RedisClusterAdmission(const ClusterSection& cluster, QuotaTracker* ledger_totals)
      : cluster_(cluster),
        ledger_totals_(ledger_totals),
        prefix_(cluster.key_prefix),
        replica_(cluster.replica_id),
        pool_(cluster) {
    std::random_device rd;
    epoch_ = std::to_string((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ UnixMsNow());
    admit_.source = cluster::AdmitScript();
    sync_.source = cluster::SyncScript();
    heartbeat_.source = cluster::HeartbeatScript();
    register_.source = cluster::RegisterScript();
    thread_ = std::thread([this] { StoreLoop(); });
  }

  ~RedisClusterAdmission() override {
    {
      MutexLock lock(mutex_);
      stopping_ = true;
    }
    cv_.NotifyAll();
    thread_.join();
  }

  AdmissionResult Admit(const std::string& tenant, const TenantConfig& config,
                        const AdmissionRequest& request) override {
    bool up = false;
    {
      MutexLock lock(mutex_);
      up = state_ == StoreState::kUp;
    }
    if (up) {
      if (auto decided = AdmitInRedis(tenant, config, request)) return *std::move(decided);
    }
    return AdmitWithoutStore(tenant, config, request);
  }

  void LeaveQueue(const AdmissionTicket& ticket, int count) override {
    MutexLock lock(mutex_);
    auto it = tickets_.find(ticket.id);
    if (it == tickets_.end()) return;
    const int64_t n = std::min<int64_t>(count, it->second.queued);
    if (n <= 0) return;
    it->second.queued -= n;
    tenants_[ticket.tenant].queued -= n;
    QueueDelta(ticket.tenant, Delta{0, 0, -n, false});
  }

  void Finish(const AdmissionTicket& ticket, const AdmissionUsage& usage) override {
    MutexLock lock(mutex_);
    auto it = tickets_.find(ticket.id);
    if (it == tickets_.end()) return;
    Tenant& t = TenantFor(ticket.tenant);
    const Held held = it->second;
    tickets_.erase(it);
    t.held_tokens -= held.tokens;
    t.held_nano -= held.nano;
    t.queued -= held.queued;
    RollPeriods(t, UnixMsNow());
    t.used_tokens += usage.tokens;
    t.used_nano += usage.cost_nano;
    QueueDelta(ticket.tenant, Delta{-held.tokens, -held.nano, -held.queued, true});
  }

  void RecordCharge(const std::string& tenant, int64_t at_unix_ms, int64_t cost_nano) override {
    if (cost_nano == 0) return;
    MutexLock lock(mutex_);
    // Seeds a new entry from the ledger first: FlushCapacity calls this before it records the
    // charge in the QuotaTracker, so the seed does not hold this charge yet.
    Tenant& t = TenantFor(tenant);
    RollPeriods(t, UnixMsNow());
    // A charge for the last hour of a month that has already rolled over counts for nothing now.
    if (FormatDate(at_unix_ms).substr(0, 7) != t.month) return;
    t.used_nano += cost_nano;
    QueueDelta(tenant, Delta{0, 0, 0, true});
  }

  int64_t Queued(const std::string& tenant) override {
    MutexLock lock(mutex_);
    auto it = tenants_.find(tenant);
    return it == tenants_.end() ? 0 : it->second.queued;
  }

  AdmissionStats Stats() override {
    MutexLock lock(mutex_);
    AdmissionStats s = stats_;
    s.shared_store = true;
    s.store_up = state_ == StoreState::kUp;
    s.live_replicas = live_replicas_;
    return s;
  }

  bool Flush(Millis timeout) override {
    MutexLock lock(mutex_);
    const uint64_t target = queued_deltas_;
    return flushed_cv_.WaitFor(lock, timeout, [&]() REQUIRES(mutex_) {
      return state_ == StoreState::kUp && written_deltas_ >= target;
    });
  }

 private:
  // One tenant's figures on this replica (the truth this replica writes back to Redis).
  struct Tenant {
    int64_t held_tokens = 0;  // in-flight lease (prompt + max_tokens of admitted calls)
    int64_t held_nano = 0;    // spend reservation of those calls
    int64_t queued = 0;       // choices admitted, not yet started
    // This process's usage in the current UTC day / month (settled calls).
    std::string day;
    int64_t used_tokens = 0;
    std::string month;
    int64_t used_nano = 0;
    // The fleet's usage as Redis last reported it, and ours at that moment (local_share
    // estimates the fleet's usage since then as ours times the live replicas).
    int64_t fleet_used_tokens = 0;
    int64_t fleet_used_nano = 0;
    int64_t own_tokens_then = 0;
    int64_t own_nano_then = 0;
    // This replica's usage before this process (its ledger), for a period Redis has no figure
    // of this replica for; 0 once the period rolls over.
    int64_t seed_tokens = 0;
    int64_t seed_nano = 0;
  };
  struct Held {
    int64_t tokens = 0;
    int64_t nano = 0;
    int64_t queued = 0;
  };
  // A change to send: hold deltas ("add"), and whether to send the usage totals.
  struct Delta {
    int64_t tokens = 0;
    int64_t nano = 0;
    int64_t queued = 0;
    bool usage = false;
  };
  struct PendingWrite {
    std::string tenant;
    Delta delta;
  };

  std::string Key(const std::string& kind, const std::string& tenant) const {
    return prefix_ + kind + ":" + tenant;
  }

  // The tenant's entry, created (and seeded from the ledger) on first use.
  Tenant& TenantFor(const std::string& name) REQUIRES(mutex_) {
    auto it = tenants_.find(name);
    if (it != tenants_.end()) return it->second;
    Tenant& t = tenants_[name];
    if (ledger_totals_ != nullptr) {
      t.seed_tokens = ledger_totals_->TokensToday(name);
      t.seed_nano = ledger_totals_->SpendThisMonth(name);
    }
    return t;
  }

  static void RollPeriods(Tenant& t, int64_t now_ms) {
    const std::string day = FormatDate(now_ms);
    if (t.day != day) {
      if (!t.day.empty()) t.seed_tokens = 0;
      t.day = day;
      t.used_tokens = 0;
      t.own_tokens_then = 0;
      t.fleet_used_tokens = 0;
    }
    const std::string month = day.substr(0, 7);
    if (t.month != month) {
      if (!t.month.empty()) t.seed_nano = 0;
      t.month = month;
      t.used_nano = 0;
      t.own_nano_then = 0;
      t.fleet_used_nano = 0;
    }
  }

  // The change goes to Redis unless the store is down (then the
  // reconciliation writes this replica's whole state when it returns).
  void QueueDelta(const std::string& tenant, Delta d) REQUIRES(mutex_) {
    if (state_ == StoreState::kDown) return;
    pending_.push_back({tenant, d});
    ++queued_deltas_;
    cv_.NotifyAll();
  }

  AdmissionTicket Take(const std::string& tenant, const AdmissionRequest& request)
      REQUIRES(mutex_) {
    AdmissionTicket ticket{next_id_++, tenant, request};
    tickets_[ticket.id] = Held{request.charged_tokens, request.charged_cost_nano, request.num_choices};
    Tenant& t = TenantFor(tenant);
    t.held_tokens += request.charged_tokens;
    t.held_nano += request.charged_cost_nano;
    t.queued += request.num_choices;
    return ticket;
  }

  // The decision from Redis, or nullopt when Redis failed (the store is then marked down).
  std::optional<AdmissionResult> AdmitInRedis(const std::string& tenant, const TenantConfig& config,
                                              const AdmissionRequest& request) {
    const int64_t now_ms = UnixMsNow();
    const std::string day = FormatDate(now_ms);
    const int64_t tpd = config.quota && config.quota->tokens_per_day ? *config.quota->tokens_per_day : -1;
    const int64_t spm =
        config.quota && config.quota->spend_per_month_nano ? *config.quota->spend_per_month_nano : -1;
    StatusOr<RedisReply> reply = Internal("no connection");
    {
      auto conn = pool_.Take();
      if (conn.ok()) {
        reply = (*conn)->Eval(
            admit_,
            {Key("rate", tenant), Key("hold", tenant), prefix_ + "replicas",
             Key("used", tenant) + ":" + day, Key("spend", tenant) + ":" + day.substr(0, 7),
             prefix_ + "rkeys:" + replica_},
            {replica_, std::to_string(config.rate_limit.requests_per_minute),
             std::to_string(config.rate_limit.tokens_per_minute),
             std::to_string(request.charged_tokens), std::to_string(request.charged_cost_nano),
             std::to_string(request.num_choices), std::to_string(config.max_queued_requests),
             std::to_string(config.max_inflight_tokens), std::to_string(tpd), std::to_string(spm)});
        pool_.Give(std::move(conn).value());
      } else {
        reply = conn.status();
      }
    }
    if (!reply.ok() || reply->values.size() != 7) {
      MarkDown(reply.ok() ? Internal("ADMIT returned an unexpected reply") : reply.status());
      return std::nullopt;
    }
    const std::vector<int64_t>& v = reply->values;
    const int64_t code = v[0], wait_ms = v[1], used_tok = v[2], held_tok = v[3], used_nano = v[4],
                  held_nano = v[5];
    MutexLock lock(mutex_);
    Tenant& t = TenantFor(tenant);
    RollPeriods(t, now_ms);
    if (tpd >= 0) {
      t.fleet_used_tokens = used_tok;
      t.own_tokens_then = t.used_tokens;
    }
    if (spm >= 0) {
      t.fleet_used_nano = used_nano;
      t.own_nano_then = t.used_nano;
    }
    switch (code) {
      case 0:
        return AdmissionResult(Take(tenant, request));
      case 1:
        return AdmissionResult(AdmissionRefusal{
            ResourceExhausted("quota exceeded: this tenant used " + std::to_string(used_tok) +
                              " of its " + std::to_string(tpd) +
                              " tokens per day (UTC) across all replicas, and calls in flight hold " +
                              std::to_string(held_tok) + " more; it resets at " +
                              FormatRfc3339(StartOfDayMs(now_ms) + 86400000)),
            "quota_exceeded", "", SecondsUntil(StartOfDayMs(now_ms) + 86400000, now_ms)});
      case 2:
        return AdmissionResult(AdmissionRefusal{
            ResourceExhausted("quota exceeded: this tenant spent " + FormatNano(used_nano) +
                              " of its " + FormatNano(spm) +
                              " per calendar month (UTC) across all replicas, and calls in flight "
                              "reserve " + FormatNano(held_nano) + " more; it resets at " +
                              FormatRfc3339(StartOfNextMonthMs(now_ms))),
            "quota_exceeded", "", SecondsUntil(StartOfNextMonthMs(now_ms), now_ms)});
      case 3:
        return AdmissionResult(AdmissionRateRefusal(
            RateDecision{false, std::max<int64_t>(1, (wait_ms + 999) / 1000)},
            request.charged_tokens));
      case 4:
        return AdmissionResult(
            AdmissionRateRefusal(RateDecision{false, RateDecision::kNever}, request.charged_tokens));
      case 5:
        return AdmissionResult(AdmissionQueueFullRefusal(config.max_queued_requests));
      case 6:
        return AdmissionResult(BudgetRefusal(held_tok, config.max_inflight_tokens,
                                             request.charged_tokens, "across all replicas"));
      default:
        MarkDownLocked(Internal("ADMIT returned code " + std::to_string(code)));
        return std::nullopt;
    }
  }

  static AdmissionRefusal BudgetRefusal(int64_t held, int64_t budget, int64_t need,
                                        const std::string& scope) {
    return AdmissionRefusal{
        ResourceExhausted("this tenant's calls in flight " + scope + " hold " +
                          std::to_string(held) + " of its " + std::to_string(budget) +
                          " max_inflight_tokens; this call needs " + std::to_string(need)),
        "inflight_budget_exceeded", "", 1};
  }

  // Without Redis: `reject` refuses; `local_share` enforces limit / live replicas here.
  AdmissionResult AdmitWithoutStore(const std::string& tenant, const TenantConfig& config,
                                    const AdmissionRequest& request) {
    const int64_t now_ms = UnixMsNow();
    MutexLock lock(mutex_);
    if (cluster_.on_store_failure == StoreFailureMode::kReject) {
      ++stats_.store_unavailable_refusals;
      return AdmissionRefusal{
          Unavailable("the cluster store (Redis) is unreachable and this replica refuses new "
                      "requests until it returns (cluster.on_store_failure: reject)"),
          "store_unavailable", "", 1};
    }
    ++stats_.local_decisions;
    const int64_t n = std::max<int64_t>(live_replicas_, 1);
    Tenant& t = TenantFor(tenant);
    RollPeriods(t, now_ms);
    if (config.quota && config.quota->tokens_per_day) {
      // The fleet's usage last seen, plus ours since then as every replica's.
      const int64_t estimate =
          t.fleet_used_tokens + n * (t.used_tokens - t.own_tokens_then + t.held_tokens);
      if (estimate >= *config.quota->tokens_per_day) {
        const int64_t reset = StartOfDayMs(now_ms) + 86400000;
        return AdmissionRefusal{
            ResourceExhausted("quota exceeded: this tenant used about " + std::to_string(estimate) +
                              " of its " + std::to_string(*config.quota->tokens_per_day) +
                              " tokens per day (UTC) (estimated: the cluster store is "
                              "unreachable); it resets at " + FormatRfc3339(reset)),
            "quota_exceeded", "", SecondsUntil(reset, now_ms)};
      }
    }
    if (config.quota && config.quota->spend_per_month_nano) {
      const int64_t estimate = t.fleet_used_nano + n * (t.used_nano - t.own_nano_then + t.held_nano);
      if (estimate >= *config.quota->spend_per_month_nano) {
        const int64_t reset = StartOfNextMonthMs(now_ms);
        return AdmissionRefusal{
            ResourceExhausted("quota exceeded: this tenant spent about " + FormatNano(estimate) +
                              " of its " + FormatNano(*config.quota->spend_per_month_nano) +
                              " per calendar month (UTC) (estimated: the cluster store is "
                              "unreachable); it resets at " + FormatRfc3339(reset)),
            "quota_exceeded", "", SecondsUntil(reset, now_ms)};
      }
    }
    const RateLimit shared{Share(config.rate_limit.requests_per_minute, n),
                           Share(config.rate_limit.tokens_per_minute, n)};
    RateDecision rate = local_rates_.Admit(tenant, shared, request.charged_tokens);
    if (!rate.admitted) {
      // A call above this replica's share (but within the fleet's limit) waits for the store.
      if (rate.retry_after_seconds == RateDecision::kNever &&
          request.charged_tokens <= config.rate_limit.tokens_per_minute) {
        rate.retry_after_seconds = 60;
      }
      return AdmissionRateRefusal(rate, request.charged_tokens);
    }
    const int64_t queue_share = Share(config.max_queued_requests, n);
    if (t.queued + request.num_choices > queue_share) {
      return AdmissionQueueFullRefusal(static_cast<int>(queue_share));
    }
    const int64_t budget_share = Share(config.max_inflight_tokens, n);
    if (t.held_tokens > 0 && t.held_tokens + request.charged_tokens > budget_share) {
      return BudgetRefusal(t.held_tokens, budget_share, request.charged_tokens,
                           "on this replica (its share while the cluster store is unreachable)");
    }
    AdmissionTicket ticket = Take(tenant, request);
    QueueDelta(tenant, Delta{request.charged_tokens, request.charged_cost_nano,
                             request.num_choices, false});
    return ticket;
  }

  void MarkDown(const Status& why) {
    MutexLock lock(mutex_);
    MarkDownLocked(why);
  }

  void MarkDownLocked(const Status& why) REQUIRES(mutex_) {
    ++stats_.store_errors;
    if (state_ == StoreState::kDown) return;
    state_ = StoreState::kDown;
    DropPendingLocked();
    LogEvent(LogLevel::kWarn, "cluster_store_down",
             {F("replica", replica_), F("error", why.message()),
              F("mode", std::string(StoreFailureModeName(cluster_.on_store_failure))),
              F("live_replicas", static_cast<long long>(live_replicas_))});
    cv_.NotifyAll();
  }

  // The store thread: reconnects with backoff, reconciles, writes deltas, heartbeats.
  void StoreLoop() {
    Millis backoff{50};
    auto next_heartbeat = std::chrono::steady_clock::now();
    const Millis heartbeat_every{std::max<int64_t>(cluster_.lease_ttl.count() / 3, 50)};
    std::unique_ptr<RedisConnection> conn;
    MutexLock lock(mutex_);
    while (!stopping_) {
      if (state_ == StoreState::kDown) {
        pool_.Clear();
        conn.reset();
        lock.Unlock();
        const bool ok = Reconnect(conn);
        lock.Lock();
        if (!ok) {
          cv_.WaitFor(lock, backoff, [&]() REQUIRES(mutex_) { return stopping_; });
          backoff = std::min<Millis>(backoff * 2, Millis(1000));
          continue;
        }
        backoff = Millis(50);
        next_heartbeat = std::chrono::steady_clock::now() + heartbeat_every;
        continue;
      }
      // NOTE: the heartbeat goes first, so a steady stream of writes never starves the lease.
      if (std::chrono::steady_clock::now() >= next_heartbeat) {
        lock.Unlock();
        auto r = conn->Eval(heartbeat_, {prefix_ + "replicas"},
                            {replica_, std::to_string(cluster_.lease_ttl.count())});
        lock.Lock();
        next_heartbeat = std::chrono::steady_clock::now() + heartbeat_every;
        if (!r.ok() || r->values.size() != 2) {
          MarkDownLocked(r.ok() ? Internal("HEARTBEAT returned an unexpected reply") : r.status());
          continue;
        }
        live_replicas_ = std::max<int64_t>(1, r->values[0]);
        if (r->values[1] == 1) {
          // Our lease lapsed (Redis paused or lost its data): others may have dropped our
          // holds, so write them all again.
          MarkDownLocked(Unavailable("this replica's lease lapsed in the cluster store"));
          --stats_.store_errors;
        }
        continue;
      }
      if (!pending_.empty()) {
        std::deque<PendingWrite> batch;
        batch.swap(pending_);
        std::vector<std::pair<std::string, Tenant>> usage;
        for (const PendingWrite& w : batch) {
          if (w.delta.usage) usage.emplace_back(w.tenant, tenants_[w.tenant]);
        }
        lock.Unlock();
        Status s = WriteDeltas(*conn, batch, usage);
        lock.Lock();
        if (!s.ok()) {
          MarkDownLocked(s);
          continue;
        }
        written_deltas_ += batch.size();
        FinishReconcileLocked();
        flushed_cv_.NotifyAll();
        continue;
      }
      FinishReconcileLocked();
      cv_.WaitUntil(lock, next_heartbeat, [&]() REQUIRES(mutex_) {
        return stopping_ || !pending_.empty() || state_ == StoreState::kDown;
      });
    }
    lock.Unlock();
    if (conn) Deregister(*conn);
  }

  // Connects and writes this replica's whole state (REGISTER, then a "set" SYNC per tenant);
  // leaves the state kReconciling (kUp once the deltas queued meanwhile are written).
  bool Reconnect(std::unique_ptr<RedisConnection>& conn) {
    auto c = RedisConnection::Connect(cluster_, {&admit_, &sync_, &heartbeat_, &register_});
    if (!c.ok()) {
      MutexLock lock(mutex_);
      MaybeLogReconnectFailure(c.status());
      return false;
    }
    conn = std::move(c).value();
    std::map<std::string, Tenant> snapshot;
    {
      MutexLock lock(mutex_);
      state_ = StoreState::kReconciling;  // changes from now on are queued as deltas
      DropPendingLocked();
      const int64_t now_ms = UnixMsNow();
      for (auto& [name, t] : tenants_) RollPeriods(t, now_ms);
      snapshot = tenants_;
    }
    auto fail = [&](const Status& s) {
      MutexLock lock(mutex_);
      state_ = StoreState::kDown;
      DropPendingLocked();
      ++stats_.store_errors;
      MaybeLogReconnectFailure(s);
      return false;
    };
    auto reg = conn->Eval(register_, {prefix_ + "replicas", prefix_ + "rkeys:" + replica_},
                          {replica_, std::to_string(cluster_.lease_ttl.count())});
    if (!reg.ok() || reg->values.empty()) {
      return fail(reg.ok() ? Internal("REGISTER returned an unexpected reply") : reg.status());
    }
    for (const auto& [name, t] : snapshot) {
      auto r = conn->Eval(sync_, SyncKeys(name, t),
                          SyncArgs("set", t.held_tokens, t.held_nano, t.queued, &t));
      if (!r.ok()) return fail(r.status());
    }
    MutexLock lock(mutex_);
    live_replicas_ = std::max<int64_t>(1, reg->values[0]);
    return true;
  }

  // KReconciling -> kUp once nothing is left to write.
  void FinishReconcileLocked() REQUIRES(mutex_) {
    if (state_ != StoreState::kReconciling || !pending_.empty()) return;
    state_ = StoreState::kUp;
    reconnect_logged_ = false;
    LogEvent(LogLevel::kInfo, "cluster_store_up",
             {F("replica", replica_), F("live_replicas", static_cast<long long>(live_replicas_)),
              F("tenants_reconciled", static_cast<long long>(tenants_.size()))});
    flushed_cv_.NotifyAll();
  }

  // Queued deltas are dropped when the reconciliation will write this
  // replica's whole state instead.
  void DropPendingLocked() REQUIRES(mutex_) {
    written_deltas_ += pending_.size();
    pending_.clear();
    flushed_cv_.NotifyAll();
  }

  void MaybeLogReconnectFailure(const Status& s) REQUIRES(mutex_) {
    if (reconnect_logged_) return;
    reconnect_logged_ = true;
    LogEvent(LogLevel::kWarn, "cluster_store_unreachable",
             {F("replica", replica_), F("error", s.message())});
  }

  std::vector<std::string> SyncKeys(const std::string& tenant, const Tenant& t) const {
    return {Key("hold", tenant), Key("used", tenant) + ":" + t.day,
            Key("spend", tenant) + ":" + t.month, prefix_ + "rkeys:" + replica_};
  }

  std::vector<std::string> SyncArgs(const char* mode, int64_t tokens, int64_t nano, int64_t queued,
                                    const Tenant* usage) const {
    const bool has_day = usage != nullptr && !usage->day.empty();
    return {replica_,
            mode,
            std::to_string(tokens),
            std::to_string(nano),
            std::to_string(queued),
            has_day ? std::to_string(usage->used_tokens) : "-1",
            has_day ? std::to_string(usage->used_nano) : "-1",
            epoch_,
            std::to_string(usage != nullptr ? usage->seed_tokens : 0),
            std::to_string(usage != nullptr ? usage->seed_nano : 0)};
  }

  // Sends a batch of deltas, merged per tenant (hold deltas add up; usage is the latest total).
  Status WriteDeltas(RedisConnection& conn, const std::deque<PendingWrite>& batch,
                     const std::vector<std::pair<std::string, Tenant>>& usage) {
    std::map<std::string, Delta> merged;
    for (const PendingWrite& w : batch) {
      Delta& d = merged[w.tenant];
      d.tokens += w.delta.tokens;
      d.nano += w.delta.nano;
      d.queued += w.delta.queued;
      d.usage = d.usage || w.delta.usage;
    }
    std::map<std::string, Tenant> latest(usage.begin(), usage.end());
    for (const auto& [tenant, d] : merged) {
      const Tenant* u = nullptr;
      Tenant empty;
      if (auto it = latest.find(tenant); it != latest.end()) u = &it->second;
      auto r = conn.Eval(sync_, SyncKeys(tenant, u != nullptr ? *u : empty),
                         SyncArgs("add", d.tokens, d.nano, d.queued, u));
      if (!r.ok()) return r.status();
    }
    return Status::Ok();
  }

  // A clean stop gives this replica's holds back at once instead of after lease_ttl.
  void Deregister(RedisConnection& conn) {
    (void)conn.Eval(register_, {prefix_ + "replicas", prefix_ + "rkeys:" + replica_},
                    {replica_, "1"});
    (void)conn.Command({"ZREM", prefix_ + "replicas", replica_});
  }

  const ClusterSection cluster_;
  QuotaTracker* const ledger_totals_;  // may be null
  const std::string prefix_;
  const std::string replica_;
  std::string epoch_;
  RedisScript admit_, sync_, heartbeat_, register_;  // sha set by the store thread before kUp
  ConnectionPool pool_;

  Mutex mutex_;
  CondVar cv_;
  CondVar flushed_cv_;
  StoreState state_ GUARDED_BY(mutex_) = StoreState::kDown;
  bool stopping_ GUARDED_BY(mutex_) = false;
  bool reconnect_logged_ GUARDED_BY(mutex_) = false;
  int64_t live_replicas_ GUARDED_BY(mutex_) = 1;
  uint64_t next_id_ GUARDED_BY(mutex_) = 1;
  std::map<std::string, Tenant> tenants_ GUARDED_BY(mutex_);
  std::map<uint64_t, Held> tickets_ GUARDED_BY(mutex_);
  std::deque<PendingWrite> pending_ GUARDED_BY(mutex_);
  uint64_t queued_deltas_ GUARDED_BY(mutex_) = 0;
  uint64_t written_deltas_ GUARDED_BY(mutex_) = 0;
  AdmissionStats stats_ GUARDED_BY(mutex_);
  TenantRateLimiter local_rates_{[] { return std::chrono::steady_clock::now(); }};
  std::thread thread_;
};

}  // namespace

StatusOr<std::unique_ptr<ClusterAdmission>> ClusterAdmission::Create(const ClusterSection& cluster,
                                                                    QuotaTracker* ledger_totals) {
  if (!cluster.enabled) return InvalidArgument("cluster mode is not configured");
  if (cluster.replica_id.empty()) return InvalidArgument("cluster.replica_id is empty");
  if (cluster.replica_id.find('|') != std::string::npos) {
    return InvalidArgument("cluster.replica_id must not contain '|'");
  }
  return std::unique_ptr<ClusterAdmission>(new RedisClusterAdmission(cluster, ledger_totals));
}

}  // namespace llmux
