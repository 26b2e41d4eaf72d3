// Scheduler implementation: state of requests and tenants, and the per-step decision.
// scheduler_impl.cpp holds tenants, Submit/Abort/Update and observers; scheduler_step.cpp holds
// Schedule (running work, admission, preemption).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kv/kv_cache_manager.h"
#include "llmux/scheduler.h"

namespace llmux {

// Chronological; a preempted sequence goes back to kWaiting.
enum class SeqState { kWaiting, kRunning, kFinished };

struct Seq {
  uint64_t id = 0;
  TenantId tenant = 0;
  std::vector<int32_t> tokens;  // [prompt + generated] the sequence's known tokens
  int32_t num_prompt_tokens = 0;
  int32_t max_new_tokens = 0;
  int32_t num_output_tokens = 0;
  int32_t num_computed = 0;        // tokens whose K/V is in the cache
  int32_t num_cached_tokens = -1;  // prefix-cache hit at first admission, -1 before it
  int32_t prefill_charged_upto = 0;  // prompt positions already charged to fair share
  int64_t cost = 0;                // prompt + max_new_tokens, the in-flight budget charge
  bool budget_charged = false;     // counted in the tenant's in-flight tokens
  int64_t wait_since = 0;          // arrival, or the time of the last preemption
  int64_t admit_order = 0;
  uint64_t arrival = 0;            // submission order (arrival-order lanes admit by it)
  int32_t lane = 0;                // lane it was admitted in (after aging)
  int32_t requested_lane = -1;     // per-request lane; -1 = the tenant's
  SeqState state = SeqState::kWaiting;
  std::vector<int32_t> block_table;
  PrefixRoot root;     // cache scope fixed at admission
  PrefixChain chain;   // position in the prefix-cache chain
  int32_t out_index = -1;  // entry in this step's plan, -1 when not scheduled

  int32_t len() const { return static_cast<int32_t>(tokens.size()); }
  int32_t remaining() const { return len() - num_computed; }
};

struct TenantState {
  std::string name;
  TenantLimits limits;
  int32_t reserved_blocks = 0;
  PrefixRoot root;
  std::deque<Seq*> queue;  // FIFO; preempted sequences return to the front
  int64_t inflight = 0;
  int64_t inflight_high_water = 0;
  int32_t running = 0;
  bool active = false;
  bool blocked = false;  // this step: its head is over the in-flight budget
};

class SchedulerImpl final : public Scheduler {
 public:
  SchedulerImpl(const SchedulerConfig& config, SchedulerPolicies policies);

  StatusOr<TenantId> UpsertTenant(std::string_view name, const TenantLimits& limits) override;
  StatusOr<TenantId> FindTenant(std::string_view name) const override;
  const std::string& TenantName(TenantId t) const override { return tenants_[t].name; }
  Status Submit(SchedRequest request) override;
  bool Abort(uint64_t id) override;
  SchedulerOutput Schedule(int64_t now) override;
  void SetStepTokenBudget(int32_t tokens) override { step_token_budget_ = tokens; }
  UpdateResult Update(const SchedulerOutput& output,
                      std::span<const SampleResult> results) override;
  void CancelStep(const SchedulerOutput& output) override;
  std::vector<TenantId> UnderservedStopTenants(int32_t lane) const override;
  void ChargeUnderservedStop() override;
  std::vector<std::pair<uint64_t, Status>> TakeRejected() override;
  bool HasWork() const override { return num_running_ + num_waiting_ > 0; }
  SchedulerStats Stats() const override;
  TenantStats GetTenantStats(TenantId t) const override;
  std::optional<std::pair<std::vector<int32_t>, int32_t>> RequestTokens(
      uint64_t id) const override;
  void CheckInvariants() const override;

 private:
  // One planned entry of the step being built.
  struct Entry {
    Seq* seq;
    int32_t num_new;
    bool samples;
    bool live;
    int64_t charged_prefill;
    int64_t charged_decode;
    int32_t prev_charged_upto;
  };

  // ---- scheduler_impl.cpp ----
  Status FitStatus(TenantId t, int64_t prompt, int64_t max_new, bool check_budget) const;
  int32_t SeqSlack(TenantId t) const;
  void AddRunning(TenantId t, int32_t delta);
  void Activate(TenantId t);
  void MaybeDeactivate(TenantId t);
  void Retire(Seq* s);  // moves ownership to graveyard_ and forgets the id
  void RegisterFullBlocks(Seq* s);
  // Caches the K/V rows of s's last, partly filled block before s's blocks are freed (token-level
  // prefix reuse for the next prompt that starts the same way).
  void RegisterPartialTail(Seq* s);
  void Finish(Seq* s, FinishReason reason, UpdateResult* result);
  void RevalidateWaiting();
  int32_t BlocksFor(int32_t tokens) const {
    return (tokens + config_.block_size - 1) / config_.block_size;
  }

  // ---- scheduler_step.cpp ----
  void CompactRunning();
  bool ScheduleRunning(Seq* s, int32_t num_new);
  // kOpen: admit normally; kFloorsOnly: lanes are blocked for this step, but a tenant may
  // still be admitted into its own unused reservation; kClosed: no step tokens left.
  enum class Admission { kOpen, kFloorsOnly, kClosed };
  // Admits waiting requests of `lane` in fair-share (or arrival) order; only tenant `only`'s
  // when it is >= 0.
  void AdmitLane(int32_t lane, Admission* admission, TenantId only = -1);
  bool TryAdmit(Seq* s, int32_t lane, bool floors_only);
  int32_t EffectiveLane(TenantId t) const;
  // The lane a waiting sequence of `ts` is queued in (its own, else the tenant's).
  static int32_t QueueLane(const TenantState& ts, const Seq& s) {
    return s.requested_lane >= 0 ? s.requested_lane : ts.limits.lane;
  }
  bool SlotAvailable(TenantId t) const;
  // The running sequence to preempt first among those allowed: for a running requester, those
  // the victim policy ranks before it; for an admission of tenant `admitting` (requester null),
  // other tenants' sequences in lanes below `lane`. Never crosses another tenant's floors.
  // nullptr when none.
  Seq* PickVictim(const Seq* requester, TenantId admitting, int32_t lane);
  VictimCandidate Candidate(const Seq* s) const;
  void Preempt(Seq* s);
  void AddEntry(Seq* s, int32_t num_new);
  void Unschedule(Seq* s);
  // Schedule's phases over the lanes [lo, hi): decodes of running sequences; then per lane the
  // running prefill chunks and the admissions.
  void PlanDecodes(int32_t lo, int32_t hi);
  void PlanPrefills(int32_t lo, int32_t hi, Admission* admission);
  // The highest lane (lowest number) with prefill work: a running sequence with more than one
  // token to compute, or a waiting request whose effective lane it is; -1 when none.
  int32_t TopPrefillLane() const;
  // The underserved tenant of `lane` for this step (docs/scheduler.md, "Yielding to an
  // underserved tenant"), or -1: a tenant with prefill work in the lane (a running prefill, or
  // a waiting head whose effective lane it is and that fits its in-flight budget), running
  // decodes of its own in the lane or not, and a counter no higher than any other tenant's
  // with work in the lane, while another tenant has running work in the lane and the bound has
  // a credit.
  TenantId UnderservedTenant(int32_t lane);
  // The bound's credits, in steps (SchedulerConfig::underserved_credit_steps per credit): at
  // most burst credits.
  int64_t UnderservedCreditCap() const {
    return static_cast<int64_t>(config_.underserved_credit_burst) *
           config_.underserved_credit_steps;
  }
  bool HasUnderservedCredits(int32_t credits) const {
    return underserved_credit_ >= static_cast<int64_t>(credits) * config_.underserved_credit_steps;
  }
  void SpendUnderservedCredit() { underserved_credit_ -= config_.underserved_credit_steps; }

  const SchedulerConfig config_;
  std::unique_ptr<FairSharePolicy> fair_;
  std::unique_ptr<VictimPolicy> victim_;
  std::unique_ptr<ChunkPolicy> chunk_;
  KvCacheManager kv_;

  std::vector<TenantState> tenants_;
  std::unordered_map<std::string, TenantId> tenant_ids_;
  std::unordered_map<std::string, int32_t> seed_ids_;
  std::unordered_map<uint64_t, std::unique_ptr<Seq>> seqs_;
  std::vector<Seq*> running_;  // admission order; may hold non-running entries until compacted
  std::vector<std::unique_ptr<Seq>> graveyard_;  // retired, alive until nothing points at them
  int32_t num_running_ = 0;
  int32_t num_waiting_ = 0;
  int32_t total_seq_slack_ = 0;  // sum over tenants of max(0, reserved_seqs - running)
  int32_t total_reserved_seqs_ = 0;
  int64_t admit_counter_ = 0;
  uint64_t arrival_counter_ = 0;  // Seq::arrival of the last submission
  int64_t num_preemptions_ = 0;
  // A reservation was raised while the pool was busy: floors are restored as work finishes.
  bool floors_catching_up_ = false;
  std::vector<std::pair<uint64_t, Status>> rejected_;

  // The step being built (valid inside Schedule), and the last plan awaiting Update.
  SchedulerOutput* out_ = nullptr;
  std::vector<Entry> entries_;
  int32_t tokens_left_ = 0;
  int32_t step_token_budget_ = 0;  // SetStepTokenBudget; 0 = max_batched_tokens
  int64_t now_ = 0;
  std::vector<std::vector<Seq*>> by_lane_;  // scratch: running sequences bucketed by lane
  std::vector<int32_t> hits_;               // scratch: prefix-cache hit blocks
  std::vector<uint8_t> lane_work_;          // scratch: UnderservedTenant's per-tenant work
  std::vector<Seq*> last_;
  bool pending_update_ = false;
  // The underserved bound: earned one per completed step, capped at burst x credit_steps.
  int64_t underserved_credit_ = 0;
  int64_t underserved_prefills_ = 0;
  int64_t underserved_stops_ = 0;
};

}  // namespace llmux
