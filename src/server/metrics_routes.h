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

// Responds 200 with the text exposition (version 0.0.4); 405 for methods other than GET.
void ServeMetrics(const HttpRequest& request, Metrics& metrics, const MetricsSnapshot& snapshot,
                  ResponseChannel& channel);

}  // namespace llmux::server
