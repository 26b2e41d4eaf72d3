// The engine step loop. Thread ownership: everything below `// Engine thread only` is touched
// by the engine thread (or by the caller of StepOnce/RunUntilIdle when not started); the inbox
// and the stats snapshot are the only state shared with other threads, each under its mutex.
#include "llmux/engine.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <variant>

#include "engine/batch_builder.h"
#include "engine/rng.h"
#include "engine/sampler.h"
#include "engine/stop_checker.h"

namespace llmux {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct SubmitItem {
  EngineRequest request;
  OutputSink sink;
};
struct AbortItem {
  uint64_t id;
};
struct UpsertItem {
  std::string name;
  TenantLimits limits;
};
using InboxItem = std::variant<SubmitItem, AbortItem, UpsertItem>;

// A request the engine has accepted and not yet finished.
struct LiveRequest {
  EngineRequest request;
  OutputSink sink;
  uint64_t seed = 0;
  std::vector<int32_t> output;
  int32_t cached_tokens = 0;
  int32_t preemptions = 0;
  Clock::time_point arrival;
  std::optional<Clock::time_point> first_scheduled;
  std::optional<Clock::time_point> first_token;
  // Set for structured-output requests; advanced on every sampled token.
  std::unique_ptr<GrammarMatcher> matcher;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineConfig& config, std::unique_ptr<Backend> backend,
             std::unique_ptr<Model> model, std::unique_ptr<Scheduler> scheduler)
      : config_(config),
        backend_(std::move(backend)),
        model_(std::move(model)),
        scheduler_(std::move(scheduler)),
        sampler_(model_->config().vocab_size, model_->config().eos_token_ids),
        stop_checker_(model_->config().eos_token_ids, config.scheduler.max_model_len),
        batch_builder_(config.scheduler.block_size),
        mask_((model_->config().vocab_size + 31) / 32),
        epoch_(Clock::now()) {}

  ~EngineImpl() override { Stop(); }

  const ModelConfig& model_config() const override { return model_->config(); }

  Status UpsertTenant(const std::string& name, const TenantLimits& limits) override;
  Status Submit(EngineRequest request, OutputSink sink) override;
  void Abort(uint64_t id) override;
  EngineStats Stats() const override;
  std::optional<TenantStats> GetTenantStats(const std::string& tenant) const override;
  void Start() override;
  void Stop() override;
  StatusOr<bool> StepOnce() override;
  Status RunUntilIdle() override;
  Backend* backend_for_testing() override { return backend_.get(); }
  void SetBeforeForwardHookForTesting(std::function<void(const SchedulerOutput&)> hook) override {
    before_forward_hook_ = std::move(hook);
  }
  void SetSequenceFaultHookForTesting(
      std::function<Status(const EngineRequest&, int32_t)> hook) override {
    sequence_fault_hook_ = std::move(hook);
  }
  void SetSampleOverrideHookForTesting(
      std::function<std::optional<int32_t>(const EngineRequest&, int32_t)> hook) override {
    sample_override_hook_ = std::move(hook);
  }

 private:
  Status Push(InboxItem item, bool bounded);
  void DrainInbox();
  void HandleSubmit(SubmitItem&& item);
  void Finish(LiveRequest& live, FinishReason reason, std::optional<int32_t> stop_token,
              Status error, std::vector<int32_t> last_tokens,
              std::vector<SampledToken> last_logprobs);
  // One sequence's sample and stop check. A failure (an exception from the sampler, stop
  // checker or allocator, or an injected fault) concerns that sequence only; the caller fails
  // it alone.
  struct Emitted {
    SampledToken sampled;
    std::optional<StopDecision> stop;
  };
  StatusOr<Emitted> SampleOne(LiveRequest& live, std::span<const float> row);
  void FailAll(const Status& status);
  // After a step-wide failure (KV zeroing, forward pass): fails every request and closes the
  // step with an Update, so the next Schedule is legal. Returns `status`.
  Status FailStep(const SchedulerOutput& plan, Status status);
  void ExpireQueued();
  void PublishStats();
  void ThreadMain();
  int64_t NowMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - epoch_).count();
  }

  const EngineConfig config_;
  // NOTE: the model holds a pointer to the backend, so it is declared after it (destroyed first).
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;

  // Engine thread only.
  std::unique_ptr<Scheduler> scheduler_;
  Sampler sampler_;
  StopChecker stop_checker_;
  BatchBuilder batch_builder_;
  std::vector<uint32_t> mask_;  // [ceil(vocab / 32)] allowed-token bitmask of the row sampled
  std::unordered_map<uint64_t, LiveRequest> live_;
  std::set<std::string> tenants_;  // registered with the scheduler
  std::function<void(const SchedulerOutput&)> before_forward_hook_;
  std::function<Status(const EngineRequest&, int32_t)> sequence_fault_hook_;
  std::function<std::optional<int32_t>(const EngineRequest&, int32_t)> sample_override_hook_;
  int64_t steps_ = 0;
  int64_t prompt_tokens_total_ = 0;
  int64_t generation_tokens_total_ = 0;
  const Clock::time_point epoch_;

  mutable std::mutex inbox_mutex_;
  std::condition_variable inbox_cv_;
  std::deque<InboxItem> inbox_;  // Guarded by inbox_mutex_
  bool stopping_ = false;        // Guarded by inbox_mutex_
  std::thread thread_;

  mutable std::mutex stats_mutex_;
  EngineStats stats_;                                        // Guarded by stats_mutex_
  std::unordered_map<std::string, TenantStats> tenant_stats_;  // Guarded by stats_mutex_
};

Status EngineImpl::Push(InboxItem item, bool bounded) {
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    if (stopping_) return Unavailable("engine stopped");
    if (bounded && static_cast<int32_t>(inbox_.size()) >= config_.max_inbox) {
      return Unavailable("engine inbox full (" + std::to_string(config_.max_inbox) + ")");
    }
    inbox_.push_back(std::move(item));
  }
  inbox_cv_.notify_one();
  return Status::Ok();
}

Status EngineImpl::UpsertTenant(const std::string& name, const TenantLimits& limits) {
  if (name.empty()) return InvalidArgument("tenant name is empty");
  if (!(limits.weight > 0)) return InvalidArgument("tenant '" + name + "': weight must be > 0");
  return Push(UpsertItem{name, limits}, /*bounded=*/false);
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
  return Push(SubmitItem{std::move(request), std::move(sink)}, /*bounded=*/true);
}

void EngineImpl::Abort(uint64_t id) { (void)Push(AbortItem{id}, /*bounded=*/false); }

void EngineImpl::DrainInbox() {
  std::deque<InboxItem> items;
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    items.swap(inbox_);
  }
  for (InboxItem& item : items) {
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
  live.arrival = Clock::now();
  if (live.request.grammar) live.matcher = std::make_unique<GrammarMatcher>(live.request.grammar);
  live_.emplace(id, std::move(live));
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
  const auto now = Clock::now();
  out.queue_seconds = SecondsBetween(live.arrival, live.first_scheduled.value_or(now));
  out.first_token_seconds =
      live.first_token ? SecondsBetween(live.arrival, *live.first_token) : 0.0;
  OutputSink sink = std::move(live.sink);
  live_.erase(out.id);  // `live` dangles from here on
  sink(std::move(out));
}

void EngineImpl::ExpireQueued() {
  const auto now = Clock::now();
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

StatusOr<bool> EngineImpl::StepOnce() {
  DrainInbox();
  ExpireQueued();
  if (!scheduler_->HasWork()) {
    PublishStats();
    return false;
  }
  const auto step_start = Clock::now();
  SchedulerOutput plan = scheduler_->Schedule(NowMs());
  const auto now = Clock::now();
  for (const AdmittedSeq& a : plan.admitted) {
    auto it = live_.find(a.id);
    if (it == live_.end()) continue;
    if (!a.resumed) {
      it->second.cached_tokens = a.num_cached_tokens;
      prompt_tokens_total_ += static_cast<int64_t>(it->second.request.prompt.size());
    }
    if (!it->second.first_scheduled) it->second.first_scheduled = now;
  }
  for (uint64_t id : plan.preempted) {
    if (auto it = live_.find(id); it != live_.end()) ++it->second.preemptions;
  }
  if (plan.empty()) {
    PublishStats();
    return false;  // work is waiting on capacity that only a finishing request can free
  }
  if (!plan.blocks_to_zero.empty()) {
    Status zeroed = backend_->ZeroKvBlocks(plan.blocks_to_zero);
    if (!zeroed.ok()) return FailStep(plan, zeroed.WithContext("zeroing KV blocks"));
  }
  if (before_forward_hook_) before_forward_hook_(plan);
  const ForwardBatch& batch = batch_builder_.Build(plan);
  auto logits = model_->Forward(batch);
  if (!logits.ok()) {
    return FailStep(plan, logits.status().WithContext("forward step " + std::to_string(steps_)));
  }
  ++steps_;

  // Sample every sequence whose step ended its known tokens, in plan order.
  const int32_t vocab = model_->config().vocab_size;
  std::vector<SampleResult> results(plan.seqs.size());
  std::vector<std::optional<Emitted>> emitted(plan.seqs.size());
  std::vector<std::pair<uint64_t, Status>> failed;
  size_t logit_row = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& seq = plan.seqs[i];
    results[i].id = seq.id;
    if (!seq.samples) continue;
    LiveRequest& live = live_.at(seq.id);
    const std::span<const float> row = logits->subspan(logit_row * vocab, vocab);
    ++logit_row;
    StatusOr<Emitted> e = SampleOne(live, row);
    if (!e.ok()) {
      // NOTE: the scheduler skips sequences aborted between Schedule and Update.
      failed.emplace_back(seq.id, e.status());
      continue;
    }
    results[i].token = e->sampled.token;
    results[i].finished = e->stop.has_value();
    ++generation_tokens_total_;
    if (!live.first_token) live.first_token = now;
    emitted[i] = std::move(e).value();
  }
  for (auto& [id, status] : failed) {
    scheduler_->Abort(id);
    Finish(live_.at(id), FinishReason::kAbort, std::nullopt,
           Internal("request " + std::to_string(id) + " failed in step " +
                    std::to_string(steps_) + ": " + status.message()),
           {}, {});
  }
  UpdateResult update = scheduler_->Update(plan, results);

  // Emit: a final event for finished sequences, a token event for the others.
  std::unordered_map<uint64_t, const FinishedSeq*> finished;
  for (const FinishedSeq& f : update.finished) finished[f.id] = &f;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    if (!emitted[i]) continue;
    const uint64_t id = plan.seqs[i].id;
    LiveRequest& live = live_.at(id);
    const bool wants_logprobs = live.request.sampling.logprobs.has_value();
    std::vector<SampledToken> lp;
    if (wants_logprobs) lp.push_back(emitted[i]->sampled);
    auto f = finished.find(id);
    if (f != finished.end()) {
      const std::optional<StopDecision>& stop = emitted[i]->stop;
      const FinishReason reason = stop ? stop->reason : FinishReason::kLength;
      Finish(live, reason, stop ? stop->stop_token : std::nullopt, Status::Ok(),
             {emitted[i]->sampled.token}, std::move(lp));
      continue;
    }
    EngineOutput out;
    out.id = id;
    out.tokens = {emitted[i]->sampled.token};
    out.logprobs = std::move(lp);
    out.step = steps_;
    if (live.output.size() == 1) out.first_token_seconds = SecondsBetween(live.arrival, now);
    live.sink(std::move(out));
  }
  if (config_.observer != nullptr) {
    StepInfo info;
    info.seconds = SecondsBetween(step_start, Clock::now());
    info.num_seqs = static_cast<int32_t>(plan.seqs.size());
    for (const ScheduledSeq& seq : plan.seqs) info.num_tokens += seq.num_new_tokens;
    config_.observer->OnStep(info);
  }
  PublishStats();
  return true;
}

StatusOr<EngineImpl::Emitted> EngineImpl::SampleOne(LiveRequest& live,
                                                     std::span<const float> row) {
  if (sequence_fault_hook_) {
    LLMUX_RETURN_IF_ERROR(
        sequence_fault_hook_(live.request, static_cast<int32_t>(live.output.size())));
  }
  try {
    SequenceView view{live.request.prompt, live.output, live.seed};
    // NOTE: only constrained rows pay for a mask. It is computed on the host and applied to
    // the host logits row; the packed layout is what a device-side masking kernel would take.
    std::span<const uint32_t> allowed;
    if (live.matcher) {
      live.matcher->FillNextTokenBitmask(mask_);
      allowed = mask_;
    }
    Emitted e{sampler_.Sample(row, live.request.sampling, view, allowed), std::nullopt};
    if (sample_override_hook_) {
      const std::optional<int32_t> forced =
          sample_override_hook_(live.request, static_cast<int32_t>(live.output.size()));
      if (forced && *forced >= 0 && *forced < model_->config().vocab_size) e.sampled.token = *forced;
    }
    if (live.matcher && !live.matcher->AcceptToken(e.sampled.token)) {
      return Internal("the grammar allows no token here (sampled " +
                      std::to_string(e.sampled.token) + ")");
    }
    live.output.push_back(e.sampled.token);
    e.stop = stop_checker_.Check(live.request.sampling,
                                 static_cast<int32_t>(live.request.prompt.size()), live.output);
    if (live.matcher && live.matcher->IsTerminated() &&
        (!e.stop || e.stop->reason == FinishReason::kLength)) {
      // The output is a complete sentence and only EOS could follow: stop without it.
      e.stop = StopDecision{FinishReason::kStop, std::nullopt, false};
    }
    return e;
  } catch (const std::exception& ex) {
    return Internal(std::string("sampling failed: ") + ex.what());
  }
}

void EngineImpl::PublishStats() {
  const SchedulerStats s = scheduler_->Stats();
  EngineStats e;
  e.steps = steps_;
  e.last_step_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  e.running = s.running;
  e.waiting = s.waiting;
  e.kv_usage = s.kv_usage;
  e.num_preemptions = s.num_preemptions;
  e.prefix_query_tokens = s.prefix_query_tokens;
  e.prefix_hit_tokens = s.prefix_hit_tokens;
  e.prompt_tokens_total = prompt_tokens_total_;
  e.generation_tokens_total = generation_tokens_total_;
  if (Status health = backend_->DeviceHealth(); !health.ok()) e.device_fault = health.message();
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    e.inbox = static_cast<int32_t>(inbox_.size());
  }
  std::unordered_map<std::string, TenantStats> per_tenant;
  for (const std::string& name : tenants_) {
    auto id = scheduler_->FindTenant(name);
    if (id.ok()) per_tenant[name] = scheduler_->GetTenantStats(*id);
  }
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_ = e;
  tenant_stats_ = std::move(per_tenant);
}

EngineStats EngineImpl::Stats() const {
  EngineStats e;
  {
    std::lock_guard<std::mutex> lock(stats_mutex_);
    e = stats_;
  }
  if (config_.kv_event_sink) {  // thread-safe; current rather than as of the last step
    const KvEventCounters k = config_.kv_event_sink->Counters();
    e.kv_events_published = k.published;
    e.kv_events_dropped = k.dropped;
  }
  return e;
}

std::optional<TenantStats> EngineImpl::GetTenantStats(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  auto it = tenant_stats_.find(tenant);
  if (it == tenant_stats_.end()) return std::nullopt;
  return it->second;
}

Status EngineImpl::RunUntilIdle() {
  for (;;) {
    LLMUX_ASSIGN_OR_RETURN(bool progressed, StepOnce());
    if (!progressed) {
      if (!scheduler_->HasWork()) return Status::Ok();
      return Internal("engine has work it cannot schedule (" +
                      std::to_string(scheduler_->Stats().waiting) + " waiting)");
    }
  }
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
  const Status error = status.code() == StatusCode::kUnavailable
                           ? status
                           : Internal(status.message());
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

void EngineImpl::ThreadMain() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(inbox_mutex_);
      if (stopping_) break;
      if (inbox_.empty() && !scheduler_->HasWork()) {
        inbox_cv_.wait_for(lock, std::chrono::milliseconds(100));
        if (stopping_) break;
      }
    }
    auto progressed = StepOnce();
    if (!progressed.ok()) continue;  // FailStep failed that step's requests, not the engine
    if (!*progressed && scheduler_->HasWork()) {
      std::unique_lock<std::mutex> lock(inbox_mutex_);
      inbox_cv_.wait_for(lock, std::chrono::milliseconds(2));
    }
  }
  DrainInbox();
  FailAll(Unavailable("engine stopped"));
}

void EngineImpl::Start() {
  LLMUX_CHECK(!thread_.joinable()) << "engine started twice";
  thread_ = std::thread([this] { ThreadMain(); });
}

void EngineImpl::Stop() {
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  inbox_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    DrainInbox();
    FailAll(Unavailable("engine stopped"));
  }
}

std::atomic<EngineCreatedHook> engine_created_hook{nullptr};

}  // namespace

void SetEngineCreatedHookForTesting(EngineCreatedHook hook) { engine_created_hook.store(hook); }

StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config,
                                                 std::unique_ptr<Backend> backend,
                                                 std::unique_ptr<Model> model) {
  if (!backend || !model) return InvalidArgument("engine needs a backend and a model");
  EngineConfig c = config;
  const ModelConfig& mc = model->config();
  if (c.scheduler.max_model_len <= 0 || c.scheduler.max_model_len > mc.max_position_embeddings) {
    c.scheduler.max_model_len = mc.max_position_embeddings;
  }
  if (c.scheduler.num_kv_blocks == 0) {
    if (c.kv_cache_tokens < c.scheduler.block_size) {
      return InvalidArgument("kv_cache_tokens (" + std::to_string(c.kv_cache_tokens) +
                             ") is smaller than one block");
    }
    c.scheduler.num_kv_blocks = static_cast<int32_t>(c.kv_cache_tokens / c.scheduler.block_size);
  }
  KvCacheSpec spec;
  spec.num_layers = mc.num_layers;
  spec.num_blocks = c.scheduler.num_kv_blocks;
  spec.block_size = c.scheduler.block_size;
  spec.num_heads = mc.num_heads;
  spec.num_kv_heads = mc.num_kv_heads;
  spec.head_dim = mc.head_dim;
  spec.dtype = backend->ActivationDType();
  LLMUX_RETURN_IF_ERROR(backend->InitKvCache(spec));
  c.scheduler.kv_event_sink = c.kv_event_sink.get();
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, Scheduler::Create(c.scheduler));
  auto engine = std::unique_ptr<Engine>(
      new EngineImpl(c, std::move(backend), std::move(model), std::move(scheduler)));
  if (EngineCreatedHook hook = engine_created_hook.load()) hook(*engine);
  return engine;
}

}  // namespace llmux
