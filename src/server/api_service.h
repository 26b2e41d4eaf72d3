// The HTTP API: routing, authentication and the routes. Handle() is the HttpServer's handler;
// it runs on I/O threads (the connection's strand). The completion routes
// (completion_route.cpp) plan each call on a lane-ordered pool, admit it through the tenancy
// module's Admission and submit it to the tenant's pool.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>

#include "llmux/admission.h"
#include "llmux/chat_template.h"
#include "llmux/config.h"
#include "llmux/engine.h"
#include "llmux/pool.h"
#include "llmux/tenant_policy.h"
#include "llmux/tokenizer.h"
#include "server/api_error.h"
#include "server/auth_throttle.h"
#include "server/client_address.h"
#include "server/completion_call.h"
#include "server/observed_channel.h"
#include "server/server_telemetry.h"
#include "server/http_types.h"
#include "server/lane_pool.h"
#include "server/response_format.h"
#include "server/openai_request.h"

namespace llmux::server {

struct ServedModel {
  std::string name;
  int32_t max_model_len = 0;
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;
  Engine* engine = nullptr;
  Pool* pool = nullptr;  // the pool serving it (for x-llmux-pool / x-llmux-pid); may be null
};

struct ApiServiceOptions {
  RequestLimits limits;
  Millis health_stall_timeout{30000};
  Millis max_queue_wait{30000};  // server-wide cap; a tenant's own may be lower
  int max_auth_failures_per_minute = 20;  // per client address; 0 = no throttle
  // server.trusted_proxies / forwarded_header: who the client of a request is.
  std::vector<IpNetwork> trusted_proxies;
  ServerSection::ForwardedHeader forwarded_header = ServerSection::ForwardedHeader::kXForwardedFor;
  // server.tenant_header, lower-cased; "" = off.
  std::string tenant_header;
  // server.planning_threads / planning_queue: the planning pool's workers and per-lane bound.
  int planning_threads = 1;
  int planning_queue = 256;
  // server.planning_oldest_every: every Nth planning pick takes the oldest call of any lane.
  int planning_oldest_every = 8;
};

class ApiService {
 public:
  // `policies`, the model's members and the authenticator's keys must outlive the service.
  // `reload` runs POST /admin/reload (returns the reload's status). `telemetry`'s services
  // (each optional) must outlive the service.
  ApiService(ApiServiceOptions options, ServedModel model, PolicyStore* policies,
             Authenticator authenticator, std::function<Status()> reload,
             ServerTelemetry telemetry = {});

  void Handle(HttpRequest&& request, std::shared_ptr<ResponseChannel> channel);

  // The I/O lane of a request from its headers alone (HttpServerOptions::lane_of): the lane of
  // the tenant its key (or trusted tenant header) names; 0 for the admin key and for /health
  // and /ready; the last lane when it names nobody. Any thread; costs one key hash, as
  // authentication does.
  int IoLane(const HttpRequest& headers_only) const;

  // Routes each tenant to the ServedModel of its pool (TenantConfig::pool); `pool_set` answers
  // GET /admin/pools. Call before serving. Without it every tenant uses `model`.
  void SetPools(std::map<std::string, ServedModel> pools, PoolSet* pool_set);

  // Decides admission (rate limits, queue caps, quotas, fleet budgets) with `admission` instead
  // of the built-in local one (NewLocalAdmission on the telemetry's quota tracker). Call before
  // serving; `admission` must outlive the service.
  void SetAdmission(Admission* admission) { admission_ = admission; }

  // The HTTP server's I/O queue depths per lane (HttpServer::IoQueueDepths), for /metrics. Call
  // once the server is started, before it serves; `depths` must stay callable while it does.
  void SetIoQueueDepths(std::function<std::vector<int64_t>()> depths) {
    io_queue_depths_ = std::move(depths);
  }

  // The drain, in two steps (daemon.cpp times them). StartDraining: /ready answers 503 at
  // once so balancers stop sending; requests that still arrive are served. RefuseNewWork (after
  // server.drain_grace): new completions get 503 `draining` with Retry-After. Any thread.
  void StartDraining() { draining_ = true; }
  void RefuseNewWork() { refusing_ = true; }
  bool draining() const { return draining_; }
  // The last step of the drain, before the HTTP server shuts down: lets the planning pool
  // answer the calls it still holds and joins its threads; completions then get 503. Any
  // thread but a planning one.
  void StopPlanning() { planning_.Shutdown(); }
  // Calls in flight (for the drain): a call leaves once its usage row committed.
  int64_t calls_in_flight() const { return calls_in_flight_.load(); }
  // Requests of `tenant` submitted and not yet started. Any thread.
  int64_t queued(const std::string& tenant);
  // The /metrics snapshot under `policy`: every pool's engine, each tenant's figures from its
  // pool's engine, admission figures included.
  MetricsSnapshot BuildSnapshot(const TenantPolicy& policy);
  // Every pool's engine stats now (the shared pool alone before SetPools). Any thread.
  std::vector<PoolEngineStats> PoolEngineStatsNow() const;
  // The planning pool's queues, by lane index. Any thread.
  std::vector<LanePoolLaneStats> PlanningStats() const { return planning_.Stats(); }

 private:
  struct PlannedCall;  // completion_route.cpp

  // ---- the completion routes (completion_route.cpp) ----
  // `responses`: POST /v1/responses (a chat request underneath; kind is kChat). Strand: refuses
  // early from the headers, else queues PlanCall on the planning pool in the tenant's lane
  // (503 server_overloaded when that lane's queue is full).
  void HandleCompletion(ApiKind kind, HttpRequest&& request, const std::string& tenant,
                        std::shared_ptr<const TenantPolicy> policy,
                        std::shared_ptr<ObservedChannel> channel, bool responses = false);
  // Planning pool: parses `body` into `call` (tools, service tier, grammar, prompts tokenized,
  // context checked). The error to answer with, or nullopt when `call` is ready for ServeCall.
  std::optional<ApiError> PlanCall(PlannedCall& call, const std::string& body);
  // Strand: admit -> submit (the CompletionCall then streams on the strand).
  void ServeCall(PlannedCall& call);
  // The call's hold on its tenant's admission; null after answering a refusal (or the drain).
  std::shared_ptr<AdmittedCall> AdmitCall(PlannedCall& call);
  // Starts the call (accounting, CompletionCall) and submits every choice to the engine.
  void SubmitCall(PlannedCall& call, std::shared_ptr<AdmittedCall> admitted);
  // GET /metrics, /v1/usage, /admin/usage (the caller checked the principal).
  void HandleMetrics(const HttpRequest& request, const TenantPolicy& policy,
                     ResponseChannel& channel);
  // GET /v1/models (`id` empty) or GET /v1/models/{id} (404 model_not_found when the tenant
  // cannot use it).
  void HandleModels(const TenantConfig* tenant, const std::string& id, ResponseChannel& channel);
  // GET /admin/pools (admin key).
  void HandlePools(const TenantPolicy& policy, ResponseChannel& channel);
  // The model of the tenant's pool; nullptr when that pool is not served.
  const ServedModel* ServedFor(const TenantConfig& tenant) const;
  void HandleHealth(ResponseChannel& channel);
  void HandleReady(ResponseChannel& channel);
  // Every pool's liveness: {"<pool>": {state, steps, running, waiting, down_ms[, problem]}}.
  // Sets *problem to the first failing pool's reason (an engine with work that has not
  // stepped for health_stall_timeout, or a pool not ready for longer than its max_down).
  nlohmann::json PoolHealth(std::string* problem) const;
  // The caller's principal: from server.tenant_header when the peer is a trusted proxy and
  // sent it, otherwise from the API key. Unauthenticated when the header comes from an
  // untrusted peer, names an unknown tenant, or the key is wrong.
  StatusOr<Principal> Authenticate(const HttpRequest& request, bool peer_trusted,
                                   const TenantPolicy& policy) const;
  // GET /admin/stats: engine and per-tenant figures (admin key).
  void HandleStats(const TenantPolicy& policy, ResponseChannel& channel);
  // The engine of the tenant's pool; nullptr when that pool is not served.
  Engine* EngineOf(const TenantConfig& tenant) const;

  const ApiServiceOptions options_;
  const ServedModel model_;
  std::map<std::string, ServedModel> pool_models_;  // set before serving, then read-only
  PoolSet* pool_set_ = nullptr;
  PolicyStore* policies_;
  const Authenticator authenticator_;
  const std::function<Status()> reload_;
  const ServerTelemetry telemetry_;
  const std::unique_ptr<Admission> local_admission_;
  Admission* admission_;  // local_admission_ unless SetAdmission
  AuthThrottle auth_throttle_;
  const ClientAddressResolver client_resolver_;
  const int64_t created_unix_;  // the models' `created`: when the service started
  std::atomic<bool> draining_{false};
  std::atomic<bool> refusing_{false};
  std::atomic<uint64_t> next_engine_id_{1};
  std::atomic<int64_t> calls_in_flight_{0};
  StructuredOutputs structured_outputs_;  // response_format grammars (thread-safe)
  // Last: destroyed first, so its workers (which use the members above) finish before them.
  LanePool planning_;
  std::function<std::vector<int64_t>()> io_queue_depths_;
};

}  // namespace llmux::server
