#include "server/metrics_routes.h"

#include "server/api_error.h"

namespace llmux::server {

MetricsSnapshot BuildMetricsSnapshot(std::vector<PoolEngineStats> pools,
                                     const TenantEngineFn& engine_of, const TenantPolicy& policy,
                                     const QueuedCountFn& queued, const UsageLedger* ledger) {
  MetricsSnapshot s;
  if (ledger != nullptr) s.ledger = ledger->Health();
  s.pools = std::move(pools);
  for (const auto& [name, t] : policy.tenants) {
    MetricsSnapshot::Tenant entry;
    entry.name = name;
    entry.pool = t.pool;
    entry.inflight_budget = t.max_inflight_tokens;
    entry.queued = queued ? queued(name) : 0;
    if (const Engine* engine = engine_of(t)) entry.stats = engine->GetTenantStats(name);
    s.tenants.push_back(std::move(entry));
  }
  return s;
}

void ServeMetrics(const HttpRequest& request, Metrics& metrics, const PoolStatsFn& pool_stats,
                  const SnapshotFn& snapshot, ResponseChannel& channel) {
  if (request.method != "GET" && request.method != "HEAD") {
    ApiError e = InvalidRequest("use GET /metrics", "", "method_not_allowed");
    e.http_status = 405;
    return SendApiError(channel, e);
  }
  std::string scope = "all";
  for (size_t start = 0; start < request.query.size();) {
    size_t end = request.query.find('&', start);
    if (end == std::string::npos) end = request.query.size();
    const std::string_view pair = std::string_view(request.query).substr(start, end - start);
    if (pair.substr(0, 6) == "scope=") scope = std::string(pair.substr(6));
    start = end + 1;
  }
  constexpr const char* kType = "text/plain; version=0.0.4; charset=utf-8";
  if (scope == "engine") return channel.Respond(200, kType, metrics.RenderEngine(pool_stats()));
  if (scope != "all") {
    return SendApiError(channel, InvalidRequest("scope must be \"engine\" or \"all\", got \"" +
                                                    scope.substr(0, 64) + "\"",
                                                "scope"));
  }
  channel.Respond(200, kType, metrics.Render(snapshot()));
}

}  // namespace llmux::server
