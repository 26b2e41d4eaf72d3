#include "server/observed_channel.h"

#include <nlohmann/json.hpp>
#include <cmath>
#include <random>

#include "llmux/log.h"

namespace llmux::server {
namespace {

std::string NewRequestId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[24];
  std::snprintf(buf, sizeof(buf), "req-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// A client's X-Request-Id is echoed when it is 1-128 printable ASCII characters (no spaces
// or quotes, so it is safe in logs and headers); otherwise llmux generates one.
bool SaneRequestId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

// The refusal reason of an error response, from its status and OpenAI error code; nullopt
// for server errors (they are failures, not refusals).
std::optional<RejectReason> Classify(int status, const std::string& body) {
  std::string code;
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].contains("code") && j["error"]["code"].is_string()) {
    code = j["error"]["code"].get<std::string>();
  }
  if (code == "rate_limit_exceeded") return RejectReason::kRateLimit;
  if (code == "quota_exceeded") return RejectReason::kQuota;
  if (code == "queue_full") return RejectReason::kQueueFull;
  if (code == "queue_timeout") return RejectReason::kQueueTimeout;
  if (status == 401 || status == 403) return RejectReason::kAuth;
  if (status == 429) return RejectReason::kBudget;  // the engine's "never fits"
  if (status == 503) return RejectReason::kUnavailable;
  if (status >= 400 && status < 500) return RejectReason::kInvalid;
  return std::nullopt;
}

}  // namespace

ObservedChannel::ObservedChannel(std::shared_ptr<ResponseChannel> inner, const HttpRequest& request,
                                 Metrics* metrics)
    : inner_(std::move(inner)),
      metrics_(metrics),
      method_(request.method),
      path_(request.path),
      remote_(request.remote_address),
      traceparent_(IsValidTraceparent(request.Header("traceparent")) ? request.Header("traceparent")
                                                                     : std::string()),
      request_id_(SaneRequestId(request.Header("x-request-id")) ? request.Header("x-request-id")
                                                                : NewRequestId()),
      timeline_(request.timeline),
      start_(std::chrono::steady_clock::now()) {}

void ObservedChannel::SetLane(const std::string& lane) {
  MutexLock lock(mutex_);
  lane_ = lane;
}

void ObservedChannel::SetTenant(const std::string& tenant) {
  MutexLock lock(mutex_);
  tenant_ = tenant;
}

void ObservedChannel::SetUsage(const AccessUsage& usage) {
  MutexLock lock(mutex_);
  usage_ = usage;
}

void ObservedChannel::SetPromptForLog(std::string prompt) {
  MutexLock lock(mutex_);
  prompt_ = std::move(prompt);
}

void ObservedChannel::CountRefusal(int status, const std::string& body) {
  if (metrics_ == nullptr || !count_rejections_ || status < 400) return;
  const std::optional<RejectReason> reason = Classify(status, body);
  if (!reason) return;
  std::string tenant;
  {
    MutexLock lock(mutex_);
    tenant = tenant_;
  }
  metrics_->CountRejection(tenant.empty() ? kUnauthenticatedTenant : tenant, *reason);
}

void ObservedChannel::Respond(int status, std::string content_type, std::string body,
                              HeaderList headers) {
  if (!traceparent_.empty()) headers.emplace_back("traceparent", traceparent_);
  headers.emplace_back("x-request-id", request_id_);
  CountRefusal(status, body);
  inner_->Respond(status, std::move(content_type), std::move(body), std::move(headers));
  Finish(status);
}

void ObservedChannel::BeginStream(HeaderList headers) {
  if (!traceparent_.empty()) {
    bool has = false;
    for (const auto& [k, v] : headers) has = has || k == "traceparent";
    if (!has) headers.emplace_back("traceparent", traceparent_);
  }
  headers.emplace_back("x-request-id", request_id_);
  inner_->BeginStream(std::move(headers));
}

void ObservedChannel::End() {
  inner_->End();
  Finish(stream_status_.load());
}

void ObservedChannel::Finish(int status) {
  if (finished_.exchange(true)) return;
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - start_)
                         .count();
  // NOTE: a call that reached the engine is logged once its first byte is out (or its
  // connection is done), so the line and the histogram hold the write phase and the full-path
  // time to first token; the response itself is not delayed by this.
  if (timeline_ && timeline_->Has(Milestone::kSubmitted) && !timeline_->Has(Milestone::kFirstByte)) {
    timeline_->WhenWritten(
        [self = shared_from_this(), status, ms] { self->WriteAccessLine(status, ms); });
    return;
  }
  WriteAccessLine(status, ms);
}

void ObservedChannel::WriteAccessLine(int status, int64_t ms) {
  std::vector<std::pair<std::string_view, double>> phases;
  std::optional<double> full_ttft;
  if (timeline_) {
    phases = timeline_->Phases();
    full_ttft = timeline_->FullPathTtft();
  }
  std::vector<LogField> f;
  MutexLock lock(mutex_);
  f.push_back(F("tenant", tenant_.empty() ? std::string(kUnauthenticatedTenant) : tenant_));
  f.push_back(F("request_id", usage_ ? usage_->request_id : request_id_));
  if (usage_) f.push_back(F("x_request_id", request_id_));
  if (!traceparent_.empty()) f.push_back(F("traceparent", traceparent_));
  f.push_back(F("method", method_));
  f.push_back(F("path", path_));
  f.push_back(F("status", status));
  f.push_back(F("remote", remote_));
  f.push_back(F("duration_ms", static_cast<long long>(ms)));
  if (usage_) {
    f.push_back(F("outcome", usage_->outcome));
    f.push_back(F("prompt_tokens", static_cast<long long>(usage_->prompt_tokens)));
    f.push_back(F("cached_tokens", static_cast<long long>(usage_->cached_tokens)));
    f.push_back(F("completion_tokens", static_cast<long long>(usage_->completion_tokens)));
    f.push_back(F("queue_ms", static_cast<long long>(usage_->queue_ms)));
    f.push_back(F("ttft_ms", static_cast<long long>(usage_->ttft_ms)));
    f.push_back(F("cost_nano", static_cast<long long>(usage_->cost_nano)));
    f.push_back(F("preemptions", static_cast<long long>(usage_->preemptions)));
  }
  if (!phases.empty()) {
    // {"auth":12,"parse":40,...}: microseconds per phase reached, in path order.
    std::string obj = "{";
    for (const auto& [name, seconds] : phases) {
      if (obj.size() > 1) obj += ',';
      obj += '"' + std::string(name) + "\":" + std::to_string(std::llround(seconds * 1e6));
    }
    obj += '}';
    f.push_back(LogField{"phases_us", std::move(obj), /*raw=*/true});
  }
  if (full_ttft) f.push_back(F("full_ttft_us", static_cast<long long>(std::llround(*full_ttft * 1e6))));
  if (prompt_) f.push_back(F("prompt", *prompt_));
  if (metrics_ != nullptr && !lane_.empty() && !phases.empty()) {
    metrics_->ObservePhases(RequestPhases{tenant_.empty() ? std::string(kUnauthenticatedTenant) : tenant_,
                                          lane_, std::move(phases), full_ttft});
  }
  LogEvent(status >= 500 ? LogLevel::kError : LogLevel::kInfo, "access", f);
}

}  // namespace llmux::server
