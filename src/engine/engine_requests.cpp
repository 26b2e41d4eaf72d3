// The inbox side of the engine: validation and queueing on the caller's thread, draining on
// the engine thread, queue timeouts, and the ways a request ends (Finish, FailAll, FailStep).
#include "engine/engine_impl.h"
#include "llmux/rng.h"

namespace llmux {

Status EngineImpl::UpsertTenant(const std::string& name, const TenantLimits& limits) {
  if (name.empty()) return InvalidArgument("tenant name is empty");
  if (!(limits.weight > 0)) return InvalidArgument("tenant '" + name + "': weight must be > 0");
  return inbox_.Push(UpsertItem{name, limits});
}

Status EngineImpl::Submit(EngineRequest request, OutputSink sink) {
  const int32_t vocab = model_->config().vocab_size;
  if (request.prompt.empty()) return InvalidArgument("prompt is empty");
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= vocab) {
      return InvalidArgument("prompt token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                             std::to_string(vocab) + ")");
    }
  }
  LLMUX_RETURN_IF_ERROR(Validate(request.sampling, vocab));
  if (request.grammar && request.grammar->vocabulary().size() != vocab) {
    return InvalidArgument("the request's grammar was compiled for a vocabulary of " +
                           std::to_string(request.grammar->vocabulary().size()) +
                           " tokens, the model has " + std::to_string(vocab));
  }
  if (!sink) return InvalidArgument("no output sink");
  return inbox_.PushSubmit(SubmitItem{std::move(request), std::move(sink)});
}

void EngineImpl::Abort(uint64_t id) { (void)inbox_.Push(AbortItem{id}); }

void EngineImpl::DrainInbox() {
  for (InboxItem& item : inbox_.TakeAll()) {
    if (auto* s = std::get_if<SubmitItem>(&item)) {
      HandleSubmit(std::move(*s));
    } else if (auto* a = std::get_if<AbortItem>(&item)) {
      auto it = live_.find(a->id);
      if (it == live_.end()) continue;
      scheduler_->Abort(a->id);
      Finish(it->second, FinishReason::kAbort, std::nullopt, Status::Ok(), {}, {});
    } else if (auto* u = std::get_if<UpsertItem>(&item)) {
      // NOTE: limits the scheduler refuses (e.g. reservations beyond the pool) leave the
      // tenant's previous limits in force; the policy loader validates them up front.
      if (scheduler_->UpsertTenant(u->name, u->limits).ok()) tenants_.insert(u->name);
    }
  }
  for (auto& [id, status] : scheduler_->TakeRejected()) {
    auto it = live_.find(id);
    if (it != live_.end()) Finish(it->second, FinishReason::kAbort, std::nullopt, status, {}, {});
  }
}

void EngineImpl::HandleSubmit(SubmitItem&& item) {
  const uint64_t id = item.request.id;
  EngineOutput reject;
  reject.id = id;
  reject.finished = true;
  reject.step = steps_;
  if (live_.count(id) != 0) {
    reject.error = InvalidArgument("duplicate request id " + std::to_string(id));
    item.sink(std::move(reject));
    return;
  }
  SchedRequest sr;
  sr.id = id;
  sr.tenant = item.request.tenant;
  sr.prompt = item.request.prompt;
  sr.max_new_tokens = item.request.sampling.max_tokens;
  sr.arrival = NowMs();
  sr.lane = item.request.lane;
  Status s = scheduler_->Submit(std::move(sr));
  if (!s.ok()) {
    reject.error = s;
    item.sink(std::move(reject));
    return;
  }
  LiveRequest live;
  live.seed = item.request.sampling.seed.value_or(RandomSeed());
  live.request = std::move(item.request);
  live.sink = std::move(item.sink);
  live.arrival = EngineClock::now();
  if (live.request.grammar) live.matcher = std::make_unique<GrammarMatcher>(live.request.grammar);
  live_.emplace(id, std::move(live));
}

void EngineImpl::ExpireQueued() {
  const auto now = EngineClock::now();
  std::vector<uint64_t> expired;
  for (const auto& [id, live] : live_) {
    if (live.request.queue_timeout_ms > 0 && !live.first_scheduled &&
        now - live.arrival > std::chrono::milliseconds(live.request.queue_timeout_ms)) {
      expired.push_back(id);
    }
  }
  for (uint64_t id : expired) {
    LiveRequest& live = live_.at(id);
    scheduler_->Abort(id);
    Finish(live, FinishReason::kAbort, std::nullopt,
           Status(StatusCode::kDeadlineExceeded,
                  "request waited in the queue longer than " +
                      std::to_string(live.request.queue_timeout_ms) + " ms"),
           {}, {});
  }
}

void EngineImpl::Finish(LiveRequest& live, FinishReason reason, std::optional<int32_t> stop_token,
                        Status error, std::vector<int32_t> last_tokens,
                        std::vector<SampledToken> last_logprobs) {
  EngineOutput out;
  out.id = live.request.id;
  out.tokens = std::move(last_tokens);
  out.logprobs = std::move(last_logprobs);
  out.finished = true;
  out.finish_reason = reason;
  out.stop_token = stop_token;
  out.error = std::move(error);
  out.prompt_tokens = static_cast<int32_t>(live.request.prompt.size());
  out.cached_tokens = live.cached_tokens;
  out.completion_tokens = static_cast<int32_t>(live.output.size());
  out.preemptions = live.preemptions;
  out.started = live.first_scheduled.has_value();
  out.step = steps_;
  const auto now = EngineClock::now();
  out.queue_seconds = SecondsBetween(live.arrival, live.first_scheduled.value_or(now));
  out.first_token_seconds =
      live.first_token ? SecondsBetween(live.arrival, *live.first_token) : 0.0;
  out.engine_seconds = live.engine_seconds;
  OutputSink sink = std::move(live.sink);
  live_.erase(out.id);  // `live` dangles from here on
  sink(std::move(out));
}

void EngineImpl::FailAll(const Status& status) {
  std::vector<uint64_t> ids;
  for (auto& [id, live] : live_) ids.push_back(id);
  for (uint64_t id : ids) {
    scheduler_->Abort(id);
    Finish(live_.at(id), FinishReason::kAbort, std::nullopt, status, {}, {});
  }
}

Status EngineImpl::FailStep(const SchedulerOutput& plan, Status status) {
  // Only the step's own requests fail; waiting ones stay queued. A device that cannot run the
  // step (Unavailable: a CUDA fault) is a 503-class error for them; anything else is a bug.
  const Status error =
      status.code() == StatusCode::kUnavailable ? status : Internal(status.message());
  std::vector<SampleResult> results(plan.seqs.size());
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    results[i].id = plan.seqs[i].id;
    auto it = live_.find(plan.seqs[i].id);
    if (it == live_.end()) continue;
    scheduler_->Abort(it->first);
    Finish(it->second, FinishReason::kAbort, std::nullopt, error, {}, {});
  }
  (void)scheduler_->Update(plan, results);  // every entry was aborted: nothing finishes
  PublishStats();
  return status;
}

}  // namespace llmux
