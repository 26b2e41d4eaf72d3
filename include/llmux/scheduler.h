// The tenant-aware batch scheduler: a pure, single-threaded decision over plain values.
//
// The engine thread owns a Scheduler and drives it once per step:
//
//   sched->Submit(req)                      // any time; rejects never-fitting requests
//   sched->Abort(id)                        // any time; frees blocks and budget at once
//   SchedulerOutput out = sched->Schedule(now);
//   backend->ZeroKvBlocks(out.blocks_to_zero);   // before the forward pass
//   ... build the ForwardBatch from out.seqs, forward, sample ...
//   UpdateResult done = sched->Update(out, results);  // results[i] answers out.seqs[i]
//
// Schedule and Update must alternate. Nothing here does I/O, takes locks or touches a device;
// every method is for the owning (engine) thread only. See docs/scheduler.md for semantics.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmux/kv_events.h"
#include "llmux/sampling.h"  // FinishReason
#include "llmux/status.h"

namespace llmux {

using TenantId = int32_t;                // dense, assigned by UpsertTenant
inline constexpr int32_t kNoToken = -1;  // "no sampled token" in SampleResult

enum class BatchingMode {
  kContinuous,  // sequences join and leave every step
  kStatic,      // benchmarks only: a batch forms, runs until its last member ends, then the next
};

enum class PrefixCacheMode {
  kOff,      // never looks up or registers blocks
  kPrivate,  // chain seeded with the tenant: hits only the tenant's own blocks
  kShared,   // chain seeded with "group:<prefix_cache_group>": hits within the group
};

// Lane 0 is the highest priority.
struct LaneConfig {
  std::string name;
  // Aging: a request waiting at least max_wait (in the caller's clock units, as passed to
  // Schedule) is admitted as if it were one lane higher. 0 disables aging for the lane.
  int64_t max_wait = 0;
  // Admission within the lane: false = the tenant with the lowest fair-share counter first;
  // true = the oldest waiting request of any tenant first (arrival order, one FIFO).
  bool arrival_order = false;
};

struct SchedulerConfig {
  int32_t num_kv_blocks = 0;
  int32_t block_size = 16;             // tokens per KV block
  int32_t max_batched_tokens = 2048;   // tokens per step (>= max_seqs)
  int32_t max_seqs = 256;              // running sequences (decode slots)
  int32_t max_model_len = 4096;        // prompt + max_new_tokens limit per request
  std::vector<LaneConfig> lanes = {LaneConfig{"default", 0}};
  BatchingMode batching = BatchingMode::kContinuous;
  double vtc_prefill_weight = 1.0;     // VTC cost of one prompt token
  double vtc_decode_weight = 2.0;      // VTC cost of one generated token
  int32_t long_prefill_chunk = 0;      // max prompt tokens per sequence per step; 0 = step budget
  // Continuous batching: a step that runs a lane's prefill (a chunk or an admission) holds no
  // work of lower lanes; they resume the next step (docs/scheduler.md, "Lane-exclusive
  // prefill"). A step in which that lane's prefill cannot run schedules lower lanes as usual.
  bool lane_exclusive_prefill = true;
  // Continuous batching, fair-share lanes: the top prefill lane's underserved tenant (prefill
  // work there, and a fair-share counter no higher than any other tenant's with work in the
  // lane, whether or not it also has decodes running) gets its decodes and its prefill in a
  // step without the lane's other tenants' work, like lane-exclusive prefill; work-conserving
  // when its prefill cannot run
  // (docs/scheduler.md, "Yielding to an underserved tenant"). Off by default here; the
  // engine's `engine.yield_to_underserved` turns it on.
  bool underserved_exclusive_prefill = false;
  // The bound on steps spent on underserved tenants (exclusive prefill steps, and steps the
  // engine stopped for an underserved arrival, ChargeUnderservedStop): a completed step earns
  // 1/underserved_credit_steps of a credit, at most underserved_credit_burst credits are
  // banked (the bank starts full), each such step costs one credit. So over any run they are
  // at most completed steps / underserved_credit_steps + underserved_credit_burst.
  int32_t underserved_credit_steps = 25;
  int32_t underserved_credit_burst = 4;
  // Not owned; must outlive the scheduler. Receives the prefix cache's stored/removed blocks on
  // the scheduler's (engine) thread; nullptr publishes nothing.
  KvEventSink* kv_event_sink = nullptr;
};

// A tenant's policy as resolved by the caller (tenancy module). Changing it with UpsertTenant
// affects admission of waiting requests from the next Schedule; already admitted requests keep
// the budget they were admitted under.
struct TenantLimits {
  int32_t lane = 0;
  double weight = 1.0;               // fair-share weight within the lane (> 0)
  int64_t max_inflight_tokens = 0;   // prompt + max_new of admitted, unfinished requests; 0 = none
  int64_t reserved_kv_tokens = 0;    // floor, rounded up to whole blocks
  int32_t reserved_seqs = 0;         // floor of running-sequence slots
  PrefixCacheMode prefix_cache = PrefixCacheMode::kPrivate;
  std::string prefix_cache_group;    // for kShared
  bool zero_kv_on_free = false;      // blocks this tenant wrote are zeroed before reuse
};

struct SchedRequest {
  uint64_t id = 0;        // unique among unfinished requests
  std::string tenant;     // a name registered with UpsertTenant
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 0;
  int64_t arrival = 0;    // caller's clock, same units as Schedule(now); starts aging
  // Per-request lane (OpenAI service_tier); -1 = the tenant's lane. Within a tenant's queue a
  // request waits behind those of its own or a higher lane only, and is admitted in its lane.
  int32_t lane = -1;
};

// One sequence's work in a step. Its new tokens sit at positions
// [num_computed_tokens, num_computed_tokens + num_new_tokens).
struct ScheduledSeq {
  uint64_t id = 0;
  TenantId tenant = 0;
  int32_t num_computed_tokens = 0;  // tokens already in the KV cache
  int32_t num_new_tokens = 0;       // this step's tokens (a prompt chunk, or 1 for a decode)
  // Views into scheduler-owned state, valid until the next Update, Abort or Schedule call.
  std::span<const int32_t> new_token_ids;  // [num_new_tokens]
  std::span<const int32_t> block_table;    // physical ids covering every token after this step
  bool samples = false;  // the step ends the known tokens: sample one token from its last row
  int32_t lane = 0;      // the lane it was admitted in (after aging)
};

struct AdmittedSeq {
  uint64_t id = 0;
  int32_t num_cached_tokens = 0;  // prompt tokens served from the prefix cache
  bool resumed = false;           // re-admitted after a preemption (not a first admission)
};

struct SchedulerOutput {
  std::vector<ScheduledSeq> seqs;       // decodes first, then prefill chunks
  std::vector<AdmittedSeq> admitted;    // admitted this step
  std::vector<uint64_t> preempted;      // running sequences sent back to their queue
  std::vector<int32_t> blocks_to_zero;  // call Backend::ZeroKvBlocks before the forward pass
  int32_t num_batched_tokens = 0;       // sum of num_new_tokens
  bool empty() const { return seqs.empty(); }
};

// The engine's answer for one ScheduledSeq, in the same order as SchedulerOutput::seqs.
struct SampleResult {
  uint64_t id = 0;
  int32_t token = kNoToken;  // the sampled token when the entry had samples, else kNoToken
  bool finished = false;     // the engine stopped it (EOS, stop string); only with a token
};

struct FinishedSeq {
  uint64_t id = 0;
  TenantId tenant = 0;
  // kStop: Update was told finished; kLength: max_new_tokens reached (never kAbort).
  FinishReason reason = FinishReason::kStop;
  int32_t num_output_tokens = 0;
};

struct UpdateResult {
  std::vector<FinishedSeq> finished;  // freed; their ids are no longer known to the scheduler
};

struct TenantStats {
  int64_t inflight_tokens = 0;
  int64_t inflight_high_water = 0;
  int32_t blocks_in_use = 0;   // block references held (a shared block counts per holder)
  int32_t reserved_blocks = 0;
  int32_t waiting = 0;         // queued, including preempted
  int32_t running = 0;
  double fair_share_counter = 0;
  // Filled by the engine, not the scheduler: the tenant's shares of the engine's busy time
  // since the engine started (llmux_tenant_engine_seconds_total).
  double engine_seconds = 0;
};

struct SchedulerStats {
  int32_t running = 0;
  int32_t waiting = 0;
  std::vector<int32_t> waiting_per_lane;  // by the tenants' configured lane
  int64_t num_preemptions = 0;
  double kv_usage = 0;  // physical blocks referenced / all blocks
  int32_t free_blocks = 0;  // free plus evictable cached blocks
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  // Steps planned as an underserved tenant's exclusive prefill
  // (SchedulerConfig::underserved_exclusive_prefill), and stops charged to the same bound.
  int64_t underserved_prefills = 0;
  int64_t underserved_stops = 0;
};

// ---- policies: small classes the scheduler is given ----

// Fair share within a lane. Counters are compared only between tenants of the same lane.
class FairSharePolicy {
 public:
  virtual ~FairSharePolicy() = default;
  // `t` has become active (it had no waiting or running work); `active_peers` are the other
  // active tenants of its lane.
  virtual void OnActivate(TenantId t, std::span<const TenantId> active_peers) = 0;
  // Service given to t (negative counts take back a charge for work that was unscheduled).
  virtual void Charge(TenantId t, double weight, int64_t prefill_tokens,
                      int64_t decode_tokens) = 0;
  // Lower is served first; higher is further above its fair share.
  virtual double Counter(TenantId t) const = 0;
};

// Virtual Token Counter (Sheng et al., OSDI 2024), weighted: Charge adds
// (prefill_weight * prefill + decode_weight * decode) / weight; OnActivate lifts the tenant
// to the smallest counter among its active peers.
std::unique_ptr<FairSharePolicy> MakeVtcFairShare(double prefill_weight, double decode_weight);

struct VictimCandidate {
  TenantId tenant = 0;
  int32_t lane = 0;            // lane the sequence was admitted in
  double fair_share = 0;       // its tenant's FairSharePolicy::Counter
  int32_t num_computed_tokens = 0;
  int64_t admit_order = 0;     // larger = admitted later
};

class VictimPolicy {
 public:
  virtual ~VictimPolicy() = default;
  // True when `a` should be preempted before `b`.
  virtual bool PreemptFirst(const VictimCandidate& a, const VictimCandidate& b) const = 0;
};

// Lowest lane, then the tenant furthest above its fair share, then the least computed
// sequence, then the latest admitted.
std::unique_ptr<VictimPolicy> MakeDefaultVictimPolicy();

class ChunkPolicy {
 public:
  virtual ~ChunkPolicy() = default;
  // Tokens to compute this step for a sequence with `remaining` uncomputed tokens (> 1, a
  // prefill) when `budget_left` tokens are left in the step. 0 skips it this step.
  virtual int32_t ChunkTokens(int32_t remaining, int32_t budget_left) const = 0;
};

// min(remaining, budget_left, long_prefill_chunk when > 0).
std::unique_ptr<ChunkPolicy> MakeDefaultChunkPolicy(int32_t long_prefill_chunk);

struct SchedulerPolicies {  // null members get the defaults above
  std::unique_ptr<FairSharePolicy> fair_share;
  std::unique_ptr<VictimPolicy> victim;
  std::unique_ptr<ChunkPolicy> chunk;
};

class Scheduler {
 public:
  // InvalidArgument when the config is inconsistent (no blocks, no lanes, max_batched_tokens <
  // max_seqs, ...).
  static StatusOr<std::unique_ptr<Scheduler>> Create(const SchedulerConfig& config,
                                                     SchedulerPolicies policies = {});
  virtual ~Scheduler() = default;

  // Registers or updates a tenant; returns its id (stable for the scheduler's lifetime).
  // InvalidArgument when the lane does not exist, the weight is not positive, the shared group
  // is empty, or all tenants' reservations together would exceed the pool or max_seqs (the old
  // limits then stay). Waiting requests that can no longer ever fit are dropped and reported
  // by TakeRejected().
  virtual StatusOr<TenantId> UpsertTenant(std::string_view name, const TenantLimits& limits) = 0;
  // The id of a registered tenant, or NotFound.
  virtual StatusOr<TenantId> FindTenant(std::string_view name) const = 0;
  virtual const std::string& TenantName(TenantId t) const = 0;

  // Queues a request. Errors (nothing is queued): NotFound (unknown tenant), InvalidArgument
  // (duplicate id, empty prompt, max_new_tokens < 1, prompt + max_new_tokens over
  // max_model_len), ResourceExhausted (over the tenant's whole max_inflight_tokens, or needing
  // more KV blocks or slots than the pool less other tenants' reservations can ever give).
  virtual Status Submit(SchedRequest request) = 0;

  // Removes a waiting or running request and frees its blocks, slot and budget now. Returns
  // false when the id is unknown (already finished, rejected or never submitted).
  virtual bool Abort(uint64_t id) = 0;

  // Decides the next step at caller time `now` (same clock as SchedRequest::arrival).
  virtual SchedulerOutput Schedule(int64_t now) = 0;

  // Caps the tokens of the steps that follow at `tokens`, clamped to [max_seqs,
  // max_batched_tokens] so every running sequence can still decode; 0 = max_batched_tokens.
  // The engine's step-time bound (engine.max_step_ms) sets it from measured step costs.
  virtual void SetStepTokenBudget(int32_t tokens) = 0;

  // Applies the step's results: results[i] answers output.seqs[i] (same id). Advances computed
  // tokens, appends sampled tokens, registers full blocks in the prefix cache, and frees
  // sequences that finished (engine said so, or max_new_tokens reached).
  virtual UpdateResult Update(const SchedulerOutput& output,
                              std::span<const SampleResult> results) = 0;

  // The step planned by the last Schedule did not run and never will (the engine stopped its
  // forward pass for a higher-lane arrival): takes back its fair-share charges and its
  // sequences' progress as if it had not been planned, and allows the next Schedule. Its
  // admissions and preemptions stand (admitted sequences keep their blocks and prefix hits,
  // and are planned again from where they were). Nothing is registered in the prefix cache.
  virtual void CancelStep(const SchedulerOutput& output) = 0;

  // The tenants of `lane` whose request, arriving now, would make them the lane's underserved
  // tenant at the next Schedule: their configured lane is `lane`, their fair-share counter is
  // no higher than the lowest counter of the lane's active tenants (an idle tenant's
  // activation lift then makes it the lowest, a tie at most; an active one, a request still
  // decoding, already is), another tenant of the lane is active, and a slot and a KV block are
  // free for it (without preempting: no preemption inside a lane). Empty for an arrival-order
  // lane or while the bound has fewer than two credits (one for the stop, one for the
  // exclusive prefill). Ascending ids.
  virtual std::vector<TenantId> UnderservedStopTenants(int32_t lane) const = 0;
  // The engine stopped the step in flight for an arrival of such a tenant: takes one credit of
  // the bound (SchedulerConfig::underserved_credit_steps).
  virtual void ChargeUnderservedStop() = 0;

  // Requests dropped from a queue because a policy update made them impossible to run, with
  // the reason; cleared by the call.
  virtual std::vector<std::pair<uint64_t, Status>> TakeRejected() = 0;

  // ---- observers ----
  virtual bool HasWork() const = 0;  // anything waiting or running
  virtual SchedulerStats Stats() const = 0;
  virtual TenantStats GetTenantStats(TenantId t) const = 0;
  // Tokens (prompt + generated) and generated count of an unfinished request, or nullopt.
  virtual std::optional<std::pair<std::vector<int32_t>, int32_t>> RequestTokens(
      uint64_t id) const = 0;
  // Aborts with a message if an internal invariant is broken (tests, debug builds).
  virtual void CheckInvariants() const = 0;
};

}  // namespace llmux
