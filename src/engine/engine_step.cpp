// One engine step, in the order nano-vllm's step() reads:
//   schedule -> build batch -> forward -> sample -> postprocess (Update, emit).
#include "engine/engine_impl.h"

#include <algorithm>
#include <climits>

namespace llmux {

StatusOr<bool> EngineImpl::StepOnce() {
  DrainInbox();
  ExpireQueued();
  if (!scheduler_->HasWork()) {
    PublishStats();
    return false;
  }
  Step step = Schedule();
  if (step.plan.empty()) {
    PublishStats();
    return false;  // work is waiting on capacity that only a finishing request can free
  }
  // NOTE: only where the backend can stop between layers; static batches run to the end.
  const bool yieldable = (config_.yield_to_higher_lane || config_.yield_to_underserved) &&
                         backend_->StopsBetweenLayers() &&
                         config_.scheduler.batching == BatchingMode::kContinuous;
  if (yieldable) BeginStep(step);
  StatusOr<Tensor> forwarded = Forward(step, yieldable);
  if (yieldable) inbox_.EndStep();
  if (!forwarded.ok() && forwarded.status().code() == StatusCode::kAborted && yieldable) {
    Yield(step);
    return true;
  }
  LLMUX_ASSIGN_OR_RETURN(Tensor logits, std::move(forwarded));
  ++steps_;
  LLMUX_RETURN_IF_ERROR(Sample(step, logits));
  Attribute(step);
  Postprocess(step);
  ReportStep(step);
  AdaptStepBudget(step);
  PublishStats();
  return true;
}

EngineImpl::Step EngineImpl::Schedule() {
  Step step;
  step.start = EngineClock::now();
  step.plan = scheduler_->Schedule(NowMs());
  step.scheduled = EngineClock::now();
  for (const AdmittedSeq& a : step.plan.admitted) {
    auto it = live_.find(a.id);
    if (it == live_.end()) continue;
    if (!a.resumed) {
      it->second.cached_tokens = a.num_cached_tokens;
      prompt_tokens_total_ += static_cast<int64_t>(it->second.request.prompt.size());
    }
    if (!it->second.first_scheduled) it->second.first_scheduled = step.scheduled;
  }
  for (uint64_t id : step.plan.preempted) {
    if (auto it = live_.find(id); it != live_.end()) ++it->second.preemptions;
  }
  // The tenants' names are kept by the config (stable while the engine runs), so a request
  // that fails in Sample still bills its share of the step to its tenant.
  step.seq_tenants.reserve(step.plan.seqs.size());
  for (const ScheduledSeq& seq : step.plan.seqs) {
    auto it = live_.find(seq.id);
    const std::string* name = nullptr;
    if (it != live_.end()) {
      auto t = tenants_.find(it->second.request.tenant);
      if (t != tenants_.end()) name = &*t;
    }
    step.seq_tenants.push_back(name);
  }
  return step;
}

int32_t EngineImpl::TopLane(const SchedulerOutput& plan) {
  int32_t top = INT32_MAX;
  for (const ScheduledSeq& seq : plan.seqs) top = std::min(top, seq.lane);
  return top;
}

void EngineImpl::BeginStep(const Step& step) {
  const int32_t top = TopLane(step.plan);
  std::vector<std::string> underserved;
  if (config_.yield_to_underserved) {
    for (TenantId t : scheduler_->UnderservedStopTenants(top)) {
      underserved.push_back(scheduler_->TenantName(t));
    }
  }
  inbox_.BeginStep(top, config_.yield_to_higher_lane, std::move(underserved));
}

void EngineImpl::Yield(const Step& step) {
  scheduler_->CancelStep(step.plan);
  if (inbox_.yield_reason() == EngineInbox::YieldReason::kUnderserved) {
    scheduler_->ChargeUnderservedStop();
    ++steps_yielded_underserved_;
  }
  ++steps_yielded_;
  yielded_seconds_ += SecondsBetween(step.start, EngineClock::now());
  PublishStats();
}

StatusOr<Tensor> EngineImpl::Forward(const Step& step, bool yieldable) {
  if (!step.plan.blocks_to_zero.empty()) {
    Status zeroed = backend_->ZeroKvBlocks(step.plan.blocks_to_zero);
    if (!zeroed.ok()) return FailStep(step.plan, zeroed.WithContext("zeroing KV blocks"));
  }
  if (before_forward_hook_) before_forward_hook_(step.plan);
  const ForwardBatch& batch =
      batch_builder_.Build(step.plan, yieldable ? inbox_.yield_flag() : nullptr);
  auto logits = model_->ForwardLogits(batch);
  if (!logits.ok() && logits.status().code() == StatusCode::kAborted && yieldable) {
    return logits.status();
  }
  if (!logits.ok()) {
    return FailStep(step.plan,
                    logits.status().WithContext("forward step " + std::to_string(steps_)));
  }
  return *logits;
}

Status EngineImpl::Sample(Step& step, const Tensor& logits) {
  const std::vector<ScheduledSeq>& seqs = step.plan.seqs;
  step.results.assign(seqs.size(), SampleResult{});
  step.emitted.assign(seqs.size(), std::nullopt);
  std::vector<std::pair<uint64_t, Status>> failed;
  // Per logits row: its index in plan.seqs, and its mask's index in sample_masks_ (-1: none).
  std::vector<std::pair<size_t, int64_t>> row_of;
  sample_rows_.clear();
  sample_masks_.clear();
  for (size_t i = 0; i < seqs.size(); ++i) {
    step.results[i].id = seqs[i].id;
    if (!seqs[i].samples) continue;
    LiveRequest& live = live_.at(seqs[i].id);
    const int64_t masks_before = static_cast<int64_t>(sample_masks_.size());
    StatusOr<bool> masked = PrepareRow(live);
    if (!masked.ok()) {
      // NOTE: the row is still sampled (the batch has one logits row per sampling sequence);
      // its token is dropped. The scheduler skips sequences aborted between Schedule and Update.
      failed.emplace_back(seqs[i].id, masked.status());
      sample_masks_.resize(static_cast<size_t>(masks_before));
    }
    row_of.emplace_back(i, masked.ok() && *masked ? masks_before : -1);
    sample_rows_.push_back(
        SampleRow{&live.request.sampling, live.request.prompt, live.output, live.seed, {}});
  }
  // Spans into sample_masks_ only now: appending may have moved it.
  const size_t words = static_cast<size_t>((model_->config().vocab_size + 31) / 32);
  for (size_t r = 0; r < sample_rows_.size(); ++r) {
    if (row_of[r].second >= 0) {
      sample_rows_[r].allowed = std::span<const uint32_t>(
          sample_masks_.data() + row_of[r].second, words);
    }
  }
  const SampleBatch batch{model_->config().eos_token_ids, sample_rows_};
  Status sampled = backend_->SampleTokens(logits, batch, &sampled_);
  if (!sampled.ok()) {
    return FailStep(step.plan, sampled.WithContext("sampling step " + std::to_string(steps_)));
  }
  // NOTE: a token exists once the step's sync point (sampling) has returned, so a request's
  // first-token time is this moment, not its schedule time.
  step.forwarded = EngineClock::now();
  for (size_t r = 0; r < row_of.size(); ++r) {
    const size_t i = row_of[r].first;
    const uint64_t id = seqs[i].id;
    if (std::any_of(failed.begin(), failed.end(), [id](const auto& f) { return f.first == id; })) {
      continue;
    }
    LiveRequest& live = live_.at(id);
    StatusOr<Emitted> e = ApplySampled(live, std::move(sampled_[r]));
    if (!e.ok()) {
      failed.emplace_back(id, e.status());
      continue;
    }
    step.results[i].token = e->sampled.token;
    step.results[i].finished = e->stop.has_value();
    ++generation_tokens_total_;
    if (!live.first_token) live.first_token = step.forwarded;
    step.emitted[i] = std::move(e).value();
  }
  for (auto& [id, status] : failed) {
    scheduler_->Abort(id);
    Finish(live_.at(id), FinishReason::kAbort, std::nullopt,
           Internal("request " + std::to_string(id) + " failed in step " +
                    std::to_string(steps_) + ": " + status.message()),
           {}, {});
  }
  return Status::Ok();
}

void EngineImpl::Postprocess(const Step& step) {
  UpdateResult update = scheduler_->Update(step.plan, step.results);
  std::unordered_map<uint64_t, const FinishedSeq*> finished;
  for (const FinishedSeq& f : update.finished) finished[f.id] = &f;
  for (size_t i = 0; i < step.plan.seqs.size(); ++i) {
    const std::optional<Emitted>& emitted = step.emitted[i];
    if (!emitted) continue;
    const uint64_t id = step.plan.seqs[i].id;
    LiveRequest& live = live_.at(id);
    std::vector<SampledToken> lp;
    if (live.request.sampling.logprobs.has_value()) lp.push_back(emitted->sampled);
    if (finished.count(id) != 0) {
      const std::optional<StopDecision>& stop = emitted->stop;
      const FinishReason reason = stop ? stop->reason : FinishReason::kLength;
      Finish(live, reason, stop ? stop->stop_token : std::nullopt, Status::Ok(),
             {emitted->sampled.token}, std::move(lp));
      continue;
    }
    EngineOutput out;
    out.id = id;
    out.tokens = {emitted->sampled.token};
    out.logprobs = std::move(lp);
    out.step = steps_;
    if (live.output.size() == 1) {
      // Both timings on the first token event too: the HTTP layer derives the call's engine
      // milestones from it (docs/metrics.md, "Where the time goes").
      out.first_token_seconds = SecondsBetween(live.arrival, step.forwarded);
      out.queue_seconds = SecondsBetween(live.arrival, live.first_scheduled.value_or(step.scheduled));
    }
    live.sink(std::move(out));
  }
}

void EngineImpl::Attribute(Step& step) {
  // NOTE: measured before Postprocess, so a request finishing in this step carries its share
  // on its final event; emitting (posting events to other threads) is not attributed.
  step.busy_seconds = SecondsBetween(step.start, EngineClock::now());
  const std::vector<ScheduledSeq>& seqs = step.plan.seqs;
  const std::vector<double> shares = cost_model_.Split(seqs, step.busy_seconds);
  cost_model_.Observe(seqs, step.busy_seconds);  // the next step is split by the refit
  busy_seconds_total_ += step.busy_seconds;
  for (size_t i = 0; i < seqs.size(); ++i) {
    // A request that failed in Sample is gone from live_; its tenant still pays its share.
    if (auto it = live_.find(seqs[i].id); it != live_.end()) it->second.engine_seconds += shares[i];
    if (step.seq_tenants[i] == nullptr) continue;
    const std::string& tenant = *step.seq_tenants[i];
    tenant_engine_seconds_[tenant] += shares[i];
    auto t = std::find_if(step.tenant_seconds.begin(), step.tenant_seconds.end(),
                          [&](const auto& e) { return e.first == tenant; });
    if (t == step.tenant_seconds.end()) {
      step.tenant_seconds.emplace_back(tenant, shares[i]);
    } else {
      t->second += shares[i];
    }
  }
}

void EngineImpl::AdaptStepBudget(const Step& step) {
  if (config_.max_step_ms <= 0) return;
  int64_t tokens = 0;
  for (const ScheduledSeq& seq : step.plan.seqs) tokens += seq.num_new_tokens;
  const double seconds = SecondsBetween(step.start, EngineClock::now());
  if (tokens <= 0 || seconds <= 0) return;
  // NOTE: scaling this step's tokens by target/took converges on the budget whose step takes
  // the target when a step's cost grows with its tokens (a fixed per-step part included: a
  // small step overestimates, the next, larger step measures again). Halfway each step, so
  // one noisy step (a preempted thread on a shared machine) moves it only so far.
  const double target = config_.max_step_ms * 1e-3;
  const double want = static_cast<double>(tokens) * target / seconds;
  const double current = step_token_budget_ > 0 ? step_token_budget_ : want;
  // NOTE: never below twice max_seqs: a budget that running decodes alone fill would admit
  // nothing new (a premium arrival included) until a sequence finished. A step that cannot
  // meet the target this way is as short as it can be while admissions still progress.
  const SchedulerConfig& sc = config_.scheduler;
  const double floor = std::min(2.0 * sc.max_seqs, static_cast<double>(sc.max_batched_tokens));
  step_token_budget_ = static_cast<int32_t>(std::clamp(
      0.5 * current + 0.5 * want, floor, static_cast<double>(sc.max_batched_tokens)));
  scheduler_->SetStepTokenBudget(step_token_budget_);
}

void EngineImpl::ReportStep(const Step& step) {
  StepInfo info;
  info.seconds = SecondsBetween(step.start, EngineClock::now());
  info.num_seqs = static_cast<int32_t>(step.plan.seqs.size());
  for (const ScheduledSeq& seq : step.plan.seqs) info.num_tokens += seq.num_new_tokens;
  step_seconds_.Observe(info.seconds, kStepSecondsBounds);
  batch_size_.Observe(info.num_seqs, kBatchSizeBounds);
  batch_tokens_.Observe(info.num_tokens, kBatchTokenBounds);
  if (config_.observer == nullptr) return;
  info.busy_seconds = step.busy_seconds;
  info.tenant_seconds = step.tenant_seconds;
  config_.observer->OnStep(info);
}

StatusOr<bool> EngineImpl::PrepareRow(LiveRequest& live) {
  if (sequence_fault_hook_) {
    LLMUX_RETURN_IF_ERROR(
        sequence_fault_hook_(live.request, static_cast<int32_t>(live.output.size())));
  }
  if (!live.matcher) return false;
  try {
    // NOTE: only constrained rows pay for a mask: the grammar computes it on the host, the
    // backend applies it to the logits where they are (the CUDA backend uploads the packed
    // words and masks on the device).
    const size_t words = static_cast<size_t>((model_->config().vocab_size + 31) / 32);
    const size_t at = sample_masks_.size();
    sample_masks_.resize(at + words);
    live.matcher->FillNextTokenBitmask(std::span<uint32_t>(sample_masks_.data() + at, words));
    return true;
  } catch (const std::exception& ex) {
    return Internal(std::string("grammar mask failed: ") + ex.what());
  }
}

StatusOr<EngineImpl::Emitted> EngineImpl::ApplySampled(LiveRequest& live, SampledToken sampled) {
  try {
    Emitted e{std::move(sampled), std::nullopt};
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

}  // namespace llmux
