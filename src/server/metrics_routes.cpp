#include "server/metrics_routes.h"

#include "server/api_error.h"

namespace llmux::server {

MetricsSnapshot BuildMetricsSnapshot(const Engine& engine, const TenantPolicy& policy,
                                     const QueuedCountFn& queued, const UsageLedger* ledger) {
  MetricsSnapshot s;
  if (ledger != nullptr) s.ledger = ledger->Health();
  s.engine = engine.Stats();
  for (const auto& [name, t] : policy.tenants) {
    MetricsSnapshot::Tenant entry;
    entry.name = name;
    entry.inflight_budget = t.max_inflight_tokens;
    entry.queued = queued ? queued(name) : 0;
    entry.stats = engine.GetTenantStats(name);
    s.tenants.push_back(std::move(entry));
  }
  return s;
}

void ServeMetrics(const HttpRequest& request, Metrics& metrics, const MetricsSnapshot& snapshot,
                  ResponseChannel& channel) {
  if (request.method != "GET" && request.method != "HEAD") {
    ApiError e = InvalidRequest("use GET /metrics", "", "method_not_allowed");
    e.http_status = 405;
    return SendApiError(channel, e);
  }
  channel.Respond(200, "text/plain; version=0.0.4; charset=utf-8", metrics.Render(snapshot));
}

}  // namespace llmux::server
