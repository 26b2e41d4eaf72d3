// Prometheus metrics: vLLM-compatible `vllm:*` series (labelled model_name) and per-tenant
// `llmux_*` series. Every series is listed in docs/metrics.md. No prometheus types here: the
// implementation (src/telemetry/metrics.cpp) uses prometheus-cpp.
//
// Cardinality is bounded: a `tenant` label only carries names given to SetTenants (the tenants
// of the policy file); anything else is counted under kUnauthenticatedTenant.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmux/engine.h"
#include "llmux/scheduler.h"
#include "llmux/usage_ledger.h"

namespace llmux {

inline constexpr std::string_view kUnauthenticatedTenant = "_unauthenticated";

// Why a request was refused before or by the engine (llmux_rejections_total{reason}).
enum class RejectReason {
  kAuth,          // 401 / 403
  kInvalid,       // 400 / 404 / 405 / 413: a malformed or unsupported request
  kRateLimit,     // the tenant's rate limit
  kQuota,         // the tenant's tokens_per_day / spend_per_month
  kQueueFull,     // the tenant's max_queued_requests
  kBudget,        // can never fit the tenant's max_inflight_tokens or the KV pool
  kQueueTimeout,  // waited longer than max_queue_wait
  kUnavailable,   // draining, engine inbox full or stopped
};
std::string_view RejectReasonName(RejectReason reason);

// One finished HTTP completion call that reached the engine.
struct RequestObservation {
  std::string tenant;
  std::string lane;
  std::string outcome;  // "ok" | "aborted" | "error"
  // One per choice that finished: "stop" | "length" | "abort" (vllm:request_success_total).
  std::vector<std::string> finish_reasons;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
  int32_t preemptions = 0;
  double queue_seconds = 0;
  std::optional<double> first_token_seconds;  // nullopt when no token was produced
  double e2e_seconds = 0;
};

// Where one HTTP completion call's time went on its way to the first byte of its answer
// (llmux_request_phase_seconds, llmux_full_path_time_to_first_token_seconds).
struct RequestPhases {
  std::string tenant;
  std::string lane;
  // In path order: phase name (a fixed set, docs/metrics.md) and its seconds. Only the phases
  // the call reached (a refused call stops early).
  std::vector<std::pair<std::string_view, double>> phases;
  // Request read -> first byte of the answer written; nullopt when no token was written.
  std::optional<double> full_path_ttft_seconds;
};

// One pool's engine figures, read at scrape time.
struct PoolEngineStats {
  std::string pool;        // the `pool` label
  std::string model_name;  // the `model_name` label: the model the pool serves
  EngineStats stats;
  // llmux_pool_up: ready and no sticky device fault (what /health checks per pool).
  bool up = true;
  // llmux_pool_worker_restarts_total: workers started after the first (process pools).
  int64_t restarts = 0;
};

// Figures read at scrape time.
struct MetricsSnapshot {
  std::vector<PoolEngineStats> pools;  // every pool's engine (the vllm:* engine series)
  struct Tenant {
    std::string name;
    std::string pool;                  // the tenant's pool (llmux_tenant_engine_seconds_total)
    int64_t inflight_budget = 0;       // max_inflight_tokens
    int64_t queued = 0;                // submitted, not yet started (the HTTP layer's count)
    std::optional<TenantStats> stats;  // nullopt before the engine knows the tenant
  };
  std::vector<Tenant> tenants;
  std::optional<LedgerHealth> ledger;  // nullopt: no ledger (llmux_ledger_* not exported)
  // Cluster mode (llmux_cluster_* series; absent when `enabled` is false).
  struct ClusterStore {
    bool enabled = false;
    bool up = false;
    int64_t live_replicas = 0;
    int64_t local_decisions = 0;   // admissions decided without the store (local_share)
    int64_t unavailable_refusals = 0;  // refused with 503 (reject)
    int64_t errors = 0;            // store calls failed or timed out
  };
  ClusterStore cluster;
  // The front door's planning pool (llmux_planning_*), per lane, highest first.
  struct PlanningLane {
    std::string lane;
    int64_t queued = 0;   // requests waiting for a planning worker now
    int64_t started = 0;  // requests a worker took, since start
    int64_t refused = 0;  // refused with 503 because the lane's queue was full, since start
  };
  std::vector<PlanningLane> planning;
  // The HTTP server's lane-ordered run queue (llmux_io_queue_depth), per lane, highest first.
  struct IoLane {
    std::string lane;
    int64_t queued = 0;  // read/write completions and strand work waiting for an I/O thread now
  };
  std::vector<IoLane> io;
};

// The KV cache's shape, exported as vLLM's `vllm:cache_config_info` (a gauge of 1 whose labels
// carry the values, as routers such as llm-d's read them).
struct CacheConfigInfo {
  int32_t block_size = 0;
  int64_t num_gpu_blocks = 0;  // blocks in the pool (device or host memory alike)
  bool enable_prefix_caching = true;
};

class Metrics {
 public:
  virtual ~Metrics() = default;
  // `model_name` labels the request series (vllm:* histograms, request_success) and
  // cache_config_info; `pool` is the pool whose busy time and step histograms exist (at 0)
  // from the first scrape. The engine series, the busy time and the step histograms of every
  // pool take their labels and figures from each MetricsSnapshot::pools entry.
  static std::unique_ptr<Metrics> Create(std::string model_name, std::string pool = "shared");

  // The tenants that may appear as label values (the policy's). Any thread.
  virtual void SetTenants(const std::vector<std::string>& tenants) = 0;
  // Any thread (I/O threads, the ledger's writer).
  virtual void ObserveRequest(const RequestObservation& request) = 0;
  // One gap between consecutive tokens of a request. Any thread (the engine's sink).
  virtual void ObserveInterTokenLatency(std::string_view tenant, std::string_view lane,
                                        double seconds) = 0;
  // One call's phases, once its first byte is written (or it ended without one). Any thread.
  virtual void ObservePhases(const RequestPhases& phases) = 0;
  virtual void CountRejection(std::string_view tenant, RejectReason reason) = 0;
  virtual void CountPolicyReload(bool ok) = 0;
  // Set once at start-up (before serving). Any thread.
  virtual void SetCacheConfig(const CacheConfigInfo& info) = 0;
  // Updates gauges and the engine's cumulative counters from `snapshot` (one series per pool,
  // labelled model_name and pool) and returns the text exposition format 0.0.4. Any thread
  // (serialized internally).
  virtual std::string Render(const MetricsSnapshot& snapshot) = 0;
  // The router-facing subset (`/metrics?scope=engine`): the engine's vllm:* gauges and
  // counters and vllm:cache_config_info, nothing per tenant and no histograms, so a scrape
  // costs a few microseconds whatever the number of tenants. Same names, types, labels and
  // values as in Render(). Any thread; takes no lock Render() holds.
  virtual std::string RenderEngine(const std::vector<PoolEngineStats>& pools) const = 0;
};

}  // namespace llmux
