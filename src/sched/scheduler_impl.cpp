// Scheduler: tenants, request lifecycle (Submit, Abort, Update) and observers.
#include "sched/scheduler_impl.h"

#include <algorithm>
#include <string>

namespace llmux {

StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const SchedulerConfig& config,
                                                       SchedulerPolicies policies) {
  if (config.num_kv_blocks <= 0) return InvalidArgument("num_kv_blocks must be positive");
  if (config.block_size <= 0) return InvalidArgument("block_size must be positive");
  if (config.max_seqs <= 0) return InvalidArgument("max_seqs must be positive");
  if (config.max_batched_tokens < config.max_seqs) {
    return InvalidArgument("max_batched_tokens (" + std::to_string(config.max_batched_tokens) +
                           ") must be at least max_seqs (" + std::to_string(config.max_seqs) +
                           ") so running decodes never starve admission");
  }
  if (config.max_model_len < 2) return InvalidArgument("max_model_len must be at least 2");
  if (config.lanes.empty()) return InvalidArgument("at least one lane is required");
  for (const LaneConfig& lane : config.lanes) {
    if (lane.max_wait < 0) return InvalidArgument("lane " + lane.name + ": negative max_wait");
  }
  if (config.vtc_prefill_weight < 0 || config.vtc_decode_weight < 0) {
    return InvalidArgument("VTC weights must not be negative");
  }
  if (config.long_prefill_chunk < 0) return InvalidArgument("negative long_prefill_chunk");
  if (config.underserved_credit_steps < 1 || config.underserved_credit_burst < 1) {
    return InvalidArgument("underserved_credit_steps and underserved_credit_burst must be >= 1");
  }
  return std::unique_ptr<Scheduler>(new SchedulerImpl(config, std::move(policies)));
}

SchedulerImpl::SchedulerImpl(const SchedulerConfig& config, SchedulerPolicies policies)
    : config_(config),
      fair_(policies.fair_share ? std::move(policies.fair_share)
                                : MakeVtcFairShare(config.vtc_prefill_weight,
                                                   config.vtc_decode_weight)),
      victim_(policies.victim ? std::move(policies.victim) : MakeDefaultVictimPolicy()),
      chunk_(policies.chunk ? std::move(policies.chunk)
                            : MakeDefaultChunkPolicy(config.long_prefill_chunk)),
      kv_(config.num_kv_blocks, config.block_size),
      by_lane_(config.lanes.size()),
      underserved_credit_(UnderservedCreditCap()) {  // config_ is initialised first
  if (config.kv_event_sink != nullptr) kv_.SetEventSink(config.kv_event_sink);
}

StatusOr<TenantId> SchedulerImpl::UpsertTenant(std::string_view name, const TenantLimits& limits) {
  const std::string n(name);
  if (n.empty()) return InvalidArgument("tenant name is empty");
  if (limits.lane < 0 || limits.lane >= static_cast<int32_t>(config_.lanes.size())) {
    return InvalidArgument("tenant " + n + ": lane " + std::to_string(limits.lane) +
                           " does not exist");
  }
  if (!(limits.weight > 0)) return InvalidArgument("tenant " + n + ": weight must be positive");
  if (limits.max_inflight_tokens < 0 || limits.reserved_kv_tokens < 0 ||
      limits.reserved_seqs < 0) {
    return InvalidArgument("tenant " + n + ": negative limit");
  }
  if (limits.prefix_cache == PrefixCacheMode::kShared && limits.prefix_cache_group.empty()) {
    return InvalidArgument("tenant " + n + ": shared prefix cache needs a group name");
  }
  const int64_t reserved_blocks64 =
      (limits.reserved_kv_tokens + config_.block_size - 1) / config_.block_size;
  auto it = tenant_ids_.find(n);
  const int32_t old_blocks = it == tenant_ids_.end() ? 0 : tenants_[it->second].reserved_blocks;
  const int32_t old_seqs =
      it == tenant_ids_.end() ? 0 : tenants_[it->second].limits.reserved_seqs;
  if (kv_.total_reserved_blocks() - old_blocks + reserved_blocks64 > config_.num_kv_blocks) {
    return InvalidArgument("tenant " + n + ": reserved KV of all tenants would exceed the pool (" +
                           std::to_string(config_.num_kv_blocks) + " blocks)");
  }
  if (total_reserved_seqs_ - old_seqs + limits.reserved_seqs > config_.max_seqs) {
    return InvalidArgument("tenant " + n + ": reserved seqs of all tenants would exceed max_seqs");
  }

  TenantId t;
  if (it == tenant_ids_.end()) {
    t = static_cast<TenantId>(tenants_.size());
    tenants_.emplace_back();
    tenants_[t].name = n;
    tenant_ids_.emplace(n, t);
  } else {
    t = it->second;
  }
  TenantState& ts = tenants_[t];
  if (reserved_blocks64 > old_blocks || limits.reserved_seqs > old_seqs) floors_catching_up_ = true;
  total_seq_slack_ -= SeqSlack(t);
  total_reserved_seqs_ += limits.reserved_seqs - ts.limits.reserved_seqs;
  ts.limits = limits;
  total_seq_slack_ += SeqSlack(t);
  ts.reserved_blocks = static_cast<int32_t>(reserved_blocks64);
  kv_.SetReservedBlocks(t, ts.reserved_blocks);

  // NOTE: the chain seed is derived here from the policy, never from anything a client sent.
  std::string seed_key;
  switch (limits.prefix_cache) {
    case PrefixCacheMode::kOff: break;
    case PrefixCacheMode::kPrivate: seed_key = "tenant:" + n; break;
    case PrefixCacheMode::kShared: seed_key = "group:" + limits.prefix_cache_group; break;
  }
  if (seed_key.empty()) {
    ts.root = PrefixRoot{};
  } else {
    auto [sit, inserted] =
        seed_ids_.emplace(seed_key, static_cast<int32_t>(seed_ids_.size()));
    if (inserted) kv_.SetScopeName(sit->second, seed_key);
    ts.root = PrefixRoot{sit->second, HashSeed(seed_key)};
  }
  RevalidateWaiting();
  return t;
}

StatusOr<TenantId> SchedulerImpl::FindTenant(std::string_view name) const {
  auto it = tenant_ids_.find(std::string(name));
  if (it == tenant_ids_.end()) return NotFound("unknown tenant " + std::string(name));
  return it->second;
}

int32_t SchedulerImpl::SeqSlack(TenantId t) const {
  const TenantState& ts = tenants_[t];
  return std::max(0, ts.limits.reserved_seqs - ts.running);
}

void SchedulerImpl::AddRunning(TenantId t, int32_t delta) {
  total_seq_slack_ -= SeqSlack(t);
  tenants_[t].running += delta;
  num_running_ += delta;
  total_seq_slack_ += SeqSlack(t);
}

Status SchedulerImpl::FitStatus(TenantId t, int64_t prompt, int64_t max_new,
                                bool check_budget) const {
  const TenantState& ts = tenants_[t];
  const int64_t total = prompt + max_new;
  if (total > config_.max_model_len) {
    return InvalidArgument("prompt (" + std::to_string(prompt) + " tokens) + max_new_tokens (" +
                           std::to_string(max_new) + ") exceeds the context of " +
                           std::to_string(config_.max_model_len) + " tokens");
  }
  if (check_budget && ts.limits.max_inflight_tokens > 0 &&
      total > ts.limits.max_inflight_tokens) {
    return ResourceExhausted("prompt + max_new_tokens (" + std::to_string(total) +
                             ") exceeds the tenant's max_inflight_tokens (" +
                             std::to_string(ts.limits.max_inflight_tokens) + ")");
  }
  // The last sampled token is never fed back, so a sequence holds at most total - 1 in KV.
  const int64_t blocks = (total - 1 + config_.block_size - 1) / config_.block_size;
  const int64_t available = config_.num_kv_blocks - (kv_.total_reserved_blocks() - ts.reserved_blocks);
  if (blocks > available) {
    return ResourceExhausted("request needs " + std::to_string(blocks) + " KV blocks but only " +
                             std::to_string(available) +
                             " can ever be free for this tenant (pool less others' reservations)");
  }
  if (config_.max_seqs - (total_reserved_seqs_ - ts.limits.reserved_seqs) < 1) {
    return ResourceExhausted("other tenants' reserved seqs take every slot");
  }
  return Status::Ok();
}

void SchedulerImpl::Activate(TenantId t) {
  TenantState& ts = tenants_[t];
  if (ts.active) return;
  std::vector<TenantId> peers;
  for (TenantId p = 0; p < static_cast<TenantId>(tenants_.size()); ++p) {
    if (p != t && tenants_[p].active && tenants_[p].limits.lane == ts.limits.lane) {
      peers.push_back(p);
    }
  }
  fair_->OnActivate(t, peers);
  ts.active = true;
}

void SchedulerImpl::MaybeDeactivate(TenantId t) {
  TenantState& ts = tenants_[t];
  if (ts.running == 0 && ts.queue.empty()) ts.active = false;
}

Status SchedulerImpl::Submit(SchedRequest request) {
  auto tid = FindTenant(request.tenant);
  if (!tid.ok()) return tid.status();
  const TenantId t = *tid;
  if (seqs_.count(request.id)) {
    return InvalidArgument("request id " + std::to_string(request.id) + " is already in use");
  }
  if (request.prompt.empty()) return InvalidArgument("empty prompt");
  if (request.max_new_tokens < 1) return InvalidArgument("max_new_tokens must be at least 1");
  if (request.lane < -1 || request.lane >= static_cast<int32_t>(config_.lanes.size())) {
    return InvalidArgument("request lane " + std::to_string(request.lane) + " does not exist");
  }
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  LLMUX_RETURN_IF_ERROR(FitStatus(t, prompt, request.max_new_tokens, /*check_budget=*/true));

  auto seq = std::make_unique<Seq>();
  seq->id = request.id;
  seq->tenant = t;
  seq->tokens = std::move(request.prompt);
  seq->tokens.reserve(prompt + request.max_new_tokens);
  seq->num_prompt_tokens = static_cast<int32_t>(prompt);
  seq->max_new_tokens = request.max_new_tokens;
  seq->cost = prompt + request.max_new_tokens;
  seq->wait_since = request.arrival;
  seq->arrival = ++arrival_counter_;
  seq->requested_lane = request.lane;
  Activate(t);
  // Behind every queued request of the same or a higher lane (FIFO within a lane).
  TenantState& ts = tenants_[t];
  const int32_t lane = QueueLane(ts, *seq);
  auto pos = std::find_if(ts.queue.begin(), ts.queue.end(),
                          [&](const Seq* q) { return QueueLane(ts, *q) > lane; });
  ts.queue.insert(pos, seq.get());
  ++num_waiting_;
  seqs_.emplace(request.id, std::move(seq));
  return Status::Ok();
}

void SchedulerImpl::Retire(Seq* s) {
  s->state = SeqState::kFinished;
  auto it = seqs_.find(s->id);
  LLMUX_CHECK(it != seqs_.end()) << "retiring unknown request " << s->id;
  graveyard_.push_back(std::move(it->second));
  seqs_.erase(it);
}

bool SchedulerImpl::Abort(uint64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  Seq* s = it->second.get();
  TenantState& ts = tenants_[s->tenant];
  if (s->state == SeqState::kRunning) {
    // K/V of the first num_computed tokens is complete even when a step planned before this
    // Abort still runs: it writes only later positions.
    RegisterPartialTail(s);
    kv_.Free(&s->block_table);
    AddRunning(s->tenant, -1);
  } else {
    auto q = std::find(ts.queue.begin(), ts.queue.end(), s);
    LLMUX_CHECK(q != ts.queue.end()) << "waiting request " << id << " not in its queue";
    ts.queue.erase(q);
    --num_waiting_;
  }
  if (s->budget_charged) ts.inflight -= s->cost;
  Retire(s);
  MaybeDeactivate(s->tenant);
  return true;
}

void SchedulerImpl::RegisterFullBlocks(Seq* s) {
  if (!s->root.enabled()) return;
  const int32_t bs = config_.block_size;
  const int32_t full = s->num_computed / bs;
  for (int32_t b = s->chain.num_blocks; b < full && !s->chain.broken; ++b) {
    std::span<const int32_t> toks(s->tokens.data() + static_cast<size_t>(b) * bs, bs);
    kv_.RegisterFullBlock(s->root, toks, s->block_table[b], &s->chain);
  }
}

void SchedulerImpl::RegisterPartialTail(Seq* s) {
  const int32_t bs = config_.block_size;
  const int32_t full = s->num_computed / bs;
  const int32_t tail = s->num_computed % bs;
  if (!s->root.enabled() || tail == 0 || s->chain.broken || s->chain.num_blocks != full) return;
  std::span<const int32_t> toks(s->tokens.data() + static_cast<size_t>(full) * bs, tail);
  kv_.RegisterPartialBlock(s->root, s->chain, toks, s->block_table[full]);
}

void SchedulerImpl::Finish(Seq* s, FinishReason reason, UpdateResult* result) {
  RegisterPartialTail(s);
  kv_.Free(&s->block_table);
  AddRunning(s->tenant, -1);
  tenants_[s->tenant].inflight -= s->cost;
  result->finished.push_back(FinishedSeq{s->id, s->tenant, reason, s->num_output_tokens});
  Retire(s);
  MaybeDeactivate(s->tenant);
}

UpdateResult SchedulerImpl::Update(const SchedulerOutput& output,
                                   std::span<const SampleResult> results) {
  UpdateResult result;
  if (output.seqs.empty()) {
    LLMUX_CHECK(results.empty()) << "results for an empty step";
    pending_update_ = false;
    return result;
  }
  LLMUX_CHECK(pending_update_) << "Update without a pending Schedule";
  LLMUX_CHECK(results.size() == last_.size() && output.seqs.size() == last_.size())
      << "expected " << last_.size() << " results, got " << results.size();
  for (size_t i = 0; i < results.size(); ++i) {
    Seq* s = last_[i];
    const ScheduledSeq& e = output.seqs[i];
    const SampleResult& r = results[i];
    LLMUX_CHECK(r.id == e.id && s->id == e.id) << "result " << i << " is for " << r.id
                                               << ", expected " << e.id;
    if (s->state != SeqState::kRunning) continue;  // aborted since Schedule
    LLMUX_CHECK(s->num_computed == e.num_computed_tokens)
        << "request " << s->id << " computed " << s->num_computed << " planned from "
        << e.num_computed_tokens << " entry " << i;
    s->num_computed += e.num_new_tokens;
    RegisterFullBlocks(s);
    if (!e.samples) {
      LLMUX_CHECK(r.token == kNoToken && !r.finished) << "request " << s->id
                                                      << " did not sample this step";
      continue;
    }
    LLMUX_CHECK(r.token != kNoToken) << "request " << s->id << " needs a sampled token";
    s->tokens.push_back(r.token);
    ++s->num_output_tokens;
    if (r.finished) {
      Finish(s, FinishReason::kStop, &result);
    } else if (s->num_output_tokens >= s->max_new_tokens) {
      Finish(s, FinishReason::kLength, &result);
    }
  }
  last_.clear();
  pending_update_ = false;
  underserved_credit_ = std::min(underserved_credit_ + 1, UnderservedCreditCap());
  return result;
}

void SchedulerImpl::CancelStep(const SchedulerOutput& output) {
  if (output.seqs.empty()) return;
  LLMUX_CHECK(pending_update_) << "CancelStep without a pending Schedule";
  // NOTE: entries_ still describes the plan (cleared by the next Schedule). Progress was never
  // advanced (Update does that), so only the fair-share charges are taken back, exactly as
  // Unschedule does for an entry dropped while planning. Blocks allocated for the planned
  // tokens stay with their sequence: the next plan for it needs them again.
  for (const Entry& e : entries_) {
    if (!e.live) continue;
    Seq* s = e.seq;
    if (s->state != SeqState::kRunning) continue;
    fair_->Charge(s->tenant, tenants_[s->tenant].limits.weight, -e.charged_prefill,
                  -e.charged_decode);
    s->prefill_charged_upto = e.prev_charged_upto;
  }
  last_.clear();
  pending_update_ = false;
}

std::vector<TenantId> SchedulerImpl::UnderservedStopTenants(int32_t lane) const {
  std::vector<TenantId> out;
  if (lane < 0 || lane >= static_cast<int32_t>(config_.lanes.size()) ||
      config_.lanes[static_cast<size_t>(lane)].arrival_order || !HasUnderservedCredits(2)) {
    return out;
  }
  int32_t num_active = 0;
  double lowest = 0;
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    const TenantState& ts = tenants_[t];
    if (!ts.active || ts.limits.lane != lane) continue;
    const double c = fair_->Counter(t);
    if (num_active == 0 || c < lowest) lowest = c;
    ++num_active;
  }
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    const TenantState& ts = tenants_[t];
    if (ts.limits.lane != lane) continue;
    // An idle tenant's counter is lifted to the lowest active one on arrival (a tie at
    // most); an active tenant stands where it is. Either way the arrival would make it the
    // lane's underserved tenant only next to another tenant's work.
    if (num_active - (ts.active ? 1 : 0) == 0 || fair_->Counter(t) > lowest) continue;
    // NOTE: only where a slot and a block are free for it: an arrival the next plan could
    // not admit (the lane's running work holds every slot; no preemption within a lane) would
    // stop a step for nothing.
    if (SlotAvailable(t) && kv_.CanTake(t, 1)) out.push_back(t);
  }
  return out;
}

void SchedulerImpl::ChargeUnderservedStop() {
  SpendUnderservedCredit();
  ++underserved_stops_;
}

void SchedulerImpl::RevalidateWaiting() {
  for (TenantId t = 0; t < static_cast<TenantId>(tenants_.size()); ++t) {
    TenantState& ts = tenants_[t];
    for (auto q = ts.queue.begin(); q != ts.queue.end();) {
      Seq* s = *q;
      Status st = FitStatus(t, s->num_prompt_tokens, s->max_new_tokens, !s->budget_charged);
      if (st.ok()) {
        ++q;
        continue;
      }
      q = ts.queue.erase(q);
      --num_waiting_;
      if (s->budget_charged) ts.inflight -= s->cost;
      rejected_.emplace_back(s->id, std::move(st));
      Retire(s);
    }
    MaybeDeactivate(t);
  }
}

std::vector<std::pair<uint64_t, Status>> SchedulerImpl::TakeRejected() {
  std::vector<std::pair<uint64_t, Status>> out;
  out.swap(rejected_);
  return out;
}

SchedulerStats SchedulerImpl::Stats() const {
  SchedulerStats st;
  st.running = num_running_;
  st.waiting = num_waiting_;
  st.waiting_per_lane.assign(config_.lanes.size(), 0);
  for (const TenantState& ts : tenants_) {
    st.waiting_per_lane[ts.limits.lane] += static_cast<int32_t>(ts.queue.size());
  }
  st.num_preemptions = num_preemptions_;
  st.kv_usage = static_cast<double>(kv_.num_used_blocks()) / kv_.num_blocks();
  st.free_blocks = kv_.num_free_blocks();
  st.prefix_query_tokens = kv_.prefix_query_tokens();
  st.prefix_hit_tokens = kv_.prefix_hit_tokens();
  st.underserved_prefills = underserved_prefills_;
  st.underserved_stops = underserved_stops_;
  return st;
}

TenantStats SchedulerImpl::GetTenantStats(TenantId t) const {
  const TenantState& ts = tenants_[t];
  TenantStats st;
  st.inflight_tokens = ts.inflight;
  st.inflight_high_water = ts.inflight_high_water;
  st.blocks_in_use = kv_.used_blocks(t);
  st.reserved_blocks = ts.reserved_blocks;
  st.waiting = static_cast<int32_t>(ts.queue.size());
  st.running = ts.running;
  st.fair_share_counter = fair_->Counter(t);
  return st;
}

std::optional<std::pair<std::vector<int32_t>, int32_t>> SchedulerImpl::RequestTokens(
    uint64_t id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return std::nullopt;
  return std::make_pair(it->second->tokens, it->second->num_output_tokens);
}

void SchedulerImpl::CheckInvariants() const {
  kv_.CheckInvariants();
  std::vector<int64_t> inflight(tenants_.size(), 0);
  std::vector<int32_t> running(tenants_.size(), 0), waiting(tenants_.size(), 0);
  for (const auto& [id, s] : seqs_) {
    if (s->budget_charged) inflight[s->tenant] += s->cost;
    if (s->state == SeqState::kRunning) {
      ++running[s->tenant];
      LLMUX_CHECK(static_cast<int32_t>(s->block_table.size()) >= BlocksFor(s->num_computed))
          << "request " << id << " lacks blocks for its computed tokens";
    } else {
      LLMUX_CHECK(s->state == SeqState::kWaiting) << "request " << id << " retired but known";
      LLMUX_CHECK(s->block_table.empty() && s->num_computed == 0) << "waiting " << id;
      ++waiting[s->tenant];
    }
    LLMUX_CHECK(s->num_output_tokens <= s->max_new_tokens) << "request " << id;
  }
  int32_t total_running = 0, total_waiting = 0, slack = 0;
  for (size_t t = 0; t < tenants_.size(); ++t) {
    const TenantState& ts = tenants_[t];
    LLMUX_CHECK(ts.inflight == inflight[t]) << "tenant " << ts.name << " in-flight "
                                            << ts.inflight << " != " << inflight[t];
    LLMUX_CHECK(ts.running == running[t]) << "tenant " << ts.name << " running";
    LLMUX_CHECK(static_cast<int32_t>(ts.queue.size()) == waiting[t]) << "tenant " << ts.name;
    LLMUX_CHECK(ts.active == (running[t] + waiting[t] > 0)) << "tenant " << ts.name << " active";
    LLMUX_CHECK(ts.inflight <= ts.inflight_high_water) << "tenant " << ts.name;
    total_running += running[t];
    total_waiting += waiting[t];
    slack += SeqSlack(static_cast<TenantId>(t));
  }
  LLMUX_CHECK(total_running == num_running_ && total_waiting == num_waiting_) << "counts";
  LLMUX_CHECK(num_running_ <= config_.max_seqs) << "running " << num_running_;
  LLMUX_CHECK(slack == total_seq_slack_) << "seq slack";
  if (!floors_catching_up_) {
    LLMUX_CHECK(kv_.FloorsCovered()) << "free blocks below the sum of unused reservations";
    LLMUX_CHECK(num_running_ + total_seq_slack_ <= config_.max_seqs) << "slots below floors";
  }
}

}  // namespace llmux
