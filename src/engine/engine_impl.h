// The Engine implementation, split by concern over several files:
//   engine.cpp          Create, lifecycle (Start/Stop, the thread loop, RunUntilIdle)
//   engine_requests.cpp the inbox side (Submit/Abort/UpsertTenant, draining, queue timeouts)
//                       and how requests end (Finish, FailAll, FailStep)
//   engine_step.cpp     one step: schedule -> build batch -> forward -> sample -> postprocess
//   engine_stats.cpp    the stats snapshot other threads read
// Thread ownership: the members under `Engine thread only` are touched by the engine thread
// (or by the caller of StepOnce/RunUntilIdle when not started); the inbox and the stats
// snapshot are the only state shared with other threads, each under its own mutex.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/batch_builder.h"
#include "engine/inbox.h"
#include "engine/step_cost.h"
#include "engine/stop_checker.h"
#include "llmux/engine.h"
#include "llmux/thread_annotations.h"

namespace llmux {

using EngineClock = std::chrono::steady_clock;

inline double SecondsBetween(EngineClock::time_point a, EngineClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A request the engine has accepted and not yet finished.
struct LiveRequest {
  EngineRequest request;
  OutputSink sink;
  uint64_t seed = 0;
  std::vector<int32_t> output;
  int32_t cached_tokens = 0;
  int32_t preemptions = 0;
  EngineClock::time_point arrival;
  std::optional<EngineClock::time_point> first_scheduled;
  std::optional<EngineClock::time_point> first_token;
  // Set for structured-output requests; advanced on every sampled token.
  std::unique_ptr<GrammarMatcher> matcher;
  double engine_seconds = 0;  // its shares of the steps it was in
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineConfig& config, std::unique_ptr<Backend> backend,
             std::unique_ptr<Model> model, std::unique_ptr<Scheduler> scheduler);
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
  // One sequence's sampled token and stop decision.
  struct Emitted {
    SampledToken sampled;
    std::optional<StopDecision> stop;
  };
  // One step's working state, from Schedule to Postprocess.
  struct Step {
    SchedulerOutput plan;
    EngineClock::time_point start;      // before Schedule (StepInfo::seconds)
    EngineClock::time_point scheduled;  // after Schedule: first-scheduled time
    EngineClock::time_point forwarded;  // after the forward pass: first-token time
    std::vector<SampleResult> results;           // per plan.seqs entry, for Scheduler::Update
    std::vector<std::optional<Emitted>> emitted;  // per plan.seqs entry that sampled a token
    std::vector<const std::string*> seq_tenants;  // per plan.seqs entry (its request's tenant)
    double busy_seconds = 0;  // Schedule through Sample, split among plan.seqs
    std::vector<std::pair<std::string, double>> tenant_seconds;
  };

  // ---- inbox side (engine_requests.cpp) ----
  void DrainInbox();
  void HandleSubmit(SubmitItem&& item);
  void ExpireQueued();
  // Sends the final event and forgets the request (`live` dangles afterwards).
  void Finish(LiveRequest& live, FinishReason reason, std::optional<int32_t> stop_token,
              Status error, std::vector<int32_t> last_tokens,
              std::vector<SampledToken> last_logprobs);
  void FailAll(const Status& status);
  // After a step-wide failure (KV zeroing, forward pass): fails the step's own requests
  // (Unavailable stays Unavailable, a device fault is 503-class; anything else becomes
  // Internal) and closes the step with an Update, so the next Schedule is legal; requests
  // not in the step stay queued. Returns `status`.
  Status FailStep(const SchedulerOutput& plan, Status status);

  // ---- the step's phases (engine_step.cpp) ----
  // Runs the scheduler and records what it decided on the live requests (first scheduled,
  // cached prompt tokens, preemptions).
  Step Schedule();
  // Zeroes newly allocated KV blocks, builds the batch and runs the model. On failure the
  // step is failed as a whole (FailStep), except Aborted: the model stopped for a higher-lane
  // arrival (ForwardBatch::stop) and the caller cancels the step (Yield).
  // Returns the step's logits in backend memory (Model::ForwardLogits).
  StatusOr<Tensor> Forward(const Step& step, bool yieldable);
  // Tells the inbox which arrivals stop this step: a higher lane's (yield_to_higher_lane) and
  // the step's top lane's underserved tenants' (yield_to_underserved).
  void BeginStep(const Step& step);
  // The step stopped before its end for an arrival (BeginStep); nothing of it is committed
  // (Scheduler::CancelStep), its time is counted as yielded, and a stop for an underserved
  // tenant is charged to the scheduler's bound.
  void Yield(const Step& step);
  // The highest lane (lowest number) among the step's sequences.
  static int32_t TopLane(const SchedulerOutput& plan);
  // Samples every sequence whose step ended its known tokens with one Backend::SampleTokens
  // call (the step's sync point), then applies each token in plan order. A failure of that
  // call fails the step as a whole (FailStep) and is returned; a sequence whose own part fails
  // (its grammar, an injected fault) is finished with that error alone.
  Status Sample(Step& step, const Tensor& logits);
  // Scheduler::Update, then a final event for finished sequences and a token event for the
  // others.
  void Postprocess(const Step& step);
  // Splits the step's busy time (Schedule through Sample) among its sequences by
  // StepCostModel, adds each share to its request and its tenant, then fits the model's
  // constants to this step.
  void Attribute(Step& step);
  void ReportStep(const Step& step);
  // engine.max_step_ms: moves the scheduler's step token budget toward the tokens that fit the
  // target at this step's measured cost.
  void AdaptStepBudget(const Step& step);
  // Before sampling, one sequence's row: the injected fault, if any, and its grammar's
  // allowed-token mask appended to sample_masks_ (returns whether it added one).
  StatusOr<bool> PrepareRow(LiveRequest& live);
  // After sampling: the override hook, the grammar's acceptance, the output and the stop
  // check for one sequence. A failure (an exception from the stop checker or allocator, a
  // token the grammar refuses) concerns that sequence only.
  StatusOr<Emitted> ApplySampled(LiveRequest& live, SampledToken sampled);

  // ---- stats (engine_stats.cpp) ----
  void PublishStats();

  // ---- lifecycle (engine.cpp) ----
  void ThreadMain();

  int64_t NowMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(EngineClock::now() - epoch_)
        .count();
  }

  const EngineConfig config_;
  // NOTE: the model holds a pointer to the backend, so it is declared after it (destroyed first).
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;

  // Engine thread only.
  std::unique_ptr<Scheduler> scheduler_;
  StopChecker stop_checker_;
  BatchBuilder batch_builder_;
  StepCostModel cost_model_;
  double busy_seconds_total_ = 0;  // every step's busy time (Attribute)
  // Every step's duration, sequences and tokens (ReportStep), published with the stats.
  StepHistogram step_seconds_, batch_size_, batch_tokens_;
  std::unordered_map<std::string, double> tenant_engine_seconds_;  // each tenant's shares of it
  // The step's sampling inputs and outputs, capacity kept across steps: per logits row, its
  // request's view; the constrained rows' masks, [rows with a grammar, ceil(vocab / 32)].
  std::vector<SampleRow> sample_rows_;
  std::vector<uint32_t> sample_masks_;
  std::vector<SampledToken> sampled_;
  std::unordered_map<uint64_t, LiveRequest> live_;
  std::set<std::string> tenants_;  // registered with the scheduler
  std::function<void(const SchedulerOutput&)> before_forward_hook_;
  std::function<Status(const EngineRequest&, int32_t)> sequence_fault_hook_;
  std::function<std::optional<int32_t>(const EngineRequest&, int32_t)> sample_override_hook_;
  int64_t steps_ = 0;
  int64_t steps_yielded_ = 0;
  int64_t steps_yielded_underserved_ = 0;  // of steps_yielded_
  double yielded_seconds_ = 0;
  int32_t step_token_budget_ = 0;  // AdaptStepBudget's current budget (0 = not yet measured)
  int64_t prompt_tokens_total_ = 0;
  int64_t generation_tokens_total_ = 0;
  const EngineClock::time_point epoch_;

  EngineInbox inbox_;
  std::thread thread_;

  mutable Mutex stats_mutex_;
  EngineStats stats_ GUARDED_BY(stats_mutex_);
  std::unordered_map<std::string, TenantStats> tenant_stats_ GUARDED_BY(stats_mutex_);
};

}  // namespace llmux
