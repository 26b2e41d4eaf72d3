// Scheduler::Schedule: one step's decision.
//
// Order within a step:
//   1. every running sequence with one token left (a decode), lanes high to low;
//   2. per lane, high to low: running sequences still in prefill get a chunk, then waiting
//      requests whose effective lane (after aging) is this lane are admitted, the tenant with
//      the lowest fair-share counter first (in an arrival-order lane: the oldest request of
//      any tenant first).
// Lane-exclusive prefill (SchedulerConfig::lane_exclusive_prefill): when the highest lane with
// prefill work is L and lanes below L have running work, 1 and 2 run for lanes 0..L first; if
// that planned any prefill (a chunk or an admission), the step holds only lanes 0..L.
// Otherwise 1 and 2 continue for the lanes below L, so the step stays work-conserving.
// Admission stops for the step at the first request that cannot get a slot or KV even after
// preempting lower-lane work (lanes are strict); after that only admissions that fit entirely
// inside the tenant's own unused reservation go ahead (the blocked request could never have
// used that capacity). A tenant whose head request is over its in-flight budget is skipped
// instead (its own limit never blocks others).
#include <algorithm>

#include "sched/scheduler_impl.h"

namespace llmux {

void SchedulerImpl::CompactRunning() {
  auto keep = std::remove_if(running_.begin(), running_.end(),
                             [](const Seq* s) { return s->state != SeqState::kRunning; });
  running_.erase(keep, running_.end());
  // Retired sequences may be referenced by running_ or last_ until here.
  graveyard_.clear();
}

int32_t SchedulerImpl::EffectiveLane(TenantId t) const {
  const TenantState& ts = tenants_[t];
  const int32_t lane = QueueLane(ts, *ts.queue.front());
  const int64_t max_wait = config_.lanes[lane].max_wait;
  if (lane > 0 && max_wait > 0 && now_ - ts.queue.front()->wait_since >= max_wait) {
    return lane - 1;
  }
  return lane;
}

bool SchedulerImpl::SlotAvailable(TenantId t) const {
  const int32_t others_reserved = total_seq_slack_ - SeqSlack(t);
  return num_running_ + 1 + others_reserved <= config_.max_seqs;
}

VictimCandidate SchedulerImpl::Candidate(const Seq* s) const {
  return VictimCandidate{s->tenant, s->lane, fair_->Counter(s->tenant), s->num_computed,
                         s->admit_order};
}

Seq* SchedulerImpl::PickVictim(const Seq* requester, TenantId admitting, int32_t lane) {
  Seq* best = nullptr;
  VictimCandidate best_c;
  VictimCandidate req_c;
  if (requester) req_c = Candidate(requester);
  for (Seq* v : running_) {
    if (v->state != SeqState::kRunning || v == requester) continue;
    VictimCandidate c = Candidate(v);
    if (requester ? !victim_->PreemptFirst(c, req_c) : v->lane <= lane) continue;
    // NOTE: an admission never preempts its own tenant's running work (an aged request could
    // otherwise evict the same tenant's older, unaged one and only swap them).
    if (!requester && v->tenant == admitting) continue;
    const bool same_tenant = requester && requester->tenant == v->tenant;
    if (!same_tenant) {
      // Floors: preemption never takes a tenant below its reserved blocks or slots.
      const TenantState& vt = tenants_[v->tenant];
      if (vt.running - 1 < vt.limits.reserved_seqs) continue;
      if (kv_.used_blocks(v->tenant) - kv_.CountFreeable(v->tenant, v->block_table) <
          vt.reserved_blocks) {
        continue;
      }
    }
    if (!best || victim_->PreemptFirst(c, best_c)) {
      best = v;
      best_c = c;
    }
  }
  return best;
}

void SchedulerImpl::Unschedule(Seq* s) {
  if (s->out_index < 0) return;
  Entry& e = entries_[s->out_index];
  e.live = false;
  tokens_left_ += e.num_new;
  fair_->Charge(s->tenant, tenants_[s->tenant].limits.weight, -e.charged_prefill,
                -e.charged_decode);
  s->prefill_charged_upto = e.prev_charged_upto;
  s->out_index = -1;
}

void SchedulerImpl::Preempt(Seq* s) {
  Unschedule(s);
  kv_.Free(&s->block_table);
  s->chain = PrefixChain{};
  s->num_computed = 0;
  s->state = SeqState::kWaiting;
  s->wait_since = now_;
  AddRunning(s->tenant, -1);
  // First among the tenant's waiting work of its lane (per-request lanes keep the queue
  // ordered by lane).
  TenantState& ts = tenants_[s->tenant];
  const int32_t lane = QueueLane(ts, *s);
  ts.queue.insert(std::find_if(ts.queue.begin(), ts.queue.end(),
                               [&](const Seq* q) { return QueueLane(ts, *q) >= lane; }),
                  s);
  ++num_waiting_;
  ++num_preemptions_;
  out_->preempted.push_back(s->id);
  auto& adm = out_->admitted;
  adm.erase(std::remove_if(adm.begin(), adm.end(),
                           [s](const AdmittedSeq& a) { return a.id == s->id; }),
            adm.end());
}

void SchedulerImpl::AddEntry(Seq* s, int32_t num_new) {
  LLMUX_CHECK(s->out_index < 0) << "request " << s->id << " planned twice";
  const int32_t c = s->num_computed;
  const bool samples = c + num_new == s->len();
  const int32_t prompt_end = std::min(c + num_new, s->num_prompt_tokens);
  const int64_t prefill = std::max(0, prompt_end - std::max(c, s->prefill_charged_upto));
  const int64_t decode = samples ? 1 : 0;
  fair_->Charge(s->tenant, tenants_[s->tenant].limits.weight, prefill, decode);
  entries_.push_back(Entry{s, num_new, samples, true, prefill, decode, s->prefill_charged_upto});
  s->prefill_charged_upto = std::max(s->prefill_charged_upto, prompt_end);
  s->out_index = static_cast<int32_t>(entries_.size()) - 1;
  tokens_left_ -= num_new;
}

bool SchedulerImpl::ScheduleRunning(Seq* s, int32_t num_new) {
  const int32_t need = BlocksFor(s->num_computed + num_new) -
                       static_cast<int32_t>(s->block_table.size());
  if (need > 0) {
    while (!kv_.CanTake(s->tenant, need)) {
      Seq* v = PickVictim(s, s->tenant, 0);
      if (!v) {
        // Nothing ranks below it: it yields its own blocks (recompute later) rather than stall.
        Preempt(s);
        return false;
      }
      Preempt(v);
    }
    const bool ok = kv_.Allocate(s->tenant, tenants_[s->tenant].limits.zero_kv_on_free, {}, need,
                                 &s->block_table);
    LLMUX_CHECK(ok) << "allocation after CanTake failed";
  }
  AddEntry(s, num_new);
  return true;
}

bool SchedulerImpl::TryAdmit(Seq* s, int32_t lane, bool floors_only) {
  const TenantId t = s->tenant;
  TenantState& ts = tenants_[t];
  if (floors_only && SeqSlack(t) == 0) return false;
  while (!SlotAvailable(t)) {
    Seq* v = PickVictim(nullptr, t, lane);
    if (!v) return false;
    Preempt(v);
  }
  const int32_t bs = config_.block_size;
  const bool first = s->num_cached_tokens < 0;
  // At least one token must be computed to produce logits, so the last token is never a hit.
  const int32_t max_hit_blocks = (s->len() - 1) / bs;
  hits_.clear();
  PrefixChain chain;
  const int32_t hit_blocks =
      kv_.MatchPrefix(ts.root, s->tokens, max_hit_blocks, &hits_, &chain, /*count_stats=*/first);
  // Then the tokens a cached partial tail holds, inside the next block.
  const int32_t full = hit_blocks * bs;
  const PartialHit partial =
      kv_.MatchPartial(ts.root, chain, std::span<const int32_t>(s->tokens).subspan(full),
                       s->len() - 1 - full, /*count_stats=*/first);
  const int32_t adopted = partial.block >= 0 ? 1 : 0;
  const int32_t computed = full + partial.num_tokens;
  const int32_t remaining = s->len() - computed;
  int32_t num_new = remaining == 1 ? std::min(1, tokens_left_)
                                   : chunk_->ChunkTokens(remaining, tokens_left_);
  if (num_new <= 0 && config_.batching == BatchingMode::kContinuous) return false;
  num_new = std::max(num_new, 0);
  const int32_t fresh = std::max(0, BlocksFor(computed + num_new) - hit_blocks - adopted);
  auto taken = [&] { return fresh + kv_.CountUnreferenced(hits_) + adopted; };
  if (floors_only && taken() > kv_.unused_reservation(t)) return false;
  // NOTE: preempting victims frees blocks without evicting any, so the hits and the partial
  // block stay valid through this loop.
  while (!kv_.CanTake(t, taken())) {
    Seq* v = PickVictim(nullptr, t, lane);
    if (!v) return false;
    Preempt(v);
  }
  const bool ok =
      kv_.Allocate(t, ts.limits.zero_kv_on_free, hits_, partial, fresh, &s->block_table);
  LLMUX_CHECK(ok) << "allocation after CanTake failed";

  LLMUX_CHECK(ts.queue.front() == s) << "request " << s->id << " is not its queue's head";
  ts.queue.pop_front();
  --num_waiting_;
  s->state = SeqState::kRunning;
  s->num_computed = computed;
  s->root = ts.root;
  s->chain = chain;
  s->lane = lane;
  s->admit_order = ++admit_counter_;
  running_.push_back(s);
  AddRunning(t, 1);
  if (!s->budget_charged) {
    s->budget_charged = true;
    ts.inflight += s->cost;
    ts.inflight_high_water = std::max(ts.inflight_high_water, ts.inflight);
  }
  if (first) s->num_cached_tokens = computed;
  out_->admitted.push_back(AdmittedSeq{s->id, first ? computed : s->num_cached_tokens, !first});
  if (num_new > 0) AddEntry(s, num_new);
  return true;
}

void SchedulerImpl::AdmitLane(int32_t lane, Admission* admission, TenantId only) {
  while (*admission != Admission::kClosed) {
    if (tokens_left_ <= 0 && config_.batching == BatchingMode::kContinuous) {
      *admission = Admission::kClosed;
      return;
    }
    const bool floors_only = *admission == Admission::kFloorsOnly;
    // Fair-share lanes order tenants by their counters; arrival-order lanes by their head
    // requests' submission order (one FIFO over the lane's tenants).
    const bool by_arrival = config_.lanes[static_cast<size_t>(lane)].arrival_order;
    TenantId best = -1;
    double best_key = 0;
    for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
      const TenantState& ts = tenants_[t];
      if ((only >= 0 && t != only) || ts.queue.empty() || ts.blocked || EffectiveLane(t) != lane) {
        continue;
      }
      if (floors_only && SeqSlack(t) == 0) continue;
      const double key = by_arrival ? static_cast<double>(ts.queue.front()->arrival)
                                    : fair_->Counter(t);
      if (best < 0 || key < best_key) {
        best = t;
        best_key = key;
      }
    }
    if (best < 0) return;
    TenantState& ts = tenants_[best];
    Seq* head = ts.queue.front();
    if (!head->budget_charged && ts.limits.max_inflight_tokens > 0 &&
        ts.inflight + head->cost > ts.limits.max_inflight_tokens) {
      ts.blocked = true;
      continue;
    }
    if (!TryAdmit(head, lane, floors_only)) {
      if (floors_only) {
        ts.blocked = true;  // its head does not fit its floor; try other tenants
      } else {
        *admission = Admission::kFloorsOnly;
      }
    }
  }
}

int32_t SchedulerImpl::TopPrefillLane() const {
  int32_t top = -1;
  auto consider = [&](int32_t lane) {
    if (top < 0 || lane < top) top = lane;
  };
  for (const Seq* s : running_) {
    if (s->state == SeqState::kRunning && s->remaining() > 1) consider(s->lane);
  }
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    if (!tenants_[t].queue.empty()) consider(EffectiveLane(t));
  }
  return top;
}

TenantId SchedulerImpl::UnderservedTenant(int32_t lane) {
  if (lane < 0 || config_.lanes[static_cast<size_t>(lane)].arrival_order ||
      !HasUnderservedCredits(1)) {
    return -1;
  }
  // Per tenant, its work in `lane`: bit 0 a running decode or a queue head over its budget,
  // bit 1 prefill work the step could run, bit 2 any running sequence.
  constexpr uint8_t kDecode = 1, kPrefill = 2, kRunning = 4;
  // NOTE: a member's capacity, reused: no allocation per step.
  std::vector<uint8_t>& work = lane_work_;
  work.assign(tenants_.size(), 0);
  for (const Seq* s : by_lane_[static_cast<size_t>(lane)]) {
    if (s->state != SeqState::kRunning) continue;
    work[s->tenant] |= kRunning | (s->remaining() > 1 ? kPrefill : kDecode);
  }
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    const TenantState& ts = tenants_[t];
    if (ts.queue.empty() || EffectiveLane(t) != lane) continue;
    const Seq* head = ts.queue.front();
    const bool over_budget = !head->budget_charged && ts.limits.max_inflight_tokens > 0 &&
                             ts.inflight + head->cost > ts.limits.max_inflight_tokens;
    // NOTE: a head over its budget is still the tenant's work (it competes on its counter),
    // but not prefill the step could run.
    work[t] |= over_budget ? kDecode : kPrefill;
  }
  // NOTE: U may have running decodes of its own in the lane (its previous request): the test
  // is its fair-share standing, not idleness.
  TenantId best = -1;
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    if ((work[t] & kPrefill) == 0) continue;
    if (best < 0 || fair_->Counter(t) < fair_->Counter(best)) best = t;
  }
  if (best < 0) return -1;
  bool others_running = false;
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    if (t == best || work[t] == 0) continue;
    if (fair_->Counter(t) < fair_->Counter(best)) return -1;
    others_running |= (work[t] & kRunning) != 0;
  }
  return others_running ? best : -1;
}

void SchedulerImpl::PlanDecodes(int32_t lo, int32_t hi) {
  for (int32_t lane = lo; lane < hi; ++lane) {
    for (Seq* s : by_lane_[lane]) {
      if (tokens_left_ <= 0) return;
      if (s->state == SeqState::kRunning && s->out_index < 0 && s->remaining() == 1) {
        ScheduleRunning(s, 1);
      }
    }
  }
}

void SchedulerImpl::PlanPrefills(int32_t lo, int32_t hi, Admission* admission) {
  for (int32_t lane = lo; lane < hi; ++lane) {
    for (Seq* s : by_lane_[lane]) {
      if (s->state != SeqState::kRunning || s->out_index >= 0 || s->remaining() <= 1) continue;
      const int32_t n = chunk_->ChunkTokens(s->remaining(), tokens_left_);
      if (n > 0) ScheduleRunning(s, n);
    }
    AdmitLane(lane, admission);
  }
}

SchedulerOutput SchedulerImpl::Schedule(int64_t now) {
  LLMUX_CHECK(!pending_update_) << "Schedule called twice without Update";
  SchedulerOutput out;
  out_ = &out;
  now_ = now;
  tokens_left_ = step_token_budget_ > 0
                     ? std::clamp(step_token_budget_, config_.max_seqs, config_.max_batched_tokens)
                     : config_.max_batched_tokens;
  entries_.clear();
  CompactRunning();
  if (floors_catching_up_ && kv_.FloorsCovered() &&
      num_running_ + total_seq_slack_ <= config_.max_seqs) {
    floors_catching_up_ = false;
  }
  for (TenantState& ts : tenants_) ts.blocked = false;
  for (auto& v : by_lane_) v.clear();
  for (Seq* s : running_) by_lane_[s->lane].push_back(s);

  const int32_t num_lanes = static_cast<int32_t>(by_lane_.size());
  Admission admission = config_.batching == BatchingMode::kContinuous || num_running_ == 0
                            ? Admission::kOpen
                            : Admission::kClosed;
  // Lane-exclusive prefill: when lane L has prefill to run and lower lanes have running work,
  // lanes 0..L are planned first; if a prefill of theirs made it into the step, the step ends
  // there (lower lanes' decodes wait one step), otherwise the lower lanes are planned as usual.
  int32_t split = num_lanes;
  if (config_.lane_exclusive_prefill && config_.batching == BatchingMode::kContinuous) {
    const int32_t top = TopPrefillLane();
    if (top >= 0) {
      for (int32_t lane = top + 1; lane < num_lanes && split == num_lanes; ++lane) {
        if (!by_lane_[lane].empty()) split = top + 1;
      }
    }
  }
  auto planned_since = [this](size_t from) {
    return std::any_of(entries_.begin() + static_cast<ptrdiff_t>(from), entries_.end(),
                       [](const Entry& e) { return e.live; });
  };
  // Underserved tenant U of the top prefill lane: lanes above it decode, then U's decodes of
  // the lane, then only U's prefill of the lane is planned; if a prefill got in, the step ends
  // there. Otherwise U's decodes are taken back and the step goes on as below (the higher
  // lanes' planned decodes are not planned twice).
  bool underserved_step = false;
  if (config_.underserved_exclusive_prefill && config_.batching == BatchingMode::kContinuous) {
    const int32_t top = TopPrefillLane();
    const TenantId u = UnderservedTenant(top);
    if (u >= 0) {
      PlanDecodes(0, top);
      const size_t higher_end = entries_.size();
      std::vector<Seq*>& lane_seqs = by_lane_[static_cast<size_t>(top)];
      for (Seq* s : lane_seqs) {
        if (tokens_left_ <= 0) break;
        if (s->tenant == u && s->state == SeqState::kRunning && s->out_index < 0 &&
            s->remaining() == 1) {
          ScheduleRunning(s, 1);
        }
      }
      const size_t decodes_end = entries_.size();
      for (Seq* s : lane_seqs) {
        if (s->tenant != u || s->state != SeqState::kRunning || s->out_index >= 0) continue;
        const int32_t n = chunk_->ChunkTokens(s->remaining(), tokens_left_);
        if (n > 0) ScheduleRunning(s, n);
      }
      AdmitLane(top, &admission, u);
      underserved_step = planned_since(decodes_end);
      if (underserved_step) {
        SpendUnderservedCredit();
        ++underserved_prefills_;
      } else {
        // NOTE: in plan order as without the rule: U's decodes go back (their blocks stay
        // with them) and are planned again with the lane's.
        for (size_t i = higher_end; i < decodes_end; ++i) {
          if (entries_[i].live) Unschedule(entries_[i].seq);
        }
      }
    }
  }
  if (!underserved_step) {
    PlanDecodes(0, split);
    const size_t decodes_end = entries_.size();
    PlanPrefills(0, split, &admission);
    if (split < num_lanes && !planned_since(decodes_end)) {
      PlanDecodes(split, num_lanes);
      PlanPrefills(split, num_lanes, &admission);
    }
  }

  // Emit the live entries in plan order; views are taken now that no table changes.
  last_.clear();
  out.seqs.reserve(entries_.size());
  for (const Entry& e : entries_) {
    Seq* s = e.seq;
    if (!e.live) continue;
    s->out_index = -1;
    out.seqs.push_back(ScheduledSeq{
        s->id, s->tenant, s->num_computed, e.num_new,
        std::span<const int32_t>(s->tokens.data() + s->num_computed, e.num_new),
        std::span<const int32_t>(s->block_table), e.samples, s->lane});
    out.num_batched_tokens += e.num_new;
    last_.push_back(s);
  }
  out.blocks_to_zero = kv_.TakeBlocksToZero();
  pending_update_ = !out.seqs.empty();
  out_ = nullptr;
  return out;
}

}  // namespace llmux
