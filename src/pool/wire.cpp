#include "pool/wire.h"

#include <cerrno>
#include <type_traits>
#include <unistd.h>

#include "llmux/config.h"
#include "llmux/pool.h"

namespace llmux::pool {
namespace {

using json = nlohmann::json;

// engine.cpu_bf16_activations' names for the backend's value (the wire and /admin/pools).
std::string_view CpuBf16ActivationsName(CpuBf16Activations mode) {
  switch (mode) {
    case CpuBf16Activations::kBf16: return "bf16";
    case CpuBf16Activations::kF32: return "f32";
  }
  return "f32";  // not reached
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Status FrameWriter::Write(const json& message) {
  std::string payload;
  try {
    payload = message.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const json::exception& e) {
    return Internal(std::string("cannot encode frame: ") + e.what());
  }
  if (payload.size() > kMaxFrameBytes) return Internal("frame too large");
  const uint32_t n = static_cast<uint32_t>(payload.size());
  const char header[4] = {static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                          static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
  MutexLock lock(mutex_);
  if (!WriteAll(fd_, header, 4) || !WriteAll(fd_, payload.data(), payload.size())) {
    return Unavailable("pool worker connection lost");
  }
  return Status::Ok();
}

std::optional<json> ReadFrame(int fd) {
  unsigned char header[4];
  if (!ReadAll(fd, reinterpret_cast<char*>(header), 4)) return std::nullopt;
  const uint32_t n = static_cast<uint32_t>(header[0]) | (static_cast<uint32_t>(header[1]) << 8) |
                     (static_cast<uint32_t>(header[2]) << 16) |
                     (static_cast<uint32_t>(header[3]) << 24);
  if (n > kMaxFrameBytes) return std::nullopt;
  std::string payload(n, '\0');
  if (!ReadAll(fd, payload.data(), n)) return std::nullopt;
  try {
    json j = json::parse(payload);
    if (!j.is_object() || !j.contains("t") || !j["t"].is_string()) return std::nullopt;
    return j;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

json EncodeSampling(const SamplingParams& p) {
  json bias = json::array();
  for (const LogitBias& b : p.logit_bias) bias.push_back({b.token, b.bias});
  json j = {{"temperature", p.temperature},
            {"top_p", p.top_p},
            {"top_k", p.top_k},
            {"min_p", p.min_p},
            {"repetition_penalty", p.repetition_penalty},
            {"presence_penalty", p.presence_penalty},
            {"frequency_penalty", p.frequency_penalty},
            {"logit_bias", bias},
            {"max_tokens", p.max_tokens},
            {"min_tokens", p.min_tokens},
            {"stop_token_ids", p.stop_token_ids},
            {"ignore_eos", p.ignore_eos}};
  if (p.seed) j["seed"] = *p.seed;
  if (p.logprobs) j["logprobs"] = *p.logprobs;
  return j;
}

SamplingParams DecodeSampling(const json& j) {
  SamplingParams p;
  p.temperature = j.at("temperature").get<float>();
  p.top_p = j.at("top_p").get<float>();
  p.top_k = j.at("top_k").get<int32_t>();
  p.min_p = j.at("min_p").get<float>();
  p.repetition_penalty = j.at("repetition_penalty").get<float>();
  p.presence_penalty = j.at("presence_penalty").get<float>();
  p.frequency_penalty = j.at("frequency_penalty").get<float>();
  for (const json& b : j.at("logit_bias")) p.logit_bias.push_back({b[0].get<int32_t>(), b[1].get<float>()});
  p.max_tokens = j.at("max_tokens").get<int32_t>();
  p.min_tokens = j.at("min_tokens").get<int32_t>();
  p.stop_token_ids = j.at("stop_token_ids").get<std::vector<int32_t>>();
  p.ignore_eos = j.at("ignore_eos").get<bool>();
  if (j.contains("seed")) p.seed = j["seed"].get<uint64_t>();
  if (j.contains("logprobs")) p.logprobs = j["logprobs"].get<int32_t>();
  return p;
}

json EncodeRequest(const EngineRequest& r) {
  json j = {{"id", r.id},
            {"tenant", r.tenant},
            {"prompt", r.prompt},
            {"sampling", EncodeSampling(r.sampling)},
            {"queue_timeout_ms", r.queue_timeout_ms},
            {"lane", r.lane}};
  // NOTE: the compiled grammar stays here; the worker compiles the spec against its own
  // vocabulary (pool/worker.cpp).
  if (r.grammar_spec) {
    const GrammarSpec& g = *r.grammar_spec;
    j["grammar"] = {{"kind", g.kind == GrammarSpec::Kind::kJsonSchema ? "json_schema" : "json_object"},
                    {"schema", g.schema},
                    {"prefix", g.prefix},
                    {"suffix", g.suffix}};
  }
  return j;
}

EngineRequest DecodeRequest(const json& j) {
  EngineRequest r;
  r.id = j.at("id").get<uint64_t>();
  r.tenant = j.at("tenant").get<std::string>();
  r.prompt = j.at("prompt").get<std::vector<int32_t>>();
  r.sampling = DecodeSampling(j.at("sampling"));
  r.queue_timeout_ms = j.at("queue_timeout_ms").get<int64_t>();
  if (j.contains("lane")) r.lane = j["lane"].get<int32_t>();
  if (j.contains("grammar")) {
    const json& g = j.at("grammar");
    GrammarSpec spec;
    spec.kind = g.at("kind").get<std::string>() == "json_schema" ? GrammarSpec::Kind::kJsonSchema
                                                                : GrammarSpec::Kind::kJsonObject;
    spec.schema = g.at("schema").get<std::string>();
    spec.prefix = g.at("prefix").get<std::string>();
    spec.suffix = g.at("suffix").get<std::string>();
    r.grammar_spec = std::move(spec);
  }
  return r;
}

json EncodeOutput(const EngineOutput& o) {
  json lps = json::array();
  for (const SampledToken& s : o.logprobs) {
    json top = json::array();
    for (const TokenLogprob& t : s.top) top.push_back({t.token, t.logprob});
    lps.push_back({s.token, s.logprob, top});
  }
  json j = {{"id", o.id},
            {"tokens", o.tokens},
            {"logprobs", lps},
            {"finished", o.finished},
            {"finish_reason", static_cast<int>(o.finish_reason)},
            {"prompt_tokens", o.prompt_tokens},
            {"cached_tokens", o.cached_tokens},
            {"completion_tokens", o.completion_tokens},
            {"preemptions", o.preemptions},
            {"step", o.step},
            {"queue_seconds", o.queue_seconds},
            {"first_token_seconds", o.first_token_seconds},
            {"engine_seconds", o.engine_seconds}};
  if (o.stop_token) j["stop_token"] = *o.stop_token;
  if (!o.error.ok()) j["error"] = {static_cast<int>(o.error.code()), o.error.message()};
  return j;
}

EngineOutput DecodeOutput(const json& j) {
  EngineOutput o;
  o.id = j.at("id").get<uint64_t>();
  o.tokens = j.at("tokens").get<std::vector<int32_t>>();
  for (const json& s : j.at("logprobs")) {
    SampledToken t;
    t.token = s[0].get<int32_t>();
    t.logprob = s[1].get<float>();
    for (const json& a : s[2]) t.top.push_back({a[0].get<int32_t>(), a[1].get<float>()});
    o.logprobs.push_back(std::move(t));
  }
  o.finished = j.at("finished").get<bool>();
  const int reason = j.at("finish_reason").get<int>();
  o.finish_reason = reason == static_cast<int>(FinishReason::kLength)  ? FinishReason::kLength
                    : reason == static_cast<int>(FinishReason::kAbort) ? FinishReason::kAbort
                                                                       : FinishReason::kStop;
  if (j.contains("stop_token")) o.stop_token = j["stop_token"].get<int32_t>();
  if (j.contains("error")) {
    const int code = j["error"][0].get<int>();
    const bool known = code > 0 && code <= static_cast<int>(StatusCode::kInternal);
    o.error = Status(known ? static_cast<StatusCode>(code) : StatusCode::kInternal,
                     j["error"][1].get<std::string>());
  }
  o.prompt_tokens = j.at("prompt_tokens").get<int32_t>();
  o.cached_tokens = j.at("cached_tokens").get<int32_t>();
  o.completion_tokens = j.at("completion_tokens").get<int32_t>();
  o.preemptions = j.at("preemptions").get<int32_t>();
  o.step = j.at("step").get<int64_t>();
  o.queue_seconds = j.at("queue_seconds").get<double>();
  o.first_token_seconds = j.at("first_token_seconds").get<double>();
  o.engine_seconds = j.value("engine_seconds", 0.0);  // absent from an older worker
  return o;
}

json EncodeLimits(const TenantLimits& l) {
  return {{"lane", l.lane},
          {"weight", l.weight},
          {"max_inflight_tokens", l.max_inflight_tokens},
          {"reserved_kv_tokens", l.reserved_kv_tokens},
          {"reserved_seqs", l.reserved_seqs},
          {"prefix_cache", static_cast<int>(l.prefix_cache)},
          {"prefix_cache_group", l.prefix_cache_group},
          {"zero_kv_on_free", l.zero_kv_on_free}};
}

TenantLimits DecodeLimits(const json& j) {
  TenantLimits l;
  l.lane = j.at("lane").get<int32_t>();
  l.weight = j.at("weight").get<double>();
  l.max_inflight_tokens = j.at("max_inflight_tokens").get<int64_t>();
  l.reserved_kv_tokens = j.at("reserved_kv_tokens").get<int64_t>();
  l.reserved_seqs = j.at("reserved_seqs").get<int32_t>();
  const int mode = j.at("prefix_cache").get<int>();
  l.prefix_cache = mode == static_cast<int>(PrefixCacheMode::kShared) ? PrefixCacheMode::kShared
                   : mode == static_cast<int>(PrefixCacheMode::kOff)  ? PrefixCacheMode::kOff
                                                                      : PrefixCacheMode::kPrivate;
  l.prefix_cache_group = j.at("prefix_cache_group").get<std::string>();
  l.zero_kv_on_free = j.at("zero_kv_on_free").get<bool>();
  return l;
}

}  // namespace llmux::pool

namespace llmux {

nlohmann::json GemmChoicesJson(const std::vector<GemmChoice>& choices) {
  nlohmann::json out = nlohmann::json::array();
  for (const GemmChoice& c : choices) {
    out.push_back({{"n", c.n},
                   {"k", c.k},
                   {"out", c.out_f32 ? "f32" : "bf16"},
                   {"kernel", c.kernel},
                   {"tile_n", c.tile_n},
                   {"tile_m", c.tile_m},
                   {"ctas_at_m1", c.ctas_at_m1},
                   {"candidates_tried", c.candidates_tried},
                   {"m_plans", c.m_plans},
                   {"rejected_layouts", c.rejected_layouts}});
  }
  return out;
}

nlohmann::json CpuBf16ActivationsJson(Bf16Activations configured, const EngineStats& stats) {
  const std::string_view wanted = Bf16ActivationsName(configured);
  if (!stats.cpu_bf16_activations) return {{"cpu_bf16_activations", wanted}};
  const std::string_view in_use = pool::CpuBf16ActivationsName(*stats.cpu_bf16_activations);
  nlohmann::json out = {{"cpu_bf16_activations", in_use}};
  if (in_use != wanted) out["cpu_bf16_activations_configured"] = wanted;
  return out;
}

}  // namespace llmux

namespace llmux::pool {

std::vector<GemmChoice> DecodeGemmChoices(const json& j) {
  std::vector<GemmChoice> out;
  for (const json& e : j) {
    GemmChoice c;
    c.n = e.at("n").get<int64_t>();
    c.k = e.at("k").get<int64_t>();
    c.out_f32 = e.at("out").get<std::string>() == "f32";
    c.kernel = e.at("kernel").get<std::string>();
    c.tile_n = e.at("tile_n").get<int>();
    c.tile_m = e.at("tile_m").get<int>();
    c.ctas_at_m1 = e.at("ctas_at_m1").get<int64_t>();
    c.candidates_tried = e.at("candidates_tried").get<int>();
    c.m_plans = e.at("m_plans").get<int>();
    c.rejected_layouts = e.at("rejected_layouts").get<int>();
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

json EncodeHistogram(const StepHistogram& h) { return {{"counts", h.counts}, {"sum", h.sum}}; }

StepHistogram DecodeHistogram(const json& j) {
  StepHistogram h;
  h.counts = j.at("counts").get<std::vector<int64_t>>();
  h.sum = j.at("sum").get<double>();
  return h;
}

}  // namespace

json EncodeStats(const EngineStats& s) {
  json j = json::object();
  ForEachEngineStat([&](const EngineStatField& f, auto member) { j[f.name] = s.*member; });
  j["device_fault"] = s.device_fault;  // not a figure: outside LLMUX_ENGINE_STATS
  j["gemm_choices"] = GemmChoicesJson(s.gemm_choices);
  if (s.cpu_bf16_activations) {
    j["cpu_bf16_activations"] = CpuBf16ActivationsName(*s.cpu_bf16_activations);
  }
  j["step_seconds"] = EncodeHistogram(s.step_seconds);  // histograms: outside it too
  j["batch_size"] = EncodeHistogram(s.batch_size);
  j["batch_tokens"] = EncodeHistogram(s.batch_tokens);
  return j;
}

EngineStats DecodeStats(const json& j) {
  EngineStats s;
  ForEachEngineStat([&](const EngineStatField& f, auto member) {
    s.*member = j.at(f.name).get<std::remove_reference_t<decltype(s.*member)>>();
  });
  s.device_fault = j.value("device_fault", std::string());
  if (j.contains("gemm_choices")) s.gemm_choices = DecodeGemmChoices(j.at("gemm_choices"));
  if (j.contains("cpu_bf16_activations")) {
    s.cpu_bf16_activations = j.at("cpu_bf16_activations").get<std::string>() == "bf16"
                                 ? CpuBf16Activations::kBf16
                                 : CpuBf16Activations::kF32;
  }
  if (j.contains("step_seconds")) s.step_seconds = DecodeHistogram(j.at("step_seconds"));
  if (j.contains("batch_size")) s.batch_size = DecodeHistogram(j.at("batch_size"));
  if (j.contains("batch_tokens")) s.batch_tokens = DecodeHistogram(j.at("batch_tokens"));
  return s;
}

json EncodeTenantStats(const std::map<std::string, TenantStats>& stats) {
  json out = json::object();
  for (const auto& [name, t] : stats) {
    out[name] = {{"inflight_tokens", t.inflight_tokens},
                 {"inflight_high_water", t.inflight_high_water},
                 {"blocks_in_use", t.blocks_in_use},
                 {"reserved_blocks", t.reserved_blocks},
                 {"waiting", t.waiting},
                 {"running", t.running},
                 {"fair_share_counter", t.fair_share_counter},
                 {"engine_seconds", t.engine_seconds}};
  }
  return out;
}

std::map<std::string, TenantStats> DecodeTenantStats(const json& j) {
  std::map<std::string, TenantStats> out;
  for (const auto& [name, v] : j.items()) {
    TenantStats t;
    t.inflight_tokens = v.at("inflight_tokens").get<int64_t>();
    t.inflight_high_water = v.at("inflight_high_water").get<int64_t>();
    t.blocks_in_use = v.at("blocks_in_use").get<int32_t>();
    t.reserved_blocks = v.at("reserved_blocks").get<int32_t>();
    t.waiting = v.at("waiting").get<int32_t>();
    t.running = v.at("running").get<int32_t>();
    t.fair_share_counter = v.at("fair_share_counter").get<double>();
    t.engine_seconds = v.at("engine_seconds").get<double>();
    out.emplace(name, t);
  }
  return out;
}

}  // namespace llmux::pool
