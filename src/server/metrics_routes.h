// GET /metrics: the Prometheus exposition of the engine's and every tenant's figures.
// An operator route: the caller (ApiService or the metrics listener) decides who may read it.
#pragma once

#include <functional>
#include <string>

#include "llmux/engine.h"
#include "llmux/metrics.h"
#include "llmux/tenant_policy.h"
#include "llmux/usage_ledger.h"
#include "server/http_types.h"

namespace llmux::server {

// Queued (submitted, not started) requests of a tenant, from the HTTP layer's count.
using QueuedCountFn = std::function<int64_t(const std::string& tenant)>;

// The scrape-time snapshot: engine stats, and for every tenant of `policy` its budget,
// queue count and engine stats; the ledger's health when `ledger` is not null.
MetricsSnapshot BuildMetricsSnapshot(const Engine& engine, const TenantPolicy& policy,
                                     const QueuedCountFn& queued,
                                     const UsageLedger* ledger = nullptr);

// Builds the full snapshot (only called for the full exposition).
using SnapshotFn = std::function<MetricsSnapshot()>;

// Responds 200 with the text exposition (version 0.0.4): everything, or with `?scope=engine`
// only the router-facing engine series (Metrics::RenderEngine; no tenant is looked at).
// 405 for methods other than GET/HEAD; 400 naming `scope` for another scope value.
void ServeMetrics(const HttpRequest& request, Metrics& metrics, const Engine& engine,
                  const SnapshotFn& snapshot, ResponseChannel& channel);

}  // namespace llmux::server
