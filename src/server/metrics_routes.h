// GET /metrics: the Prometheus exposition of the engine's and every tenant's figures.
// An operator route: the caller (ApiService or the metrics listener) decides who may read it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "llmux/engine.h"
#include "llmux/metrics.h"
#include "llmux/tenant_policy.h"
#include "llmux/usage_ledger.h"
#include "server/http_types.h"

namespace llmux::server {

// Queued (submitted, not started) requests of a tenant, from the HTTP layer's count.
using QueuedCountFn = std::function<int64_t(const std::string& tenant)>;

// The engine serving a tenant (its pool's); nullptr when the tenant's pool is unknown.
using TenantEngineFn = std::function<const Engine*(const TenantConfig& tenant)>;

// The scrape-time snapshot: `pools` (every pool's engine stats), and for every tenant of
// `policy` its budget, queue count and the stats of the engine `engine_of` names for it; the
// ledger's health when `ledger` is not null.
MetricsSnapshot BuildMetricsSnapshot(std::vector<PoolEngineStats> pools,
                                     const TenantEngineFn& engine_of, const TenantPolicy& policy,
                                     const QueuedCountFn& queued,
                                     const UsageLedger* ledger = nullptr);

// Every pool's engine stats, read now (cheap: one copy under each engine's stats mutex).
using PoolStatsFn = std::function<std::vector<PoolEngineStats>()>;

// Builds the full snapshot (only called for the full exposition).
using SnapshotFn = std::function<MetricsSnapshot()>;

// Responds 200 with the text exposition (version 0.0.4): everything, or with `?scope=engine`
// only the router-facing engine series (Metrics::RenderEngine; no tenant is looked at).
// 405 for methods other than GET/HEAD; 400 naming `scope` for another scope value.
void ServeMetrics(const HttpRequest& request, Metrics& metrics, const PoolStatsFn& pool_stats,
                  const SnapshotFn& snapshot, ResponseChannel& channel);

}  // namespace llmux::server
