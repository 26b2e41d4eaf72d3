// The HTTP API: routing, authentication, admission (rate limits, queue caps, context length)
// and the OpenAI routes. Handle() is the HttpServer's handler; it runs on I/O threads.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "llmux/chat_template.h"
#include "llmux/config.h"
#include "llmux/engine.h"
#include "llmux/pool.h"
#include "llmux/tenant_policy.h"
#include "llmux/tokenizer.h"
#include "server/auth_throttle.h"
#include "server/completion_call.h"
#include "server/observed_channel.h"
#include "server/server_telemetry.h"
#include "server/http_types.h"
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

  // Routes each tenant to the ServedModel of its pool (TenantConfig::pool); `pool_set` answers
  // GET /admin/pools. Call before serving. Without it every tenant uses `model`.
  void SetPools(std::map<std::string, ServedModel> pools, PoolSet* pool_set);

  // Readiness goes 503 and new work is refused with 503 + Retry-After.
  void StartDraining() { draining_ = true; }
  bool draining() const { return draining_; }
  // Calls in flight (for the drain): a call leaves once its usage row committed.
  int64_t calls_in_flight() const { return calls_in_flight_.load(); }
  // Requests of `tenant` submitted and not yet started. Any thread.
  int64_t queued(const std::string& tenant);

 private:
  void HandleCompletion(ApiKind kind, HttpRequest&& request, const std::string& tenant,
                        std::shared_ptr<const TenantPolicy> policy,
                        std::shared_ptr<ObservedChannel> channel);
  // GET /metrics, /v1/usage, /admin/usage (the caller checked the principal).
  void HandleMetrics(const HttpRequest& request, const TenantPolicy& policy,
                     ResponseChannel& channel);
  void HandleModels(const TenantConfig* tenant, ResponseChannel& channel);
  // GET /admin/pools (admin key).
  void HandlePools(const TenantPolicy& policy, ResponseChannel& channel);
  // The model of the tenant's pool; nullptr when that pool is not served.
  const ServedModel* ServedFor(const TenantConfig& tenant) const;
  void HandleHealth(ResponseChannel& channel);
  // GET /admin/stats: engine and per-tenant figures (admin key).
  void HandleStats(const TenantPolicy& policy, ResponseChannel& channel);
  // Tenant queue accounting: requests submitted and not yet started.
  bool TryEnqueue(const std::string& tenant, int count, int limit);
  void Dequeue(const std::string& tenant, int count);

  const ApiServiceOptions options_;
  const ServedModel model_;
  std::map<std::string, ServedModel> pool_models_;  // set before serving, then read-only
  PoolSet* pool_set_ = nullptr;
  PolicyStore* policies_;
  const Authenticator authenticator_;
  const std::function<Status()> reload_;
  const ServerTelemetry telemetry_;
  TenantRateLimiter rate_limiter_;
  AuthThrottle auth_throttle_;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_engine_id_{1};
  std::atomic<int64_t> calls_in_flight_{0};
  std::mutex queue_mutex_;
  std::map<std::string, int> queued_;  // Guarded by queue_mutex_
  StructuredOutputs structured_outputs_;  // response_format grammars (thread-safe)
};

}  // namespace llmux::server
