// Tenant policy -> pools: scheduler limits, and the checks that bind tenants to pools.
#include "llmux/pool.h"

namespace llmux {

std::string_view PoolStateName(PoolState state) {
  switch (state) {
    case PoolState::kStarting: return "starting";
    case PoolState::kReady: return "ready";
    case PoolState::kRestarting: return "restarting";
    case PoolState::kStopped: return "stopped";
  }
  return "starting";
}

TenantLimits TenantLimitsOf(const TenantConfig& t) {
  TenantLimits l;
  l.lane = t.lane_index;
  l.weight = t.weight;
  l.max_inflight_tokens = t.max_inflight_tokens;
  l.reserved_kv_tokens = t.reserved.kv_tokens;
  l.reserved_seqs = static_cast<int32_t>(t.reserved.seqs);
  switch (t.prefix_cache.mode) {
    case PrefixCachePolicy::Mode::kPrivate: l.prefix_cache = PrefixCacheMode::kPrivate; break;
    case PrefixCachePolicy::Mode::kShared: l.prefix_cache = PrefixCacheMode::kShared; break;
    case PrefixCachePolicy::Mode::kOff: l.prefix_cache = PrefixCacheMode::kOff; break;
  }
  l.prefix_cache_group = t.prefix_cache.group;
  l.zero_kv_on_free = t.zero_kv_on_free;
  return l;
}

Status CheckPolicyFitsPools(const TenantPolicy& policy, const ServerConfig& config) {
  std::string names;
  for (const PoolSection& p : config.pools) names += (names.empty() ? "" : ", ") + p.name;
  for (const auto& [name, t] : policy.tenants) {
    if (FindPool(config, t.pool) == nullptr) {
      return FailedPrecondition(policy.source.string() + ": tenant \"" + name +
                                "\" names unknown pool \"" + t.pool + "\" (pools: " + names + ")");
    }
  }
  for (const PoolSection& p : config.pools) {
    const Reservation total = TotalReserved(policy, p.name);
    if (total.kv_tokens > p.engine.kv_cache_tokens) {
      return FailedPrecondition(policy.source.string() + ": reserved.kv_tokens of pool \"" +
                                p.name + "\" total " + std::to_string(total.kv_tokens) +
                                " exceeds its kv_cache_tokens " +
                                std::to_string(p.engine.kv_cache_tokens));
    }
    if (total.seqs > p.engine.max_seqs) {
      return FailedPrecondition(policy.source.string() + ": reserved.seqs of pool \"" + p.name +
                                "\" total " + std::to_string(total.seqs) +
                                " exceeds its max_seqs " + std::to_string(p.engine.max_seqs));
    }
  }
  return Status::Ok();
}

}  // namespace llmux
