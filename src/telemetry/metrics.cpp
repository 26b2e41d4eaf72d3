// The Metrics implementation on prometheus-cpp: one registry, families built once, label sets
// added on first use (bounded by SetTenants). Engine figures that are cumulative in
// EngineStats become counters by adding the difference since the previous scrape.
#include "llmux/metrics.h"
#include "llmux/thread_annotations.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <iterator>
#include <map>
#include <cstdio>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <type_traits>
#include <vector>

namespace llmux {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using Buckets = prometheus::Histogram::BucketBoundaries;

// The Prometheus family of one EngineStats field (neither for a kInfo field).
struct EngineSeries {
  Family<Gauge>* gauge = nullptr;
  Family<Counter>* counter = nullptr;
};

// vLLM's bucket boundaries, extended below 1 ms for the CPU backend's tiny models.
const Buckets kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,  0.75,
                              1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160., 640., 2560.};
const Buckets kItlBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                             0.1,    0.15,  0.2,    0.3,   0.4,  0.5,   0.75, 1.0,
                             2.5,    5.0,   7.5,    10.0,  20.0, 40.0,  80.0};
const Buckets kLatencyBuckets = {0.001, 0.01,  0.05, 0.1,  0.3,  0.5,   0.8,  1.0,  1.5,
                                 2.0,   2.5,   5.0,  10.0, 15.0, 20.0,  30.0, 40.0, 50.0,
                                 60.0,  120.0, 240., 480., 960., 1920., 7680.};
// The step histograms' bounds are the engine's (engine.h): their counts come from the engines.
const Buckets kStepBuckets(std::begin(kStepSecondsBounds), std::end(kStepSecondsBounds));
// Request phases (and the full-path TTFT): fine from 100 us, where the I/O layer's phases live.
const Buckets kPhaseBuckets = {0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                               0.05,   0.1,    0.2,    0.5,   1.0,   2.0,   5.0,  10.0, 30.0};
const Buckets kBatchSizeBuckets(std::begin(kBatchSizeBounds), std::end(kBatchSizeBounds));
const Buckets kBatchTokenBuckets(std::begin(kBatchTokenBounds), std::end(kBatchTokenBounds));

const RejectReason kAllReasons[] = {RejectReason::kAuth,         RejectReason::kInvalid,
                                    RejectReason::kRateLimit,    RejectReason::kQuota,
                                    RejectReason::kQueueFull,    RejectReason::kBudget,
                                    RejectReason::kQueueTimeout, RejectReason::kUnavailable};

class PrometheusMetrics final : public Metrics {
 public:
  PrometheusMetrics(std::string model_name, std::string pool);

  void SetTenants(const std::vector<std::string>& tenants) override;
  void ObserveRequest(const RequestObservation& r) override;
  void ObserveInterTokenLatency(std::string_view tenant, std::string_view lane,
                                double seconds) override;
  void ObservePhases(const RequestPhases& p) override;
  void CountRejection(std::string_view tenant, RejectReason reason) override;
  void CountPolicyReload(bool ok) override;
  std::string Render(const MetricsSnapshot& snapshot) override;
  void SetCacheConfig(const CacheConfigInfo& info) override;
  std::string RenderEngine(const std::vector<PoolEngineStats>& pools) const override;

 private:
  std::string Label(std::string_view tenant) const;
  // Adds `now - *last` to `counter` when positive and remembers `now`.
  static void Advance(Counter& counter, int64_t now, int64_t* last);
  // The same for a figure whose source may restart from 0 (a process pool's worker): a value
  // below the last one is a reset, and all of it is new.
  static void AdvanceResettable(Counter& counter, int64_t now, int64_t* last);
  static void AdvanceResettable(Counter& counter, double now, double* last);
  // Adds to `h` what an engine's cumulative counts `now` hold beyond `last` (all of `now`
  // when they went back: a restarted worker), then remembers `now`.
  static void AdvanceHistogram(Histogram& h, const StepHistogram& now, StepHistogram* last);

  const std::string model_;
  const std::string pool_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();

  mutable SharedMutex tenants_mutex_;
  std::set<std::string, std::less<>> tenants_ GUARDED_BY(tenants_mutex_);

  // vLLM-compatible. The engine series: one entry per LLMUX_ENGINE_STATS field, in table order.
  const std::vector<EngineSeries> engine_series_;
  Family<Histogram>& ttft_;
  Family<Histogram>& itl_;
  Family<Histogram>& e2e_;
  Family<Histogram>& queue_time_;
  Family<Counter>& success_;
  Family<Gauge>& cache_config_;
  CacheConfigInfo cache_info_;  // written once before serving (SetCacheConfig)
  std::atomic<bool> cache_info_set_{false};
  // Per tenant.
  Family<Counter>& requests_;
  Family<Counter>& rejections_;
  Family<Counter>& t_prompt_;
  Family<Counter>& t_cached_;
  Family<Counter>& t_completion_;
  Family<Counter>& t_preemptions_;
  Family<Gauge>& t_inflight_;
  Family<Gauge>& t_budget_;
  Family<Gauge>& t_high_water_;
  Family<Gauge>& t_queued_;
  Family<Gauge>& t_waiting_;
  Family<Gauge>& t_running_;
  Family<Gauge>& t_blocks_;
  Family<Gauge>& t_reserved_;
  Family<Histogram>& t_ttft_;
  Family<Histogram>& t_itl_;
  Family<Histogram>& t_queue_;
  Family<Histogram>& t_e2e_;
  Family<Histogram>& t_phase_;
  Family<Histogram>& t_full_ttft_;
  // Engine and control plane.
  Family<Histogram>& step_seconds_;
  Family<Histogram>& batch_size_;
  Family<Histogram>& batch_tokens_;
  // Cost attribution: the pool's busy time and each tenant's share of it (StepInfo).
  Family<Counter>& pool_busy_;
  // Seconds of steps stopped for a higher-lane arrival (engine.yield_to_higher_lane).
  Family<Counter>& pool_yielded_;
  // Pool health: ready without a sticky device fault; process pools' worker restarts.
  Family<Gauge>& pool_up_;
  Family<Counter>& pool_restarts_;
  Family<Counter>& t_engine_;
  Family<Counter>& reloads_;
  // Usage ledger (set from the snapshot's LedgerHealth when it has one).
  Family<Gauge>& ledger_up_;
  Family<Gauge>& ledger_spooled_;
  Family<Counter>& ledger_replayed_;

  // Cluster mode (series added at the first scrape that reports it enabled).
  Family<Gauge>& cluster_up_;
  Family<Gauge>& cluster_replicas_;
  Family<Counter>& cluster_fallbacks_;
  Family<Counter>& cluster_refusals_;
  Family<Counter>& cluster_errors_;

  // The front door's planning pool, per lane.
  Family<Gauge>& planning_queued_;
  Family<Counter>& planning_started_;
  Family<Counter>& planning_refused_;
  Family<Gauge>& io_queued_;  // the HTTP server's lane-ordered run queue

  Mutex render_mutex_;
  // Each pool's engine counters already exported.
  std::map<std::string, EngineStats, std::less<>> last_ GUARDED_BY(render_mutex_);
  // (tenant, pool) -> the engine_seconds of the last scrape.
  std::map<std::pair<std::string, std::string>, double> last_tenant_engine_
      GUARDED_BY(render_mutex_);
  std::map<std::string, double, std::less<>> last_restarts_ GUARDED_BY(render_mutex_);
  int64_t last_replayed_ GUARDED_BY(render_mutex_) = 0;
  MetricsSnapshot::ClusterStore last_cluster_ GUARDED_BY(render_mutex_);
  // Each lane's planning counters already exported.
  std::map<std::string, MetricsSnapshot::PlanningLane, std::less<>> last_planning_
      GUARDED_BY(render_mutex_);
};

template <typename B>
auto& Reg(B builder, const char* name, const char* help, prometheus::Registry& r) {
  return builder.Name(name).Help(help).Register(r);
}

std::vector<EngineSeries> RegisterEngineSeries(prometheus::Registry& r) {
  std::vector<EngineSeries> series;
  ForEachEngineStat([&](const EngineStatField& f, auto) {
    EngineSeries& e = series.emplace_back();
    if (f.kind == EngineStatField::kGauge) e.gauge = &Reg(BuildGauge(), f.metric, f.help, r);
    if (f.kind == EngineStatField::kCounter) e.counter = &Reg(BuildCounter(), f.metric, f.help, r);
  });
  return series;
}

PrometheusMetrics::PrometheusMetrics(std::string model_name, std::string pool)
    : model_(std::move(model_name)),
      pool_(std::move(pool)),
      engine_series_(RegisterEngineSeries(*registry_)),
      ttft_(Reg(BuildHistogram(), "vllm:time_to_first_token_seconds",
                "Seconds from arrival at the engine to the first token.", *registry_)),
      itl_(Reg(BuildHistogram(), "vllm:inter_token_latency_seconds",
               "Seconds between consecutive tokens of a request.", *registry_)),
      e2e_(Reg(BuildHistogram(), "vllm:e2e_request_latency_seconds",
               "Seconds from the HTTP request to its final event.", *registry_)),
      queue_time_(Reg(BuildHistogram(), "vllm:request_queue_time_seconds",
                      "Seconds a request waited before it was first scheduled.", *registry_)),
      success_(Reg(BuildCounter(), "vllm:request_success_total",
                   "Finished engine requests (choices) by finish reason.", *registry_)),
      cache_config_(Reg(BuildGauge(), "vllm:cache_config_info",
                        "Information of the KV cache configuration (value 1; the labels).",
                        *registry_)),
      requests_(Reg(BuildCounter(), "llmux_requests_total",
                    "HTTP completion calls that reached the engine, by outcome.", *registry_)),
      rejections_(Reg(BuildCounter(), "llmux_rejections_total", "Requests refused, by reason.",
                      *registry_)),
      t_prompt_(Reg(BuildCounter(), "llmux_prompt_tokens_total",
                    "Billed prompt tokens (cached included).", *registry_)),
      t_cached_(Reg(BuildCounter(), "llmux_cached_prompt_tokens_total",
                    "Billed prompt tokens served from the prefix cache.", *registry_)),
      t_completion_(Reg(BuildCounter(), "llmux_completion_tokens_total", "Billed generated tokens.",
                        *registry_)),
      t_preemptions_(Reg(BuildCounter(), "llmux_tenant_preemptions_total",
                         "Preemptions of the tenant's finished requests.", *registry_)),
      t_inflight_(Reg(BuildGauge(), "llmux_tenant_inflight_tokens",
                      "In-flight tokens (prompt + max new tokens of admitted requests).",
                      *registry_)),
      t_budget_(Reg(BuildGauge(), "llmux_tenant_inflight_tokens_budget",
                    "The tenant's max_inflight_tokens.", *registry_)),
      t_high_water_(Reg(BuildGauge(), "llmux_tenant_inflight_tokens_high_water",
                        "Highest in-flight tokens seen since start.", *registry_)),
      t_queued_(Reg(BuildGauge(), "llmux_tenant_queued_requests",
                    "Requests submitted and not yet started.", *registry_)),
      t_waiting_(Reg(BuildGauge(), "llmux_tenant_waiting_requests",
                     "Engine requests waiting (preempted included).", *registry_)),
      t_running_(Reg(BuildGauge(), "llmux_tenant_running_requests", "Engine requests running.",
                     *registry_)),
      t_blocks_(Reg(BuildGauge(), "llmux_tenant_kv_blocks_in_use",
                    "KV blocks held by the tenant's sequences.", *registry_)),
      t_reserved_(Reg(BuildGauge(), "llmux_tenant_kv_blocks_reserved",
                      "KV blocks reserved for the tenant.", *registry_)),
      t_ttft_(Reg(BuildHistogram(), "llmux_time_to_first_token_seconds",
                  "Seconds from arrival at the engine to the first token.", *registry_)),
      t_itl_(Reg(BuildHistogram(), "llmux_inter_token_latency_seconds",
                 "Seconds between consecutive tokens.", *registry_)),
      t_queue_(Reg(BuildHistogram(), "llmux_queue_time_seconds", "Seconds before first scheduled.",
                   *registry_)),
      t_e2e_(Reg(BuildHistogram(), "llmux_e2e_request_latency_seconds",
                 "Seconds from the HTTP request to its final event.", *registry_)),
      t_phase_(Reg(BuildHistogram(), "llmux_request_phase_seconds",
                   "Seconds a completion call spent in each phase of its path to the first byte "
                   "(auth, parse, tokenize, admit, submit, inbox, queue, prefill, write).",
                   *registry_)),
      t_full_ttft_(Reg(BuildHistogram(), "llmux_full_path_time_to_first_token_seconds",
                       "Seconds from the HTTP request read to the first byte of its answer "
                       "written (the engine's TTFT plus the I/O path).",
                       *registry_)),
      step_seconds_(Reg(BuildHistogram(), "llmux_engine_step_seconds",
                        "Engine step duration (schedule, forward, sample, emit).", *registry_)),
      batch_size_(Reg(BuildHistogram(), "llmux_engine_batch_size", "Sequences per engine step.",
                      *registry_)),
      batch_tokens_(Reg(BuildHistogram(), "llmux_engine_batch_tokens", "Tokens per engine step.",
                        *registry_)),
      pool_busy_(Reg(BuildCounter(), "llmux_pool_busy_seconds_total",
                     "Seconds the pool's engine spent in steps (schedule through sampling).",
                     *registry_)),
      pool_yielded_(Reg(BuildCounter(), "llmux_engine_yielded_seconds_total",
                        "Seconds the pool's engine spent in steps it stopped for a higher-lane "
                        "arrival (not in llmux_pool_busy_seconds_total).",
                        *registry_)),
      pool_up_(Reg(BuildGauge(), "llmux_pool_up",
                   "1 while the pool is ready and its device has no sticky fault (what /health "
                   "checks per pool), else 0.",
                   *registry_)),
      pool_restarts_(Reg(BuildCounter(), "llmux_pool_worker_restarts_total",
                         "Workers a process pool started after its first (a worker that died, "
                         "hung or exited on a device fault was replaced).",
                         *registry_)),
      t_engine_(Reg(BuildCounter(), "llmux_tenant_engine_seconds_total",
                    "The tenant's share of the pool's busy time, split per step by the work "
                    "of its sequences.",
                    *registry_)),
      reloads_(Reg(BuildCounter(), "llmux_policy_reloads_total",
                   "Tenant policy reloads, by result.", *registry_)),
      ledger_up_(Reg(BuildGauge(), "llmux_ledger_store_up",
                     "1 when the usage ledger's store (PostgreSQL or SQLite) answered its last "
                     "statement, else 0 (rows then go to the local spool).",
                     *registry_)),
      ledger_spooled_(Reg(BuildGauge(), "llmux_ledger_spooled_rows",
                          "Usage rows in the local spool, not yet replayed to PostgreSQL.",
                          *registry_)),
      ledger_replayed_(Reg(BuildCounter(), "llmux_ledger_replayed_rows_total",
                           "Usage rows replayed from the local spool to PostgreSQL.",
                           *registry_)),
      cluster_up_(Reg(BuildGauge(), "llmux_cluster_store_up",
                      "1 when the cluster store (Redis) answers, 0 while it does not.", *registry_)),
      cluster_replicas_(Reg(BuildGauge(), "llmux_cluster_live_replicas",
                            "Replicas with a live heartbeat in the cluster store, last seen.",
                            *registry_)),
      cluster_fallbacks_(Reg(BuildCounter(), "llmux_cluster_store_fallbacks_total",
                             "Admissions decided locally (local_share) without the cluster store.",
                             *registry_)),
      cluster_refusals_(Reg(BuildCounter(), "llmux_cluster_store_refusals_total",
                            "Requests refused with 503 because the cluster store was down (reject).",
                            *registry_)),
      cluster_errors_(Reg(BuildCounter(), "llmux_cluster_store_errors_total",
                          "Cluster store calls that failed or timed out.", *registry_)),
      planning_queued_(Reg(BuildGauge(), "llmux_planning_queue_depth",
                           "Completion requests waiting for a planning worker (parse, template, "
                           "tokenize), per lane.",
                           *registry_)),
      planning_started_(Reg(BuildCounter(), "llmux_planning_started_total",
                            "Completion requests a planning worker took, per lane.", *registry_)),
      planning_refused_(Reg(BuildCounter(), "llmux_planning_refused_total",
                            "Completion requests refused with 503 server_overloaded because "
                            "their lane's planning queue was full.",
                            *registry_)),
      io_queued_(Reg(BuildGauge(), "llmux_io_queue_depth",
                     "HTTP read/write completions and connection work waiting for an I/O "
                     "thread, per lane of their request.",
                     *registry_)) {
  // The shared pool's engine series exist (at 0) from start-up; other pools' from their first
  // scrape.
  const prometheus::Labels m = {{"model_name", model_}};
  const prometheus::Labels shared = {{"model_name", model_}, {"pool", pool_}};
  for (const EngineSeries& e : engine_series_) {
    if (e.gauge != nullptr) e.gauge->Add(shared);
    if (e.counter != nullptr) e.counter->Add(shared);
  }
  ttft_.Add(m, kTtftBuckets);
  itl_.Add(m, kItlBuckets);
  e2e_.Add(m, kLatencyBuckets);
  queue_time_.Add(m, kLatencyBuckets);
  for (const char* reason : {"stop", "length", "abort"}) {
    success_.Add({{"model_name", model_}, {"finished_reason", reason}});
  }
  reloads_.Add({{"result", "ok"}});
  reloads_.Add({{"result", "rejected"}});
  const prometheus::Labels p = {{"pool", pool_}};
  step_seconds_.Add(p, kStepBuckets);
  pool_busy_.Add(p);
  pool_yielded_.Add(p);
  pool_restarts_.Add(p);
  batch_size_.Add(p, kBatchSizeBuckets);
  batch_tokens_.Add(p, kBatchTokenBuckets);
  for (RejectReason r : kAllReasons) {
    rejections_.Add({{"tenant", std::string(kUnauthenticatedTenant)},
                     {"reason", std::string(RejectReasonName(r))}});
  }
}

void PrometheusMetrics::SetTenants(const std::vector<std::string>& tenants) {
  {
    WriterLock lock(tenants_mutex_);
    tenants_.insert(tenants.begin(), tenants.end());
  }
  // Counters of every configured tenant exist from the start (at 0), so rate() and exact
  // queries work before its first request.
  for (const std::string& t : tenants) {
    for (RejectReason r : kAllReasons) {
      rejections_.Add({{"tenant", t}, {"reason", std::string(RejectReasonName(r))}});
    }
    for (auto* f : {&t_prompt_, &t_cached_, &t_completion_, &t_preemptions_})
      f->Add({{"tenant", t}});
  }
}

std::string PrometheusMetrics::Label(std::string_view tenant) const {
  ReaderLock lock(tenants_mutex_);
  return tenants_.count(tenant) ? std::string(tenant) : std::string(kUnauthenticatedTenant);
}

void PrometheusMetrics::ObserveRequest(const RequestObservation& r) {
  const std::string tenant = Label(r.tenant);
  const prometheus::Labels m = {{"model_name", model_}};
  const prometheus::Labels tl = {{"tenant", tenant}, {"lane", r.lane}};
  const prometheus::Labels t = {{"tenant", tenant}};
  requests_.Add({{"tenant", tenant}, {"lane", r.lane}, {"outcome", r.outcome}}).Increment();
  t_prompt_.Add(t).Increment(static_cast<double>(r.prompt_tokens));
  t_cached_.Add(t).Increment(static_cast<double>(r.cached_tokens));
  t_completion_.Add(t).Increment(static_cast<double>(r.completion_tokens));
  t_preemptions_.Add(t).Increment(r.preemptions);
  for (const std::string& reason : r.finish_reasons) {
    success_.Add({{"model_name", model_}, {"finished_reason", reason}}).Increment();
  }
  queue_time_.Add(m, kLatencyBuckets).Observe(r.queue_seconds);
  t_queue_.Add(tl, kLatencyBuckets).Observe(r.queue_seconds);
  e2e_.Add(m, kLatencyBuckets).Observe(r.e2e_seconds);
  t_e2e_.Add(tl, kLatencyBuckets).Observe(r.e2e_seconds);
  if (r.first_token_seconds) {
    ttft_.Add(m, kTtftBuckets).Observe(*r.first_token_seconds);
    t_ttft_.Add(tl, kTtftBuckets).Observe(*r.first_token_seconds);
  }
}

void PrometheusMetrics::ObserveInterTokenLatency(std::string_view tenant, std::string_view lane,
                                                 double seconds) {
  itl_.Add({{"model_name", model_}}, kItlBuckets).Observe(seconds);
  t_itl_.Add({{"tenant", Label(tenant)}, {"lane", std::string(lane)}}, kItlBuckets)
      .Observe(seconds);
}

void PrometheusMetrics::ObservePhases(const RequestPhases& p) {
  const std::string tenant = Label(p.tenant);
  for (const auto& [phase, seconds] : p.phases) {
    t_phase_.Add({{"tenant", tenant}, {"lane", p.lane}, {"phase", std::string(phase)}}, kPhaseBuckets)
        .Observe(seconds);
  }
  if (p.full_path_ttft_seconds) {
    t_full_ttft_.Add({{"tenant", tenant}, {"lane", p.lane}}, kPhaseBuckets)
        .Observe(*p.full_path_ttft_seconds);
  }
}

void PrometheusMetrics::CountRejection(std::string_view tenant, RejectReason reason) {
  rejections_.Add({{"tenant", Label(tenant)}, {"reason", std::string(RejectReasonName(reason))}})
      .Increment();
}

void PrometheusMetrics::CountPolicyReload(bool ok) {
  reloads_.Add({{"result", ok ? "ok" : "rejected"}}).Increment();
}

void PrometheusMetrics::Advance(Counter& counter, int64_t now, int64_t* last) {
  if (now > *last) counter.Increment(static_cast<double>(now - *last));
  *last = std::max(*last, now);
}

void PrometheusMetrics::AdvanceResettable(Counter& counter, int64_t now, int64_t* last) {
  if (now < *last) *last = 0;
  Advance(counter, now, last);
}

void PrometheusMetrics::AdvanceResettable(Counter& counter, double now, double* last) {
  if (now < *last) *last = 0;
  if (now > *last) counter.Increment(now - *last);
  *last = now;
}

void PrometheusMetrics::AdvanceHistogram(Histogram& h, const StepHistogram& now,
                                         StepHistogram* last) {
  if (now.counts.empty()) return;
  bool reset = last->counts.size() != now.counts.size();
  for (size_t i = 0; !reset && i < now.counts.size(); ++i) reset = now.counts[i] < last->counts[i];
  if (reset) *last = StepHistogram{std::vector<int64_t>(now.counts.size(), 0), 0};
  std::vector<double> increments(now.counts.size());
  bool any = false;
  for (size_t i = 0; i < now.counts.size(); ++i) {
    increments[i] = static_cast<double>(now.counts[i] - last->counts[i]);
    any = any || increments[i] > 0;
  }
  if (any) h.ObserveMultiple(increments, now.sum - last->sum);
  *last = now;
}

std::string PrometheusMetrics::Render(const MetricsSnapshot& s) {
  MutexLock lock(render_mutex_);
  for (const PoolEngineStats& p : s.pools) {
    const prometheus::Labels l = {{"model_name", p.model_name}, {"pool", p.pool}};
    EngineStats& last = last_[p.pool];
    size_t i = 0;
    ForEachEngineStat([&](const EngineStatField&, auto member) {
      const EngineSeries& e = engine_series_[i++];
      if (e.gauge != nullptr) e.gauge->Add(l).Set(static_cast<double>(p.stats.*member));
      if constexpr (std::is_same_v<std::remove_cvref_t<decltype(p.stats.*member)>, int64_t>) {
        if (e.counter != nullptr) {
          AdvanceResettable(e.counter->Add(l), p.stats.*member, &(last.*member));
        }
      }
    });
    AdvanceResettable(pool_busy_.Add({{"pool", p.pool}}), p.stats.busy_seconds,
                      &last.busy_seconds);
    AdvanceResettable(pool_yielded_.Add({{"pool", p.pool}}), p.stats.yielded_seconds,
                      &last.yielded_seconds);
    const prometheus::Labels pool = {{"pool", p.pool}};
    pool_up_.Add(pool).Set(p.up ? 1 : 0);
    AdvanceResettable(pool_restarts_.Add(pool), static_cast<double>(p.restarts),
                      &last_restarts_[p.pool]);
    AdvanceHistogram(step_seconds_.Add(pool, kStepBuckets), p.stats.step_seconds,
                     &last.step_seconds);
    AdvanceHistogram(batch_size_.Add(pool, kBatchSizeBuckets), p.stats.batch_size,
                     &last.batch_size);
    AdvanceHistogram(batch_tokens_.Add(pool, kBatchTokenBuckets), p.stats.batch_tokens,
                     &last.batch_tokens);
  }
  for (const MetricsSnapshot::Tenant& t : s.tenants) {
    const prometheus::Labels l = {{"tenant", Label(t.name)}};
    t_budget_.Add(l).Set(static_cast<double>(t.inflight_budget));
    t_queued_.Add(l).Set(static_cast<double>(t.queued));
    const TenantStats ts = t.stats.value_or(TenantStats{});
    t_inflight_.Add(l).Set(static_cast<double>(ts.inflight_tokens));
    t_high_water_.Add(l).Set(static_cast<double>(ts.inflight_high_water));
    t_waiting_.Add(l).Set(ts.waiting);
    t_running_.Add(l).Set(ts.running);
    t_blocks_.Add(l).Set(ts.blocks_in_use);
    t_reserved_.Add(l).Set(ts.reserved_blocks);
    // Exists at 0 from the first scrape, so rate() works before the tenant's first step.
    Counter& engine = t_engine_.Add({{"tenant", Label(t.name)}, {"pool", t.pool}});
    if (t.stats) {
      AdvanceResettable(engine, ts.engine_seconds, &last_tenant_engine_[{t.name, t.pool}]);
    }
  }
  if (s.ledger) {
    ledger_up_.Add({}).Set(s.ledger->store_up ? 1 : 0);
    ledger_spooled_.Add({}).Set(static_cast<double>(s.ledger->spooled_rows));
    Advance(ledger_replayed_.Add({}), s.ledger->replayed_rows, &last_replayed_);
  }
  if (s.cluster.enabled) {
    cluster_up_.Add({}).Set(s.cluster.up ? 1 : 0);
    cluster_replicas_.Add({}).Set(static_cast<double>(s.cluster.live_replicas));
    Advance(cluster_fallbacks_.Add({}), s.cluster.local_decisions, &last_cluster_.local_decisions);
    Advance(cluster_refusals_.Add({}), s.cluster.unavailable_refusals,
            &last_cluster_.unavailable_refusals);
    Advance(cluster_errors_.Add({}), s.cluster.errors, &last_cluster_.errors);
  }
  for (const MetricsSnapshot::PlanningLane& p : s.planning) {
    const prometheus::Labels l = {{"lane", p.lane}};
    MetricsSnapshot::PlanningLane& last = last_planning_[p.lane];
    planning_queued_.Add(l).Set(static_cast<double>(p.queued));
    Advance(planning_started_.Add(l), p.started, &last.started);
    Advance(planning_refused_.Add(l), p.refused, &last.refused);
  }
  for (const MetricsSnapshot::IoLane& io : s.io) {
    io_queued_.Add({{"lane", io.lane}}).Set(static_cast<double>(io.queued));
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kAuth:
      return "auth";
    case RejectReason::kInvalid:
      return "invalid";
    case RejectReason::kRateLimit:
      return "rate_limit";
    case RejectReason::kQuota:
      return "quota";
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kBudget:
      return "budget";
    case RejectReason::kQueueTimeout:
      return "queue_timeout";
    case RejectReason::kUnavailable:
      return "unavailable";
  }
  return "invalid";
}

std::unique_ptr<Metrics> Metrics::Create(std::string model_name, std::string pool) {
  return std::make_unique<PrometheusMetrics>(std::move(model_name), std::move(pool));
}

}  // namespace llmux

namespace llmux {
namespace {

// A label value in the text format: backslash, double quote and newline escaped.
std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void AppendDouble(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  out += buf;
}

}  // namespace

void PrometheusMetrics::SetCacheConfig(const CacheConfigInfo& info) {
  cache_info_ = info;
  cache_info_set_.store(true);
  cache_config_
      .Add({{"block_size", std::to_string(info.block_size)},
            {"num_gpu_blocks", std::to_string(info.num_gpu_blocks)},
            {"enable_prefix_caching", info.enable_prefix_caching ? "True" : "False"}})
      .Set(1);
}

std::string PrometheusMetrics::RenderEngine(const std::vector<PoolEngineStats>& pools) const {
  // NOTE: written by hand rather than through a second registry: a few appends per scrape,
  // and the values come straight from EngineStats (the counters are cumulative there).
  std::string out;
  out.reserve(1024 + 1024 * pools.size());
  std::vector<std::string> labels;  // per pool, as the registry renders them (names sorted)
  for (const PoolEngineStats& p : pools) {
    labels.push_back("{model_name=\"" + EscapeLabelValue(p.model_name) + "\",pool=\"" +
                     EscapeLabelValue(p.pool) + "\"} ");
  }
  ForEachEngineStat([&](const EngineStatField& f, auto member) {
    if (f.scope != EngineStatField::kRouter || f.kind == EngineStatField::kInfo) return;
    out += "# HELP ";
    out += f.metric;
    out += ' ';
    out += f.help;
    out += "\n# TYPE ";
    out += f.metric;
    out += f.kind == EngineStatField::kGauge ? " gauge\n" : " counter\n";
    for (size_t i = 0; i < pools.size(); ++i) {
      out += f.metric;
      out += labels[i];
      AppendDouble(out, static_cast<double>(pools[i].stats.*member));
      out += '\n';
    }
  });
  if (cache_info_set_.load()) {
    out += "# HELP vllm:cache_config_info Information of the KV cache configuration (value 1; "
           "the labels).\n# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{block_size=\"";
    out += std::to_string(cache_info_.block_size);
    out += "\",enable_prefix_caching=\"";
    out += cache_info_.enable_prefix_caching ? "True" : "False";
    out += "\",num_gpu_blocks=\"";
    out += std::to_string(cache_info_.num_gpu_blocks);
    out += "\"} 1\n";
  }
  return out;
}

}  // namespace llmux
