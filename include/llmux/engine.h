// The engine: one thread per pool that owns the scheduler, the KV cache, the model and the
// sampler, and runs the step loop: drain inbox -> Schedule -> forward -> sample -> Update ->
// emit. Other threads talk to it only through Submit/Abort/UpsertTenant (a bounded inbox)
// and through the output sinks they pass in.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <span>
#include <type_traits>
#include <vector>

#include "llmux/backend.h"
#include "llmux/dtype.h"
#include "llmux/grammar.h"
#include "llmux/model.h"
#include "llmux/sampling.h"
#include "llmux/scheduler.h"
#include "llmux/status.h"

namespace llmux {

// One forward step, as seen by an EngineObserver.
struct StepInfo {
  double seconds = 0;      // Schedule through emit (forward pass and sampling included)
  int32_t num_seqs = 0;    // sequences in the batch
  int32_t num_tokens = 0;  // tokens in the batch (prefill chunks + decodes)
  // Schedule through sampling: the engine's busy time that is attributed to the sequences of
  // the step (docs/metrics.md, "Engine time per tenant"), and its split per tenant (each
  // tenant once; the shares sum to busy_seconds).
  double busy_seconds = 0;
  std::vector<std::pair<std::string, double>> tenant_seconds = {};
};

// Receives engine-thread events (metrics). Implementations must not block.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepInfo& step) = 0;
};

// The step cost model's constants, in seconds (docs/billing.md, "Engine time: the cost model"):
// a step is predicted to take step_s + prefill_token_s * prefill tokens + decode_token_s *
// decode tokens + context_s * attended positions + sample_s * sampled rows.
struct StepCostConstants {
  double step_s = 0;           // per step (split equally among the step's sequences)
  double prefill_token_s = 0;  // per token of a prompt chunk longer than one token
  double decode_token_s = 0;   // per single-token step of a sequence (a decode)
  double context_s = 0;        // per attended position (QK^T and AV)
  double sample_s = 0;         // per sampled row (the LM head and the sampler)
};

struct EngineConfig {
  // Scheduler settings; num_kv_blocks == 0 derives it from kv_cache_tokens / block_size.
  SchedulerConfig scheduler;
  int64_t kv_cache_tokens = 65536;
  // Element type of the KV cache (engine.kv_dtype); nullopt = the backend's activation dtype.
  // The backend may refuse a dtype it does not implement (Engine::Create then fails).
  std::optional<DType> kv_dtype;
  // Bound of the inbox per lane: submits of one lane (EngineRequest::lane, else the tenant's)
  // not yet seen by the engine thread; Submit beyond it returns Unavailable. Per lane, so a
  // flood in one lane never makes another lane's submits fail.
  int32_t max_inbox = 4096;
  // Step-time target in milliseconds (engine.max_step_ms; 0 = off): the token budget of the
  // next step follows the measured cost per token so that a step takes about this long, and a
  // request arriving mid-step waits for at most one short step (Sarathi-Serve's stall-free
  // batching). Never above the scheduler's max_batched_tokens nor below its max_seqs.
  int32_t max_step_ms = 0;
  // engine.yield_to_higher_lane: a request arriving in a lane above every lane of the step in
  // flight stops that step between two layers (backends whose ops run on the engine thread:
  // the CPU backend; Backend::StopsBetweenLayers) and the next step is planned with it. The
  // stopped step commits nothing (Scheduler::CancelStep) and is run again in part or whole;
  // a step is stopped at most once per arrival and never when it holds the arrival's lane
  // (docs/scheduler.md, "Yielding to a higher lane").
  bool yield_to_higher_lane = true;
  // engine.yield_to_underserved: within a fair-share lane, a request whose tenant would be the
  // lane's most underserved tenant (lowest fair-share counter; idle, or with a request still
  // decoding) stops the step in flight the same way, when that lane is the step's top lane.
  // The stop and the arrival's exclusive prefill step (SchedulerConfig::
  // underserved_exclusive_prefill, which the daemon sets from the same key) share one bound
  // (SchedulerConfig::underserved_credit_steps; docs/scheduler.md, "Yielding to an
  // underserved tenant").
  bool yield_to_underserved = true;
  // Not owned; must outlive the engine. Called on the engine thread after each forward step.
  EngineObserver* observer = nullptr;
  // The step cost model (engine time attribution): nullopt fits its constants online to the
  // measured steps; set, these constants are used as they are (deterministic attribution).
  std::optional<StepCostConstants> step_cost;
  // Optional: receives the prefix cache's KV events on the engine thread (must never block).
  // The engine keeps it alive until its scheduler is gone.
  std::shared_ptr<KvEventSink> kv_event_sink;
};

struct EngineRequest {
  uint64_t id = 0;  // unique among the engine's unfinished requests (caller assigns)
  std::string tenant;
  std::vector<int32_t> prompt;
  SamplingParams sampling;  // validated by Submit against the model's vocabulary
  // A request still waiting (never scheduled) this long after Submit ends with
  // DeadlineExceeded. 0 = no limit.
  int64_t queue_timeout_ms = 0;
  // Scheduler lane for this request (OpenAI service_tier mapped by the tenant's
  // service_tiers); -1 = the tenant's lane.
  int32_t lane = -1;
  // Structured output (docs/structured_outputs.md). When `grammar` is set, every sampled token
  // keeps the output a prefix of the grammar's language: the engine masks the logits with the
  // sequence's GrammarMatcher before sampling, and finishes with kStop when the grammar is
  // complete and admits nothing more. Its vocabulary must be the model's (Submit checks).
  // NOTE: the matcher lives with the request, so preemption (recompute) keeps its state.
  std::shared_ptr<const CompiledGrammar> grammar;
  // What `grammar` was compiled from: a process pool sends this and its worker compiles it
  // against its own vocabulary (a worker receiving a spec without a grammar compiles it).
  std::optional<GrammarSpec> grammar_spec;
};

// What a request's sink receives. Every accepted request gets zero or more token events and
// then exactly one final event (finished == true). A rejected request gets one final event
// with a non-OK `error`.
struct EngineOutput {
  uint64_t id = 0;
  std::vector<int32_t> tokens;          // tokens generated since the previous event
  std::vector<SampledToken> logprobs;   // one per token when the request asked for logprobs
  bool finished = false;
  FinishReason finish_reason = FinishReason::kStop;
  std::optional<int32_t> stop_token;    // the stop/EOS token id for finish_reason kStop
  Status error;                         // non-OK: rejected or failed (nothing more follows)
  // Usage, on the final event.
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;   // prompt tokens served from the prefix cache
  int32_t completion_tokens = 0;
  int32_t preemptions = 0;
  // On the final event: whether the request was ever scheduled (its prefill began), i.e.
  // whether its prompt was processed at all.
  bool started = false;
  // Engine step counter when this event was produced (tests assert scheduling latency in steps).
  int64_t step = 0;
  // Timings in seconds since the request reached the engine.
  // Both on the final event and on the first token event.
  double queue_seconds = 0;        // until first scheduled
  double first_token_seconds = 0;  // until the end of the forward pass that computed the first token
  // On the final event: the engine time attributed to this request, the sum of its shares of
  // every step it was in (StepCostModel).
  double engine_seconds = 0;
};

// Called on the engine thread; must not block (post to a strand or queue and return).
using OutputSink = std::function<void(EngineOutput&&)>;

// The engine's figures, listed once: the struct, the worker wire encoding, /admin/stats and
// the Prometheus series are all generated from this table through ForEachEngineStat.
//   X(type, name, metric, kind, help)
//   metric: the Prometheus series name, "" when the figure is not exported there
//   kind:   kGauge (a current value), kCounter (cumulative, int64_t only), kInfo (not a series)
//   scope:  kRouter: also in the router-facing `/metrics?scope=engine` subset
#define LLMUX_ENGINE_STATS(X)                                                                    \
  X(int64_t, steps, "", kInfo, kFull, "Forward steps run.")                                      \
  X(int64_t, last_step_unix_ms, "", kInfo, kFull,                                                 \
    "Wall time the last step completed (liveness).")                                             \
  X(int32_t, running, "vllm:num_requests_running", kGauge, kRouter,                              \
    "Requests in the running batch (engine).")                                                   \
  X(int32_t, waiting, "vllm:num_requests_waiting", kGauge, kRouter,                              \
    "Requests waiting to be scheduled, preempted ones included.")                                \
  X(int32_t, inbox, "", kInfo, kFull, "Submits and aborts not yet seen by the engine thread.")   \
  X(double, kv_usage, "vllm:kv_cache_usage_perc", kGauge, kRouter,                               \
    "Fraction of KV cache blocks in use (0 to 1).")                                              \
  X(int64_t, prompt_tokens_total, "vllm:prompt_tokens_total", kCounter, kRouter,                 \
    "Prompt tokens admitted to the engine.")                                                     \
  X(int64_t, generation_tokens_total, "vllm:generation_tokens_total", kCounter, kRouter,         \
    "Tokens generated by the engine.")                                                           \
  X(int64_t, num_preemptions, "vllm:num_preemptions_total", kCounter, kRouter,                   \
    "Sequences preempted (recompute).")                                                          \
  X(int64_t, prefix_query_tokens, "vllm:prefix_cache_queries_total", kCounter, kRouter,          \
    "Prompt tokens looked up in the prefix cache.")                                              \
  X(int64_t, prefix_hit_tokens, "vllm:prefix_cache_hits_total", kCounter, kRouter,               \
    "Prompt tokens served from the prefix cache.")                                               \
  X(int64_t, kv_events_published, "llmux_kv_events_published_total", kCounter, kFull,            \
    "KV-cache events published over ZeroMQ (engine.kv_events).")                                 \
  X(int64_t, kv_events_dropped, "llmux_kv_events_dropped_total", kCounter, kFull,                \
    "KV-cache events dropped because the publisher queue was full.")                             \
  X(double, busy_seconds, "", kInfo, kFull,                                                      \
    "Seconds in steps, schedule through sampling (llmux_pool_busy_seconds_total).")              \
  X(int64_t, steps_yielded, "llmux_engine_steps_yielded_total", kCounter, kFull,               \
    "Steps stopped mid-forward for an arrival (engine.yield_to_higher_lane and _underserved).")  \
  X(int64_t, steps_yielded_underserved, "llmux_engine_steps_yielded_underserved_total",          \
    kCounter, kFull,                                                                             \
    "Of steps_yielded, those stopped for an underserved tenant (engine.yield_to_underserved).")  \
  X(double, yielded_seconds, "", kInfo, kFull,                                                   \
    "Seconds spent in stopped steps, not in busy_seconds (llmux_engine_yielded_seconds_total).") \
  X(double, cost_step_us, "", kInfo, kFull,                                                      \
    "Cost model: microseconds per step.")                                                        \
  X(double, cost_prefill_token_us, "", kInfo, kFull,                                             \
    "Cost model: microseconds per prefill token.")                                               \
  X(double, cost_decode_token_us, "", kInfo, kFull,                                              \
    "Cost model: microseconds per decode token.")                                                \
  X(double, cost_context_us, "", kInfo, kFull,                                                   \
    "Cost model: microseconds per attended position.")                                           \
  X(double, cost_sample_us, "", kInfo, kFull,                                                    \
    "Cost model: microseconds per sampled row.")                                                 \
  X(int64_t, cost_fit_steps, "", kInfo, kFull,                                                   \
    "Steps the cost model was fitted on (0: the FLOPs prior, or fixed constants).")

// The bounds (Prometheus `le`) of the engine's step histograms: llmux_engine_step_seconds,
// llmux_engine_batch_size and llmux_engine_batch_tokens. Fixed here, so the counts an engine
// keeps (in a worker process too) and the daemon's series use the same buckets.
inline constexpr double kStepSecondsBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                1.0,    2.5,     5.0,    10.0};
inline constexpr double kBatchSizeBounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
inline constexpr double kBatchTokenBounds[] = {1,   4,    16,   64,   128,  256,
                                               512, 1024, 2048, 4096, 8192, 16384};

// One step histogram as cumulative counts since the engine started: counts[i] steps whose
// value v has bounds[i - 1] < v <= bounds[i], the last entry those above every bound (+Inf);
// empty before the first step.
struct StepHistogram {
  std::vector<int64_t> counts;
  double sum = 0;

  void Observe(double v, std::span<const double> bounds) {
    if (counts.empty()) counts.assign(bounds.size() + 1, 0);
    ++counts[static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin())];
    sum += v;
  }
  int64_t Count() const { return std::accumulate(counts.begin(), counts.end(), int64_t{0}); }
  bool operator==(const StepHistogram&) const = default;
};

struct EngineStats {
#define LLMUX_ENGINE_STAT_MEMBER(type, name, metric, kind, scope, help) type name = 0;
  LLMUX_ENGINE_STATS(LLMUX_ENGINE_STAT_MEMBER)
#undef LLMUX_ENGINE_STAT_MEMBER
  // "" while the backend can run steps; otherwise why it cannot (Backend::DeviceHealth: a
  // sticky device fault). Every later step fails with Unavailable; the pool reports itself
  // unhealthy and a process pool's worker exits so that the supervisor restarts it.
  // NOTE: not in LLMUX_ENGINE_STATS (a reason, not a figure); the worker wire carries it.
  std::string device_fault;
  // The kernel each weight shape's GEMMs run (Backend::GemmChoices; empty on the CPU backend).
  // NOTE: not in LLMUX_ENGINE_STATS either (a description); the worker wire carries it.
  std::vector<GemmChoice> gemm_choices;
  // What the backend's BF16-weight MatMuls round activations to, as run
  // (Backend::CpuBf16ActivationsInUse: a CPU without AVX-512 BF16 runs kBf16 as kF32); nullopt
  // for a backend without that choice. NOTE: outside LLMUX_ENGINE_STATS too; the wire carries it.
  std::optional<CpuBf16Activations> cpu_bf16_activations;
  // Every step's duration (schedule through emit), sequences and tokens (/metrics renders them
  // per pool; a process pool's come with its worker's pings).
  // NOTE: not in LLMUX_ENGINE_STATS (histograms, not figures); the worker wire carries them.
  StepHistogram step_seconds;
  StepHistogram batch_size;
  StepHistogram batch_tokens;
};

// One row of LLMUX_ENGINE_STATS, as data.
struct EngineStatField {
  enum Kind { kGauge, kCounter, kInfo };
  enum Scope { kRouter, kFull };
  const char* name;    // the member's name: the wire and /admin/stats key
  const char* metric;  // Prometheus series name; empty when not exported
  Kind kind;
  Scope scope;
  const char* help;
};

// Calls f(const EngineStatField&, M EngineStats::*member) for every field, in table order.
template <typename F>
constexpr void ForEachEngineStat(F&& f) {
#define LLMUX_ENGINE_STAT_VISIT(type, name, metric, kind, scope, help)                          \
  static_assert(EngineStatField::kind != EngineStatField::kCounter ||                          \
                    std::is_same_v<type, int64_t>,                                             \
                "engine counters are int64_t");                                                \
  f(EngineStatField{#name, metric, EngineStatField::kind, EngineStatField::scope, help},        \
    &EngineStats::name);
  LLMUX_ENGINE_STATS(LLMUX_ENGINE_STAT_VISIT)
#undef LLMUX_ENGINE_STAT_VISIT
}

class Engine {
 public:
  virtual ~Engine() = default;

  // Takes ownership of the backend and the model (loaded on that backend), initialises the KV
  // cache and the scheduler. InvalidArgument on inconsistent settings.
  static StatusOr<std::unique_ptr<Engine>> Create(const EngineConfig& config,
                                                  std::unique_ptr<Backend> backend,
                                                  std::unique_ptr<Model> model);

  virtual const ModelConfig& model_config() const = 0;

  // ---- any thread ----
  // Registers or changes a tenant's limits (applies before the next step's scheduling).
  // Returns the validation error at once when the limits are invalid.
  virtual Status UpsertTenant(const std::string& name, const TenantLimits& limits) = 0;
  // Queues a request. Errors returned here mean nothing was queued and the sink will never be
  // called: InvalidArgument (bad sampling params, empty prompt, token outside the vocabulary),
  // Unavailable (inbox full or engine stopped). Admission errors found by the scheduler (never
  // fits, unknown tenant) arrive through the sink as a final event with `error` set.
  virtual Status Submit(EngineRequest request, OutputSink sink) = 0;
  // Aborts a request; its sink gets a final event with FinishReason::kAbort (tokens generated
  // so far are counted in its usage). Unknown ids are ignored.
  virtual void Abort(uint64_t id) = 0;
  virtual EngineStats Stats() const = 0;
  // Per-tenant stats (in-flight tokens, high-water mark, blocks); nullopt for unknown tenants.
  virtual std::optional<TenantStats> GetTenantStats(const std::string& tenant) const = 0;

  // ---- running: either a background thread, or steps driven by the caller ----
  virtual void Start() = 0;  // starts the engine thread
  // Stops the thread after the current step; unfinished requests get a final event with
  // error Unavailable ("engine stopped").
  virtual void Stop() = 0;
  // Runs one step on the calling thread (only when not Started). Returns false when there was
  // nothing to do.
  virtual StatusOr<bool> StepOnce() = 0;
  // Steps until no request is waiting or running.
  virtual Status RunUntilIdle() = 0;

  // ---- test seams (no effect unless a test calls them; see SetEngineCreatedHookForTesting) ----
  // Test-only access to the backend (raw KV block reads). Engine thread / not started only.
  virtual Backend* backend_for_testing() = 0;
  // Runs on the stepping thread after KV blocks were zeroed and before each forward pass.
  virtual void SetBeforeForwardHookForTesting(
      std::function<void(const SchedulerOutput&)> hook) = 0;
  // Fault injection: runs before each sample of each sequence (arguments: the request and
  // the number of tokens it has generated so far); a non-OK result fails that sequence alone
  // (its sink gets a final event with that error), as any per-sequence sampling failure does.
  virtual void SetSequenceFaultHookForTesting(
      std::function<Status(const EngineRequest&, int32_t num_output)> hook) = 0;
  // Forced output: runs after each sample of each sequence; a token id it returns replaces the
  // sampled token at that output position (tests of output parsing, e.g. tool calls, on a tiny
  // model that would never write one). Stop checks and everything after see the forced token.
  virtual void SetSampleOverrideHookForTesting(
      std::function<std::optional<int32_t>(const EngineRequest&, int32_t num_output)> hook) = 0;
};

// Test binaries only: `hook` runs on every engine that Engine::Create makes from now on, before
// it is returned (the test daemon `llmuxd-test` installs fault injection from its environment
// this way). Production binaries never set it, so no environment variable can reach the
// engine's test seams there. Call before any engine is created; nullptr clears it.
using EngineCreatedHook = void (*)(Engine& engine);
void SetEngineCreatedHookForTesting(EngineCreatedHook hook);

}  // namespace llmux
