#include "server/api_service.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/capacity_billing.h"
#include "server/metrics_routes.h"
#include "server/service_tier.h"
#include "server/usage_routes.h"

namespace llmux::server {
namespace {

using json = nlohmann::json;

void RespondJson(ResponseChannel& channel, int status, const json& body) {
  channel.Respond(status, "application/json", body.dump());
}

// Every EngineStats field under its own name (/admin/stats).
json StatsJson(const EngineStats& s) {
  json j = json::object();
  ForEachEngineStat([&](const EngineStatField& f, auto member) { j[f.name] = s.*member; });
  return j;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// GET /admin/pools `gemm`: the pool's GEMM mode and what each weight shape runs
// (docs/isolation.md: "invariant" pins one kernel per shape for every M; "fast" picks per M).
json GemmJson(bool batch_invariant, const EngineStats& stats) {
  return {{"mode", batch_invariant ? "invariant" : "fast"},
          {"shapes", GemmChoicesJson(stats.gemm_choices)}};
}

}  // namespace

ApiService::ApiService(ApiServiceOptions options, ServedModel model, PolicyStore* policies,
                       Authenticator authenticator, std::function<Status()> reload,
                       ServerTelemetry telemetry)
    : options_(std::move(options)),
      model_(std::move(model)),
      policies_(policies),
      authenticator_(std::move(authenticator)),
      reload_(std::move(reload)),
      telemetry_(telemetry),
      local_admission_(NewLocalAdmission([] { return std::chrono::steady_clock::now(); },
                                         telemetry_.quota)),
      admission_(local_admission_.get()),
      auth_throttle_(options_.max_auth_failures_per_minute, std::chrono::seconds(60)),
      client_resolver_(options_.trusted_proxies, options_.forwarded_header),
      created_unix_(NowUnixMs() / 1000),
      planning_(LanePoolOptions{static_cast<int>(policies_->Current()->lanes.size()),
                                options_.planning_threads, options_.planning_queue,
                                options_.planning_oldest_every, "llmux-plan"}) {}

void ApiService::SetPools(std::map<std::string, ServedModel> pools, PoolSet* pool_set) {
  pool_models_ = std::move(pools);
  pool_set_ = pool_set;
}

const ServedModel* ApiService::ServedFor(const TenantConfig& tenant) const {
  if (pool_models_.empty()) return tenant.pool == "shared" ? &model_ : nullptr;
  auto it = pool_models_.find(tenant.pool);
  return it == pool_models_.end() ? nullptr : &it->second;
}

int64_t ApiService::queued(const std::string& tenant) { return admission_->Queued(tenant); }

void ApiService::HandleMetrics(const HttpRequest& req, const TenantPolicy& policy,
                               ResponseChannel& channel) {
  if (telemetry_.metrics == nullptr) {
    return SendApiError(channel, ApiErrorFromStatus(NotFound("metrics are off")));
  }
  ServeMetrics(
      req, *telemetry_.metrics, [this] { return PoolEngineStatsNow(); },
      [&] { return BuildSnapshot(policy); }, channel);
}

std::vector<PoolEngineStats> ApiService::PoolEngineStatsNow() const {
  std::vector<PoolEngineStats> out;
  if (pool_set_ == nullptr) {
    EngineStats stats = model_.engine->Stats();
    const bool up = stats.device_fault.empty();
    out.push_back({"shared", model_.name, std::move(stats), up, 0});
    return out;
  }
  for (Pool* p : pool_set_->pools()) {
    PoolStatus d = p->Describe();
    const bool up = d.state == PoolState::kReady && d.stats.device_fault.empty();
    out.push_back({p->name(), p->model_name(), std::move(d.stats), up, d.restarts});
  }
  return out;
}

MetricsSnapshot ApiService::BuildSnapshot(const TenantPolicy& policy) {
  MetricsSnapshot s = BuildMetricsSnapshot(
      PoolEngineStatsNow(), [this](const TenantConfig& t) { return EngineOf(t); }, policy,
      [this](const std::string& t) { return queued(t); }, telemetry_.ledger);
  const AdmissionStats a = admission_->Stats();
  s.cluster = {a.shared_store,  a.store_up,   a.live_replicas, a.local_decisions,
               a.store_unavailable_refusals, a.store_errors};
  const std::vector<LanePoolLaneStats> planning = planning_.Stats();
  for (size_t l = 0; l < planning.size() && l < policy.lanes.size(); ++l) {
    s.planning.push_back(
        {policy.lanes[l].name, planning[l].queued, planning[l].started, planning[l].refused});
  }
  if (io_queue_depths_) {
    const std::vector<int64_t> io = io_queue_depths_();
    for (size_t l = 0; l < io.size() && l < policy.lanes.size(); ++l) {
      s.io.push_back({policy.lanes[l].name, io[l]});
    }
  }
  return s;
}

StatusOr<Principal> ApiService::Authenticate(const HttpRequest& req, bool peer_trusted,
                                             const TenantPolicy& policy) const {
  if (!options_.tenant_header.empty()) {
    auto it = req.headers.find(options_.tenant_header);
    if (it != req.headers.end()) {
      if (!peer_trusted) {
        return Status(StatusCode::kUnauthenticated,
                      "the " + options_.tenant_header +
                          " header is accepted only from a trusted proxy (server.trusted_proxies)");
      }
      if (policy.Find(it->second) == nullptr) {
        return Status(StatusCode::kUnauthenticated,
                      "the " + options_.tenant_header + " header names no known tenant");
      }
      return Principal{Principal::Kind::kTenant, it->second};
    }
  }
  return authenticator_.Authenticate(req.Header("authorization"), policy);
}

int ApiService::IoLane(const HttpRequest& req) const {
  // NOTE: a balancer's probes carry no key; answered late under a flood they would take the
  // replica out of rotation, so they go first (they cost a few microseconds).
  if (req.path == "/health" || req.path == "/ready") return 0;
  const std::shared_ptr<const TenantPolicy> policy = policies_->Current();
  const int last = std::max<int>(1, static_cast<int>(policy->lanes.size())) - 1;
  const ClientAddress client = client_resolver_.Resolve(req.peer_address, req);
  const StatusOr<Principal> principal = Authenticate(req, client.peer_trusted, *policy);
  if (!principal.ok()) return last;
  if (principal->kind == Principal::Kind::kAdmin) return 0;
  const TenantConfig* tenant = policy->Find(principal->tenant);
  if (tenant == nullptr) return last;
  // A tier the tenant may use, announced in the header, orders its I/O as it orders planning.
  auto tier = ChooseServiceTier(req.Header(kServiceTierHeader), *tenant, "X-Llmux-Service-Tier");
  if (const auto* chosen = std::get_if<ServiceTierChoice>(&tier)) return chosen->lane_index;
  return tenant->lane_index;
}

void ApiService::Handle(HttpRequest&& req, std::shared_ptr<ResponseChannel> raw_channel) {
  // Before anything reads remote_address (the observed channel's logs, the auth throttle).
  const ClientAddress client = client_resolver_.Resolve(
      req.peer_address.empty() ? req.remote_address : req.peer_address, req);
  req.remote_address = client.address;
  auto channel = std::make_shared<ObservedChannel>(std::move(raw_channel), req, telemetry_.metrics);
  const std::string& path = req.path;
  if (path == "/health" || path == "/ready") channel->CountRejections(false);
  if (path == "/health") {
    if (req.method != "GET") return SendApiError(*channel, ApiErrorFromStatus(InvalidArgument("use GET /health")));
    return HandleHealth(*channel);
  }
  if (path == "/ready") return HandleReady(*channel);
  const bool known = path == "/v1/chat/completions" || path == "/v1/completions" ||
                     path == "/v1/responses" || path == "/v1/models" ||
                     (path.starts_with("/v1/models/") && path.size() > 11) || path == "/admin/reload" || path == "/admin/stats" ||
                     path == "/metrics" || path == "/v1/usage" || path == "/admin/usage" ||
                     path == "/admin/pools";
  if (!known) {
    ApiError e = ApiErrorFromStatus(NotFound("no route " + req.method + " " + path));
    return SendApiError(*channel, e);
  }
  std::shared_ptr<const TenantPolicy> policy = policies_->Current();
  // NOTE: the key is checked first and a valid one is always served: the throttle exists to
  // cut the cost and noise of floods of wrong keys, which must never lock out a client that
  // shares an address (a NAT, a proxy that does not forward the client address) with the
  // flood. Keys are 256-bit random values stored hashed, so letting a correct guess through a
  // throttled address gives an attacker nothing. Only failures are counted and refused.
  auto principal = Authenticate(req, client.peer_trusted, *policy);
  if (!principal.ok()) {
    const auto now = std::chrono::steady_clock::now();
    if (options_.max_auth_failures_per_minute > 0) {
      if (const int64_t wait = auth_throttle_.RetryAfter(req.remote_address, now); wait > 0) {
        ApiError e = ApiErrorFromStatus(
            ResourceExhausted("too many failed authentication attempts from this address"), "",
            "auth_throttled");
        e.retry_after_seconds = static_cast<int>(wait);
        return SendApiError(*channel, e);
      }
      auth_throttle_.RecordFailure(req.remote_address, now);
    }
    return SendApiError(*channel, ApiErrorFromStatus(principal.status()));
  }
  channel->Mark(Milestone::kAuthenticated);
  const bool admin = principal->kind == Principal::Kind::kAdmin;
  if (!admin) channel->SetTenant(principal->tenant);
  auto admin_only = [&] {
    SendApiError(*channel,
                 ApiErrorFromStatus(Status(StatusCode::kPermissionDenied, "admin key required")));
  };
  auto method_not_allowed = [&](const char* want) {
    ApiError e = InvalidRequest("use " + std::string(want) + " " + path, "", "method_not_allowed");
    e.http_status = 405;
    SendApiError(*channel, e);
  };

  if (path == "/admin/reload") {
    if (!admin) return admin_only();
    if (req.method != "POST") return method_not_allowed("POST");
    Status s = reload_();
    if (!s.ok()) return SendApiError(*channel, ApiErrorFromStatus(InvalidArgument(s.message())));
    // The installed file's digest lets an operator (and the symlink-swap test) check which
    // whole file is in force.
    return RespondJson(*channel, 200,
                       {{"status", "reloaded"},
                        {"generation", policies_->generation()},
                        {"sha256", KeyHashHex(policies_->content_hash())}});
  }
  if (path == "/metrics") {
    if (!admin) return admin_only();
    return HandleMetrics(req, *policy, *channel);
  }
  if (path == "/admin/usage") {
    if (!admin) return admin_only();
    if (req.method != "GET") return method_not_allowed("GET");
    if (telemetry_.ledger == nullptr) {
      return SendApiError(*channel, ApiErrorFromStatus(NotFound("the usage ledger is off")));
    }
    // Capacity held up to now is in the answer (a failure to write it answers with the error).
    if (Status s = FlushCapacity(telemetry_, WallClockMs()); !s.ok()) {
      return SendApiError(*channel, ApiErrorFromStatus(s));
    }
    return ServeAdminUsage(req, *telemetry_.ledger, *channel);
  }
  if (path == "/admin/stats") {
    if (!admin) return admin_only();
    if (req.method != "GET") return method_not_allowed("GET");
    return HandleStats(*policy, *channel);
  }
  if (path == "/admin/pools") {
    if (!admin) return admin_only();
    if (req.method != "GET") return method_not_allowed("GET");
    return HandlePools(*policy, *channel);
  }
  if (admin) {
    return SendApiError(*channel, ApiErrorFromStatus(Status(StatusCode::kPermissionDenied,
                                                            "the admin key cannot call tenant routes")));
  }
  const TenantConfig* tenant = policy->Find(principal->tenant);
  if (tenant == nullptr) return SendApiError(*channel, ApiErrorFromStatus(Status(StatusCode::kUnauthenticated, "unknown tenant")));
  if (path == "/v1/models" || path.starts_with("/v1/models/")) {
    if (req.method != "GET") return method_not_allowed("GET");
    return HandleModels(tenant, path == "/v1/models" ? "" : path.substr(11), *channel);
  }
  if (path == "/v1/usage") {
    if (req.method != "GET") return method_not_allowed("GET");
    if (telemetry_.ledger == nullptr) {
      return SendApiError(*channel, ApiErrorFromStatus(NotFound("the usage ledger is off")));
    }
    if (Status s = FlushCapacity(telemetry_, WallClockMs()); !s.ok()) {
      return SendApiError(*channel, ApiErrorFromStatus(s));
    }
    return ServeTenantUsage(req, principal->tenant, *telemetry_.ledger, *channel);
  }
  if (req.method != "POST") return method_not_allowed("POST");
  const ApiKind kind = path == "/v1/completions" ? ApiKind::kCompletion : ApiKind::kChat;
  HandleCompletion(kind, std::move(req), principal->tenant, std::move(policy), std::move(channel),
                   path == "/v1/responses");
}

json ApiService::PoolHealth(std::string* problem) const {
  json pools = json::object();
  auto check = [&](const std::string& name, const PoolStatus& p, Millis max_down) {
    const EngineStats& s = p.stats;
    json entry = {{"state", PoolStateName(p.state)}, {"steps", s.steps}, {"running", s.running},
                  {"waiting", s.waiting}, {"down_ms", p.down_ms}};
    std::string why;
    const bool pending = s.running + s.waiting + s.inbox > 0;
    const int64_t since = NowUnixMs() - s.last_step_unix_ms;
    if (!s.device_fault.empty()) {
      why = "device fault: " + s.device_fault;
    } else if (p.state == PoolState::kReady && pending && s.last_step_unix_ms > 0 &&
               since > options_.health_stall_timeout.count()) {
      why = "stalled: no engine step for " + std::to_string(since) + " ms with work pending";
    } else if (p.down_ms > max_down.count()) {
      why = "not ready for " + std::to_string(p.down_ms) + " ms (max_down " +
            std::to_string(max_down.count()) + " ms)" +
            (p.last_error.empty() ? "" : ": " + p.last_error);
    }
    if (!why.empty()) {
      entry["problem"] = why;
      if (problem->empty()) *problem = "pool " + name + " " + why;
    }
    pools[name] = entry;
  };
  if (pool_set_ != nullptr) {
    for (Pool* p : pool_set_->pools()) check(p->name(), p->Describe(), p->config().max_down);
  } else {
    PoolStatus shared;
    shared.name = "shared";
    shared.state = PoolState::kReady;
    shared.stats = model_.engine->Stats();
    check(shared.name, shared, PoolSection{}.max_down);
  }
  return pools;
}

void ApiService::HandleHealth(ResponseChannel& channel) {
  std::string problem;
  json pools = PoolHealth(&problem);
  if (!problem.empty()) {
    return RespondJson(channel, 503, {{"status", "unhealthy"}, {"problem", problem}, {"pools", pools}});
  }
  RespondJson(channel, 200, {{"status", "ok"}, {"pools", pools}});
}

void ApiService::HandleReady(ResponseChannel& channel) {
  if (draining_) return RespondJson(channel, 503, {{"status", "draining"}});
  std::string problem;
  json pools = PoolHealth(&problem);
  if (!problem.empty()) {
    return RespondJson(channel, 503, {{"status", "unready"}, {"problem", problem}, {"pools", pools}});
  }
  RespondJson(channel, 200, {{"status", "ready"}, {"pools", pools}});
}

Engine* ApiService::EngineOf(const TenantConfig& tenant) const {
  if (pool_set_ == nullptr) return model_.engine;
  Pool* pool = pool_set_->Find(tenant.pool);
  return pool == nullptr ? nullptr : pool->engine();
}

void ApiService::HandleStats(const TenantPolicy& policy, ResponseChannel& channel) {
  // Top level: the shared pool's engine (as before pools existed); "pools": every pool's.
  const EngineStats s = model_.engine->Stats();
  json pools = json::object();
  if (pool_set_ != nullptr) {
    for (Pool* p : pool_set_->pools()) {
      pools[p->name()] = StatsJson(p->engine()->Stats());
    }
  }
  json tenants = json::object();
  for (const auto& [name, t] : policy.tenants) {
    json entry = {{"queued_http", queued(name)}};
    entry["pool"] = t.pool;
    const Engine* engine = EngineOf(t);
    if (auto ts = engine == nullptr ? std::nullopt : engine->GetTenantStats(name)) {
      entry["inflight_tokens"] = ts->inflight_tokens;
      entry["inflight_high_water"] = ts->inflight_high_water;
      entry["blocks_in_use"] = ts->blocks_in_use;
      entry["reserved_blocks"] = ts->reserved_blocks;
      entry["waiting"] = ts->waiting;
      entry["running"] = ts->running;
    }
    tenants[name] = entry;
  }
  json body = StatsJson(s);
  body["calls_in_flight"] = calls_in_flight_.load();
  body["pools"] = std::move(pools);
  body["tenants"] = std::move(tenants);
  RespondJson(channel, 200, body);
}

void ApiService::HandlePools(const TenantPolicy& policy, ResponseChannel& channel) {
  json pools = json::array();
  if (pool_set_ != nullptr) {
    for (Pool* p : pool_set_->pools()) {
      const PoolStatus s = p->Describe();
      json tenants = json::array();
      for (const auto& [name, t] : policy.tenants) {
        if (t.pool == s.name) tenants.push_back(name);
      }
      json entry = {{"name", s.name},
                   {"isolation", PoolIsolationName(s.isolation)},
                   {"state", PoolStateName(s.state)},
                   {"pid", s.pid},
                   {"model", s.model},
                   {"restarts", s.restarts},
                   {"worker_deaths", s.worker_deaths},
                   {"last_error", s.last_error},
                   {"tenants", tenants},
                   {"running", s.stats.running},
                   {"waiting", s.stats.waiting},
                   {"kv_usage", s.stats.kv_usage},
                   {"device_fault", s.stats.device_fault},
                   {"batch_invariant", p->config().engine.batch_invariant},
                   {"kv_dtype", KvDTypeName(p->config().engine.ResolvedKvDType())},
                   {"kv_cache_tokens", p->config().engine.kv_cache_tokens},
                   {"gemm", GemmJson(p->config().engine.batch_invariant, s.stats)}};
      entry.update(CpuBf16ActivationsJson(p->config().engine.cpu_bf16_activations, s.stats));
      pools.push_back(std::move(entry));
    }
  }
  RespondJson(channel, 200, {{"object", "list"}, {"data", pools}});
}

void ApiService::HandleModels(const TenantConfig* tenant, const std::string& id,
                              ResponseChannel& channel) {
  json data = json::array();
  const ServedModel* served = ServedFor(*tenant);
  if (served != nullptr && ModelAllowed(*tenant, served->name)) {
    data.push_back({{"id", served->name},
                    {"object", "model"},
                    {"created", created_unix_},
                    {"owned_by", "llmux"},
                    {"max_model_len", served->max_model_len}});
    if (served->pool != nullptr) {
      data.back()["batch_invariant"] = served->pool->config().engine.batch_invariant;
    }
  }
  if (id.empty()) return RespondJson(channel, 200, {{"object", "list"}, {"data", data}});
  for (const json& m : data) {
    if (m["id"] == id) return RespondJson(channel, 200, m);
  }
  SendApiError(channel, ApiErrorFromStatus(NotFound("The model '" + id + "' does not exist"),
                                           "model", "model_not_found"));
}

}  // namespace llmux::server
