#include "server/call_accounting.h"

#include <cmath>

#include "llmux/log.h"

namespace llmux::server {
namespace {

int64_t Ms(double seconds) { return static_cast<int64_t>(std::llround(seconds * 1000.0)); }

int64_t UnixMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

CallAccounting::CallAccounting(CallContext context, size_t num_choices, ServerTelemetry telemetry,
                               std::shared_ptr<ObservedChannel> channel,
                               std::function<void()> on_recorded)
    : context_(std::move(context)),
      telemetry_(telemetry),
      channel_(std::move(channel)),
      on_recorded_(std::move(on_recorded)),
      choices_(num_choices),
      submitted_(num_choices) {}

void CallAccounting::OnEngineEvent(size_t i, const EngineOutput& out) {
  const auto now = std::chrono::steady_clock::now();
  MutexLock lock(mutex_);
  Choice& c = choices_[i];
  if (!out.tokens.empty() && out.error.ok()) {
    if (c.last_token && telemetry_.metrics != nullptr) {
      const double gap = std::chrono::duration<double>(now - *c.last_token).count();
      telemetry_.metrics->ObserveInterTokenLatency(context_.tenant, context_.lane,
                                                   gap / static_cast<double>(out.tokens.size()));
    }
    c.last_token = now;
  }
  if (out.first_token_seconds > 0 && !c.first_token_seconds) {
    c.first_token_seconds = out.first_token_seconds;
  }
  if (!out.finished) return;
  c.final = true;
  c.started = out.started;
  c.prompt_tokens = out.prompt_tokens;
  c.cached_tokens = out.cached_tokens;
  c.completion_tokens = out.completion_tokens;
  c.preemptions = out.preemptions;
  c.queue_seconds = out.queue_seconds;
  c.engine_seconds = out.engine_seconds;
  if (out.error.ok()) c.finish_reason = std::string(FinishReasonName(out.finish_reason));
  std::optional<Completed> completed = TakeCompleted();
  lock.Unlock();
  if (completed) Record(std::move(*completed));
}

void CallAccounting::SetSubmitted(size_t n) {
  MutexLock lock(mutex_);
  submitted_ = n;
  std::optional<Completed> completed = TakeCompleted();
  lock.Unlock();
  if (completed) Record(std::move(*completed));
}

void CallAccounting::OnCallDone(std::string outcome, std::function<void()> deliver) {
  MutexLock lock(mutex_);
  if (call_done_) return;
  call_done_ = true;
  outcome_ = std::move(outcome);
  deliver_ = std::move(deliver);
  std::optional<Completed> completed = TakeCompleted();
  lock.Unlock();
  if (completed) Record(std::move(*completed));
}

std::optional<CallAccounting::Completed> CallAccounting::TakeCompleted() {
  if (recorded_ || !call_done_) return std::nullopt;
  for (size_t i = 0; i < submitted_; ++i) {
    if (!choices_[i].final) return std::nullopt;
  }
  recorded_ = true;
  return Completed{std::vector<Choice>(choices_.begin(), choices_.begin() + submitted_), outcome_,
                   std::move(deliver_)};
}

void CallAccounting::Record(Completed completed) {
  const std::vector<Choice>& choices = completed.choices;
  const std::string& outcome = completed.outcome;
  std::function<void()> deliver = std::move(completed.deliver);

  auto finish = [channel = channel_, deliver, on_recorded = on_recorded_] {
    if (deliver) channel->Post(deliver);
    on_recorded();
  };
  if (choices.empty()) {  // nothing reached the engine: no row
    finish();
    return;
  }

  // Totals. A prompt is billed once (not per choice), when one of its choices started;
  // cached tokens are those its first started choice reported.
  UsageRecord r;
  r.request_id = request_id_;
  r.tenant = context_.tenant;
  r.model = context_.model;
  r.lane = context_.lane;
  r.pool = context_.pool;
  r.outcome = outcome;
  r.x_request_id = channel_->request_id();
  RequestObservation obs;
  obs.tenant = context_.tenant;
  obs.lane = context_.lane;
  obs.outcome = outcome;
  const size_t n = static_cast<size_t>(std::max(1, context_.n));
  for (size_t p = 0; p * n < choices.size(); ++p) {
    for (size_t k = p * n; k < std::min(choices.size(), (p + 1) * n); ++k) {
      if (!choices[k].started) continue;
      r.prompt_tokens += choices[k].prompt_tokens;
      r.cached_tokens += choices[k].cached_tokens;
      break;
    }
  }
  std::optional<double> ttft;
  double engine_seconds = 0;
  for (const Choice& c : choices) {
    r.completion_tokens += c.completion_tokens;
    engine_seconds += c.engine_seconds;
    obs.preemptions += c.preemptions;
    if (!c.finish_reason.empty()) obs.finish_reasons.push_back(c.finish_reason);
    if (c.first_token_seconds && (!ttft || *c.first_token_seconds < *ttft)) {
      ttft = c.first_token_seconds;
    }
  }
  const double e2e =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - context_.start).count();
  r.finished_unix_ms = UnixMsNow();
  r.queue_ms = Ms(choices[0].queue_seconds);
  r.ttft_ms = ttft ? Ms(*ttft) : 0;
  r.duration_ms = Ms(e2e);
  r.engine_ms = Ms(engine_seconds);
  r.cost_nano = CostNano(context_.prices, r.prompt_tokens, r.cached_tokens, r.completion_tokens);
  obs.prompt_tokens = r.prompt_tokens;
  obs.cached_tokens = r.cached_tokens;
  obs.completion_tokens = r.completion_tokens;
  obs.queue_seconds = choices[0].queue_seconds;
  obs.first_token_seconds = ttft;
  obs.e2e_seconds = e2e;
  if (telemetry_.metrics != nullptr) telemetry_.metrics->ObserveRequest(obs);
  if (telemetry_.quota != nullptr) {
    telemetry_.quota->Record(r.tenant, r.finished_unix_ms, r.prompt_tokens + r.completion_tokens,
                             r.cost_nano);
  }
  AccessUsage access{r.request_id,        r.outcome,  r.prompt_tokens, r.cached_tokens,
                     r.completion_tokens, r.queue_ms, r.ttft_ms,       r.cost_nano,
                     obs.preemptions};
  auto committed = [channel = channel_, access, outcome, finish](const Status& s) {
    if (!s.ok()) {
      LogEvent(LogLevel::kError, "usage_row_lost",
               {F("request_id", access.request_id), F("error", s.message())});
    }
    channel->SetUsage(access);
    if (outcome == "aborted") channel->Finish(499);  // the client went away
    finish();
  };
  if (telemetry_.ledger == nullptr) {
    committed(Status::Ok());
    return;
  }
  telemetry_.ledger->Append(std::move(r), std::move(committed));
}

}  // namespace llmux::server
