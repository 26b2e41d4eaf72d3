// The completion routes (POST /v1/chat/completions, /v1/completions, /v1/responses), one
// concern per step:
//   HandleCompletion (strand)  refuse early from the headers; queue planning in the call's lane
//                              (the tenant's, or the X-Llmux-Service-Tier header's tier's)
//   PlanCall (planning pool)   parse, tools, service tier, grammar, template + tokenize + context
//   ServeCall (strand)         admit -> start the call -> submit; the call then streams itself
// (docs/architecture.md, "Threads and a request's path"; docs/isolation.md, "The front door").
#include <chrono>
#include <cstdio>

#include "server/api_error.h"
#include "server/api_service.h"
#include "server/call_accounting.h"
#include "server/call_usage_tally.h"
#include "server/request_plan.h"
#include "server/responses_api.h"
#include "server/service_tier.h"
#include "server/tool_constraint.h"

namespace llmux::server {

// One completion call between the route and the engine: what the headers told (set on the
// strand), then what planning made of the body (set on the planning pool), read on the strand
// by ServeCall. Never touched by two threads at once: each step hands it to the next.
struct ApiService::PlannedCall {
  ApiKind kind = ApiKind::kChat;
  bool responses = false;  // POST /v1/responses (a chat request underneath)
  std::string tenant;
  std::shared_ptr<const TenantPolicy> policy;  // keeps `config` alive
  const TenantConfig* config = nullptr;
  const ServedModel* served = nullptr;
  std::shared_ptr<ObservedChannel> channel;
  std::chrono::steady_clock::time_point start;
  std::string header_tier;  // X-Llmux-Service-Tier as sent ("" = none)

  OpenAiRequest request;
  RequestPlan plan;
  CallOptions options;
  std::string lane;          // the lane the call runs in (tenant's, or its service tier's)
  int32_t request_lane = -1;  // the scheduler's per-request lane; -1 = the tenant's
  Prices prices;
  std::shared_ptr<const CompiledGrammar> grammar;
  std::string prompt_for_log;  // tenants with log_prompts only
};

namespace {

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
// call's first such event wins): the engine reports them relative to its arrival, up to the
// step's sync point (its forward pass and batched sampling returned the token), and the sink
// runs on the engine thread right after that step's Update, so `now` is the first token's time.
// NOTE: what lies between the sync point and the sink (that step's Update; for a process pool
// also the wire transfer) shifts the derived arrival and counts in `inbox`.
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

// Tools: the template's call format decides parsing; tool_choice required/named puts the reply
// under a grammar that admits only a call of an allowed tool (structured outputs).
std::optional<ApiError> ApplyTools(OpenAiRequest& r, const ServedModel& served,
                                   CallOptions& options) {
  if (r.tools.empty()) return std::nullopt;
  const ToolCallFormat format = ToolCallFormatForTemplate(served.chat_template->source());
  if (format == ToolCallFormat::kNone && r.tool_choice != ToolChoiceMode::kNone) {
    return InvalidRequest("the chat template of model '" + served.name +
                              "' has no tool-call format (hermes or llama3_json); send "
                              "tool_choice 'none' or serve a tools-aware template",
                          "tools", "unsupported_feature");
  }
  if (auto forced = ToolChoiceConstraint(r, format)) {
    if (r.response_format) {
      return InvalidRequest("tool_choice required/named cannot be combined with response_format "
                            "json_object/json_schema",
                            "tool_choice");
    }
    GrammarSpec spec;
    spec.kind = GrammarSpec::Kind::kJsonSchema;
    spec.schema = forced->json_schema;
    spec.prefix = forced->prefix;
    spec.suffix = forced->suffix;
    r.response_format = std::move(spec);
  }
  if (r.tool_choice != ToolChoiceMode::kNone) options.tool_format = format;
  return std::nullopt;
}

// The prompt text of the access line (tenants with log_prompts).
std::string PromptForLog(const OpenAiRequest& r, ApiKind kind, const ServedModel& served) {
  std::string text;
  if (kind == ApiKind::kChat) {
    auto rendered =
        served.chat_template->Render(r.messages, {r.add_generation_prompt, r.tools_json});
    if (rendered.ok()) text = *rendered;
    return text;
  }
  for (const PromptInput& p : r.prompts) {
    if (const auto* str = std::get_if<std::string>(&p)) text += *str;
  }
  return text;
}

}  // namespace

void ApiService::HandleCompletion(ApiKind kind, HttpRequest&& http, const std::string& tenant_name,
                                  std::shared_ptr<const TenantPolicy> policy,
                                  std::shared_ptr<ObservedChannel> channel, bool responses) {
  auto call = std::make_shared<PlannedCall>();
  call->start = std::chrono::steady_clock::now();
  call->kind = kind;
  call->responses = responses;
  call->tenant = tenant_name;
  call->config = policy->Find(tenant_name);
  call->policy = std::move(policy);
  call->channel = std::move(channel);
  const TenantConfig& tenant = *call->config;
  call->served = ServedFor(tenant);
  if (call->served == nullptr) {
    ApiError e = ApiErrorFromStatus(Unavailable("pool " + tenant.pool + " is not served"));
    e.retry_after_seconds = 5;
    return SendApiError(*call->channel, e);
  }
  // The planning lane: the tenant's, or the tier's its header names. NOTE: never the body's
  // service_tier (unparsed yet), so a body cannot raise the lane its own planning runs in.
  call->header_tier = http.Header(kServiceTierHeader);
  auto tier = ChooseServiceTier(call->header_tier, tenant, "X-Llmux-Service-Tier");
  if (auto* err = std::get_if<ApiError>(&tier)) return SendApiError(*call->channel, *err);
  const int planning_lane = std::get<ServiceTierChoice>(tier).lane_index;
  // The front door's cheap refusal: a tenant over its limits is refused from the headers
  // alone (key -> tenant -> limits), before its body is parsed and its prompt tokenized.
  if (std::optional<AdmissionRefusal> refusal = admission_->RefuseEarly(tenant_name, tenant)) {
    return SendAdmissionRefusal(*call->channel, *refusal);
  }
  // Planning runs on the pool in that lane, so a flood of a lower lane's requests never holds
  // this one; the call resumes on the connection's strand.
  auto body = std::make_shared<std::string>(std::move(http.body));
  Status queued = planning_.Post(planning_lane, [this, call, body] {
    call->channel->Mark(Milestone::kPlanningStarted);
    if (std::optional<ApiError> err = PlanCall(*call, *body)) {
      return SendApiError(*call->channel, *err);
    }
    call->channel->Post([this, call] { ServeCall(*call); });
  });
  if (!queued.ok()) {
    ApiError e = ApiErrorFromStatus(queued, "", "server_overloaded");
    e.retry_after_seconds = 1;
    SendApiError(*call->channel, e);
  }
}

std::optional<ApiError> ApiService::PlanCall(PlannedCall& call, const std::string& body) {
  const TenantConfig& tenant = *call.config;
  const ServedModel& served = *call.served;
  auto parsed = call.responses ? ParseResponsesRequest(body, options_.limits)
                               : ParseOpenAiRequest(call.kind, body, options_.limits);
  if (auto* err = std::get_if<ApiError>(&parsed)) return std::move(*err);
  call.request = std::get<OpenAiRequest>(std::move(parsed));
  OpenAiRequest& r = call.request;
  call.channel->Mark(Milestone::kParsed);
  if ((!r.model.empty() && r.model != served.name) || !ModelAllowed(tenant, served.name)) {
    return ApiErrorFromStatus(
        NotFound("The model '" + (r.model.empty() ? served.name : r.model) + "' does not exist"),
        "model", "model_not_found");
  }
  call.options.responses_api = call.responses;
  call.options.system_fingerprint = SystemFingerprint(served);
  if (auto err = ApplyTools(r, served, call.options)) return err;
  auto tier = ChooseCallServiceTier(call.header_tier, r.service_tier, tenant);
  if (auto* err = std::get_if<ApiError>(&tier)) return std::move(*err);
  ServiceTierChoice& chosen = std::get<ServiceTierChoice>(tier);
  call.lane = std::move(chosen.lane);
  call.request_lane = chosen.request_lane;
  call.prices = chosen.prices;
  call.options.service_tier = std::move(chosen.tier);
  call.channel->SetLane(call.lane);
  // Structured outputs: a refused schema is a 400 before anything is queued.
  if (r.response_format) {
    auto compiled = structured_outputs_.Compile(call.tenant, *r.response_format,
                                                *served.tokenizer, *served.engine);
    if (auto* err = std::get_if<ApiError>(&compiled)) return std::move(*err);
    call.grammar = std::get<std::shared_ptr<const CompiledGrammar>>(std::move(compiled));
  }
  auto planned = PlanRequest(r, call.kind, call.responses,
                             PlanModel{served.tokenizer, served.chat_template, served.max_model_len},
                             tenant);
  if (auto* err = std::get_if<ApiError>(&planned)) return std::move(*err);
  call.plan = std::get<RequestPlan>(std::move(planned));
  if (tenant.log_prompts) call.prompt_for_log = PromptForLog(r, call.kind, served);
  call.channel->Mark(Milestone::kTokenized);
  return std::nullopt;
}

void ApiService::ServeCall(PlannedCall& call) {
  std::shared_ptr<AdmittedCall> admitted = AdmitCall(call);
  if (!admitted) return;
  SubmitCall(call, admitted);
}

std::shared_ptr<AdmittedCall> ApiService::AdmitCall(PlannedCall& call) {
  if (refusing_) {
    ApiError e = ApiErrorFromStatus(Unavailable("the server is draining; retry on another replica"));
    e.retry_after_seconds = 5;
    SendApiError(*call.channel, e);
    return nullptr;
  }
  const int num_choices = static_cast<int>(call.plan.prompts.size()) * call.request.n;
  AdmissionResult result = admission_->Admit(
      call.tenant, *call.config,
      AdmissionRequest{call.plan.charged_tokens, call.plan.charged_cost_nano, num_choices});
  if (auto* refusal = std::get_if<AdmissionRefusal>(&result)) {
    SendAdmissionRefusal(*call.channel, *refusal);
    return nullptr;
  }
  call.channel->Mark(Milestone::kAdmitted);
  return std::make_shared<AdmittedCall>(admission_,
                                        std::get<AdmissionTicket>(std::move(result)));
}

void ApiService::SubmitCall(PlannedCall& call, std::shared_ptr<AdmittedCall> admitted) {
  const OpenAiRequest& r = call.request;
  const TenantConfig& tenant = *call.config;
  const ServedModel& served = *call.served;
  std::vector<ChoicePlan> choices;
  for (int p = 0; p < static_cast<int>(call.plan.prompts.size()); ++p) {
    for (int k = 0; k < r.n; ++k) choices.push_back({p, next_engine_id_.fetch_add(1)});
  }
  if (tenant.log_prompts) call.channel->SetPromptForLog(std::move(call.prompt_for_log));
  CallContext context;
  context.tenant = call.tenant;
  context.lane = call.lane;
  context.pool = tenant.pool;
  context.model = served.name;
  context.prices = call.prices;
  context.n = r.n;
  context.start = call.start;
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
  auto usage = std::make_shared<CallUsageTally>(choices.size(), r.n, tenant.prices);
  auto accounting = std::make_shared<CallAccounting>(context, choices.size(), telemetry_,
                                                     call.channel, [this, admitted, usage] {
                                                       admitted->Finish(usage->Total());
                                                       calls_in_flight_.fetch_sub(1);
                                                     });
  // The call streams its answer on the connection's strand from here on.
  auto completion = std::make_shared<CompletionCall>(
      r, served.name, call.plan.prompt_lengths, choices, served.tokenizer, served.engine,
      call.channel, headers,
      [accounting](const std::string& outcome, std::function<void()> deliver) {
        accounting->OnCallDone(outcome, std::move(deliver));
      },
      call.options);
  accounting->set_request_id(completion->id());
  call.channel->OnClose([completion] { completion->OnClientGone(); });

  const int64_t queue_timeout =
      std::min<int64_t>(tenant.max_queue_wait.count(), options_.max_queue_wait.count());
  // Before the first Submit: the engine may take the request (and sample) before Submit returns.
  call.channel->Mark(Milestone::kSubmitted);
  for (size_t i = 0; i < choices.size(); ++i) {
    const int prompt = choices[i].prompt_index;
    EngineRequest er;
    er.id = choices[i].engine_id;
    er.tenant = call.tenant;
    er.prompt = call.plan.prompts[prompt];
    er.sampling = r.sampling;
    er.sampling.max_tokens = call.plan.max_tokens[prompt];
    // n > 1 with a seed: each choice gets its own stream (seed + index), like vLLM.
    if (er.sampling.seed && r.n > 1) *er.sampling.seed += i % r.n;
    er.queue_timeout_ms = queue_timeout;
    er.lane = call.request_lane;
    er.grammar = call.grammar;
    er.grammar_spec = r.response_format;
    // Its first engine event (always sent, the final one at least) takes the choice off the
    // tenant's queue count, on the engine thread, even when the connection is gone.
    Status s = served.engine->Submit(
        std::move(er), [channel = call.channel, completion, i, admitted, usage,
                        accounting](EngineOutput&& out) {
          admitted->ChoiceLeftQueue(i);
          if (out.first_token_seconds > 0) MarkEngineMilestones(*channel, out);
          usage->Observe(i, out);
          accounting->OnEngineEvent(i, out);
          auto shared = std::make_shared<EngineOutput>(std::move(out));
          channel->Post([completion, i, shared] { completion->OnEngineOutput(i, *shared); });
        });
    if (!s.ok()) {
      admitted->NeverSubmitted(i);
      accounting->SetSubmitted(i);
      ApiError e = ApiErrorFromStatus(s);
      if (e.http_status == 503) e.retry_after_seconds = 1;
      call.channel->Post([completion] { completion->OnClientGone(); });
      return SendApiError(*call.channel, e);
    }
  }
}

}  // namespace llmux::server
