// The engine's stats: published by the engine thread after each step, read by any thread.
#include "engine/engine_impl.h"

namespace llmux {

void EngineImpl::PublishStats() {
  const SchedulerStats s = scheduler_->Stats();
  EngineStats e;
  e.steps = steps_;
  e.last_step_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  e.running = s.running;
  e.waiting = s.waiting;
  e.inbox = inbox_.size();
  e.kv_usage = s.kv_usage;
  e.prompt_tokens_total = prompt_tokens_total_;
  e.generation_tokens_total = generation_tokens_total_;
  e.num_preemptions = s.num_preemptions;
  e.prefix_query_tokens = s.prefix_query_tokens;
  e.prefix_hit_tokens = s.prefix_hit_tokens;
  e.busy_seconds = busy_seconds_total_;
  e.steps_yielded = steps_yielded_;
  e.steps_yielded_underserved = steps_yielded_underserved_;
  e.yielded_seconds = yielded_seconds_;
  e.step_seconds = step_seconds_;
  e.batch_size = batch_size_;
  e.batch_tokens = batch_tokens_;
  const StepCostConstants& k = cost_model_.constants();
  e.cost_step_us = k.step_s * 1e6;
  e.cost_prefill_token_us = k.prefill_token_s * 1e6;
  e.cost_decode_token_us = k.decode_token_s * 1e6;
  e.cost_context_us = k.context_s * 1e6;
  e.cost_sample_us = k.sample_s * 1e6;
  e.cost_fit_steps = cost_model_.observed_steps();
  // kv_events_*: read live in Stats().
  if (Status health = backend_->DeviceHealth(); !health.ok()) e.device_fault = health.message();
  e.gemm_choices = backend_->GemmChoices();
  e.cpu_bf16_activations = backend_->CpuBf16ActivationsInUse();
  std::unordered_map<std::string, TenantStats> per_tenant;
  for (const std::string& name : tenants_) {
    auto id = scheduler_->FindTenant(name);
    if (!id.ok()) continue;
    TenantStats& t = per_tenant[name] = scheduler_->GetTenantStats(*id);
    if (auto it = tenant_engine_seconds_.find(name); it != tenant_engine_seconds_.end()) {
      t.engine_seconds = it->second;
    }
  }
  MutexLock lock(stats_mutex_);
  stats_ = e;
  tenant_stats_ = std::move(per_tenant);
}

EngineStats EngineImpl::Stats() const {
  EngineStats e;
  {
    MutexLock lock(stats_mutex_);
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
  MutexLock lock(stats_mutex_);
  auto it = tenant_stats_.find(tenant);
  if (it == tenant_stats_.end()) return std::nullopt;
  return it->second;
}

}  // namespace llmux
