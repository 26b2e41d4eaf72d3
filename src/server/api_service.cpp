#include "server/api_service.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/call_accounting.h"
#include "server/capacity_billing.h"
#include "server/call_usage_tally.h"
#include "server/metrics_routes.h"
#include "server/request_plan.h"
#include "server/responses_api.h"
#include "server/tool_constraint.h"
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

// "fp_" + 12 hex digits identifying what serves a model (its name, context and chat
// template): equal fingerprints mean the same serving configuration.
std::string SystemFingerprint(const ServedModel& m) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  };
  mix(m.name);
  mix(std::to_string(m.max_model_len));
  if (m.chat_template != nullptr) mix(m.chat_template->source());
  char buf[24];
  std::snprintf(buf, sizeof(buf), "fp_%012llx", static_cast<unsigned long long>(h >> 16));
  return buf;
}

void SendAdmissionRefusal(ResponseChannel& channel, const AdmissionRefusal& refusal) {
  ApiError e = ApiErrorFromStatus(refusal.status, refusal.param, refusal.code);
  e.retry_after_seconds = static_cast<int>(std::min<int64_t>(refusal.retry_after_seconds, INT32_MAX));
  SendApiError(channel, e);
}

// The engine's milestones of a call, from the event that carries a choice's first token (the
// call's first such event wins): the engine reports them relative to its arrival, up to the end
// of the forward pass that computed the token, and the sink runs on the engine thread right
// after that step's sampling and Update, so `now` is the first token's time.
// NOTE: what lies between the forward pass and the sink (that step's sampling and Update; for
// a process pool also the wire transfer) shifts the derived arrival and counts in `inbox`.
void MarkEngineMilestones(ObservedChannel& channel, const EngineOutput& out) {
  const std::shared_ptr<RequestTimeline>& timeline = channel.timeline();
  if (!timeline || timeline->Has(Milestone::kFirstToken)) return;
  const auto now = std::chrono::steady_clock::now();
  const auto since_arrival = [](double s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(s));
  };
  const auto arrival = now - since_arrival(out.first_token_seconds);
  timeline->Mark(Milestone::kEngineArrival, arrival);
  timeline->Mark(Milestone::kFirstScheduled, arrival + since_arrival(out.queue_seconds));
  timeline->Mark(Milestone::kFirstToken, now);
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
      created_unix_(NowUnixMs() / 1000) {}

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
    out.push_back({"shared", model_.name, model_.engine->Stats()});
    return out;
  }
  for (Pool* p : pool_set_->pools()) {
    out.push_back({p->name(), p->model_name(), p->engine()->Stats()});
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
      pools.push_back({{"name", s.name},
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
                       {"kv_cache_tokens", p->config().engine.kv_cache_tokens}});
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

void ApiService::HandleCompletion(ApiKind kind, HttpRequest&& http, const std::string& tenant_name,
                                  std::shared_ptr<const TenantPolicy> policy,
                                  std::shared_ptr<ObservedChannel> channel, bool responses) {
  const auto call_start = std::chrono::steady_clock::now();
  const TenantConfig& tenant = *policy->Find(tenant_name);
  const ServedModel* served_or = ServedFor(tenant);
  if (served_or == nullptr) {
    ApiError e = ApiErrorFromStatus(Unavailable("pool " + tenant.pool + " is not served"));
    e.retry_after_seconds = 5;
    return SendApiError(*channel, e);
  }
  const ServedModel& served = *served_or;
  // The front door's cheap refusal: a tenant over its limits is refused from the headers
  // alone (key -> tenant -> limits), before its body is parsed and its prompt tokenized.
  if (std::optional<AdmissionRefusal> refusal = admission_->RefuseEarly(tenant_name, tenant)) {
    return SendAdmissionRefusal(*channel, *refusal);
  }
  auto parsed = responses ? ParseResponsesRequest(http.body, options_.limits)
                          : ParseOpenAiRequest(kind, http.body, options_.limits);
  if (auto* err = std::get_if<ApiError>(&parsed)) return SendApiError(*channel, *err);
  OpenAiRequest& r = std::get<OpenAiRequest>(parsed);
  channel->Mark(Milestone::kParsed);
  if ((!r.model.empty() && r.model != served.name) || !ModelAllowed(tenant, served.name)) {
    ApiError e = ApiErrorFromStatus(
        NotFound("The model '" + (r.model.empty() ? served.name : r.model) + "' does not exist"),
        "model", "model_not_found");
    return SendApiError(*channel, e);
  }

  // Tools: the template's call format decides parsing; required/named need a constraint.
  CallOptions call_options;
  call_options.responses_api = responses;
  call_options.system_fingerprint = SystemFingerprint(served);
  if (!r.tools.empty()) {
    const ToolCallFormat format = ToolCallFormatForTemplate(served.chat_template->source());
    if (format == ToolCallFormat::kNone && r.tool_choice != ToolChoiceMode::kNone) {
      return SendApiError(*channel, InvalidRequest("the chat template of model '" + served.name +
                                                       "' has no tool-call format (hermes or "
                                                       "llama3_json); send tool_choice 'none' or "
                                                       "serve a tools-aware template",
                                                   "tools", "unsupported_feature"));
    }
    if (auto forced = ToolChoiceConstraint(r, format)) {
      // tool_choice required / named: the reply is generated under a grammar that admits only
      // a call of an allowed tool in the template's format (structured outputs).
      if (r.response_format) {
        return SendApiError(*channel,
                            InvalidRequest("tool_choice required/named cannot be combined with "
                                           "response_format json_object/json_schema",
                                           "tool_choice"));
      }
      GrammarSpec spec;
      spec.kind = GrammarSpec::Kind::kJsonSchema;
      spec.schema = forced->json_schema;
      spec.prefix = forced->prefix;
      spec.suffix = forced->suffix;
      r.response_format = std::move(spec);
    }
    if (r.tool_choice != ToolChoiceMode::kNone) call_options.tool_format = format;
  }

  // service_tier -> lane (and its prices).
  std::string lane_name = tenant.lane;
  int32_t request_lane = -1;
  Prices prices = tenant.prices;
  call_options.service_tier = "default";
  if (r.service_tier == "priority" || r.service_tier == "flex") {
    auto tier = tenant.service_tiers.find(r.service_tier);
    if (tier == tenant.service_tiers.end()) {
      std::string allowed = "auto, default";
      for (const auto& [name, t] : tenant.service_tiers) allowed += ", " + name;
      return SendApiError(*channel,
                          ApiErrorFromStatus(Status(StatusCode::kPermissionDenied,
                                                    "service_tier '" + r.service_tier +
                                                        "' is not available to this tenant "
                                                        "(allowed: " + allowed + ")"),
                                             "service_tier", "service_tier_not_allowed"));
    }
    lane_name = tier->second.lane;
    request_lane = tier->second.lane_index;
    if (tier->second.prices) prices = *tier->second.prices;
    call_options.service_tier = r.service_tier;
  }
  channel->SetLane(lane_name);
  const ChatRenderOptions render_options{r.add_generation_prompt, r.tools_json};
  // Structured outputs: compile (or find) the grammar here, on the I/O thread, so a refused
  // schema is a 400 before anything is queued.
  std::shared_ptr<const CompiledGrammar> grammar;
  if (r.response_format) {
    auto compiled = structured_outputs_.Compile(tenant_name, *r.response_format,
                                                *served.tokenizer, *served.engine);
    if (auto* err = std::get_if<ApiError>(&compiled)) return SendApiError(*channel, *err);
    grammar = std::get<std::shared_ptr<const CompiledGrammar>>(std::move(compiled));
  }

  // Prompts -> token ids, max_tokens and the context.
  auto planned = PlanRequest(r, kind, responses,
                             PlanModel{served.tokenizer, served.chat_template, served.max_model_len},
                             tenant);
  if (auto* err = std::get_if<ApiError>(&planned)) return SendApiError(*channel, *err);
  RequestPlan& plan = std::get<RequestPlan>(planned);
  channel->Mark(Milestone::kTokenized);
  const std::vector<std::vector<int32_t>>& prompts = plan.prompts;
  const std::vector<int32_t>& prompt_lengths = plan.prompt_lengths;
  const std::vector<int32_t>& max_tokens = plan.max_tokens;

  // Admission.
  if (refusing_) {
    ApiError e = ApiErrorFromStatus(Unavailable("the server is draining; retry on another replica"));
    e.retry_after_seconds = 5;
    return SendApiError(*channel, e);
  }
  const int num_choices = static_cast<int>(prompts.size()) * r.n;
  const AdmissionRequest admission_request{plan.charged_tokens, plan.charged_cost_nano,
                                           num_choices};
  AdmissionResult admitted = admission_->Admit(tenant_name, tenant, admission_request);
  if (auto* refusal = std::get_if<AdmissionRefusal>(&admitted)) {
    return SendAdmissionRefusal(*channel, *refusal);
  }
  auto ticket = std::make_shared<const AdmissionTicket>(std::get<AdmissionTicket>(std::move(admitted)));
  channel->Mark(Milestone::kAdmitted);

  std::vector<ChoicePlan> plans;
  for (int p = 0; p < static_cast<int>(prompts.size()); ++p) {
    for (int k = 0; k < r.n; ++k) plans.push_back({p, next_engine_id_.fetch_add(1)});
  }
  if (tenant.log_prompts) {
    std::string text;
    if (kind == ApiKind::kChat) {
      auto rendered = served.chat_template->Render(r.messages, render_options);
      if (rendered.ok()) text = *rendered;
    } else {
      for (const PromptInput& p : r.prompts) {
        if (const auto* str = std::get_if<std::string>(&p)) text += *str;
      }
    }
    channel->SetPromptForLog(std::move(text));
  }
  CallContext context;
  context.tenant = tenant_name;
  context.lane = lane_name;
  context.pool = tenant.pool;
  context.model = served.name;
  context.prices = prices;
  context.n = r.n;
  context.start = call_start;
  HeaderList headers;  // traceparent is echoed by the observed channel
  if (served.pool != nullptr) {
    headers.emplace_back("x-llmux-pool", served.pool->name());
    headers.emplace_back("x-llmux-pid", std::to_string(served.pool->Describe().pid));
    // Which isolation guarantee this call had (docs/isolation.md, batch invariance).
    headers.emplace_back("x-llmux-batch-invariant",
                         served.pool->config().engine.batch_invariant ? "true" : "false");
  }
  calls_in_flight_.fetch_add(1);
  // Each choice's latest usage; the call settles its admission with their sum once recorded.
  auto usage = std::make_shared<CallUsageTally>(plans.size(), r.n, tenant.prices);
  auto accounting = std::make_shared<CallAccounting>(context, plans.size(), telemetry_, channel,
                                                     [this, ticket, usage] {
                                                       admission_->Finish(*ticket, usage->Total());
                                                       calls_in_flight_.fetch_sub(1);
                                                     });
  auto call = std::make_shared<CompletionCall>(
      r, served.name, prompt_lengths, plans, served.tokenizer, served.engine, channel, headers,
      [accounting](const std::string& outcome, std::function<void()> deliver) {
        accounting->OnCallDone(outcome, std::move(deliver));
      },
      call_options);
  accounting->set_request_id(call->id());
  channel->OnClose([call] { call->OnClientGone(); });

  const int64_t queue_timeout = std::min<int64_t>(tenant.max_queue_wait.count(), options_.max_queue_wait.count());
  // One flag per choice: its first engine event (always sent, the final one at least) takes it
  // off the tenant's queue count, on the engine thread, even when the connection is gone.
  auto left_queue = std::make_shared<std::vector<std::atomic<bool>>>(plans.size());
  // Before the first Submit: the engine may take the request (and sample) before Submit returns.
  channel->Mark(Milestone::kSubmitted);
  for (size_t i = 0; i < plans.size(); ++i) {
    EngineRequest er;
    er.id = plans[i].engine_id;
    er.tenant = tenant_name;
    er.prompt = prompts[plans[i].prompt_index];
    er.sampling = r.sampling;
    er.sampling.max_tokens = max_tokens[plans[i].prompt_index];
    // n > 1 with a seed: each choice gets its own stream (seed + index), like vLLM.
    if (er.sampling.seed && r.n > 1) *er.sampling.seed += i % r.n;
    er.queue_timeout_ms = queue_timeout;
    er.lane = request_lane;
    er.grammar = grammar;
    er.grammar_spec = r.response_format;
    Status s = served.engine->Submit(
        std::move(er),
        [this, channel, call, i, ticket, usage, left_queue, accounting](EngineOutput&& out) {
          if (!(*left_queue)[i].exchange(true)) admission_->LeaveQueue(*ticket, 1);
          if (out.first_token_seconds > 0) MarkEngineMilestones(*channel, out);
          usage->Observe(i, out);
          accounting->OnEngineEvent(i, out);
          auto shared = std::make_shared<EngineOutput>(std::move(out));
          channel->Post([call, i, shared] { call->OnEngineOutput(i, *shared); });
        });
    if (!s.ok()) {
      admission_->LeaveQueue(*ticket, static_cast<int>(plans.size() - i));
      accounting->SetSubmitted(i);
      ApiError e = ApiErrorFromStatus(s);
      if (e.http_status == 503) e.retry_after_seconds = 1;
      channel->Post([call] { call->OnClientGone(); });
      return SendApiError(*channel, e);
    }
  }
}

}  // namespace llmux::server
