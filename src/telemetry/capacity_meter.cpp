#include "llmux/capacity_meter.h"

#include <algorithm>

#include "telemetry/capacity_rows.h"

namespace llmux {

void CapacityMeter::Close(const std::string& tenant, Open& open, int64_t now_ms) {
  int64_t from = open.since_ms;
  while (from < now_ms) {
    const int64_t hour_end = from - from % kMsPerHour + kMsPerHour;
    const int64_t to = std::min(now_ms, hour_end);
    // Extend the previous accrual of this tenant when it ends here in the same hour with the
    // same hold (a flush every minute would otherwise queue 60 accruals an hour while the
    // ledger is unreachable).
    auto prev = std::find_if(pending_.rbegin(), pending_.rend(),
                             [&](const CapacityAccrual& a) { return a.tenant == tenant; });
    if (prev != pending_.rend() && prev->to_ms == from && prev->hold == open.hold &&
        from % kMsPerHour != 0) {
      prev->to_ms = to;
    } else {
      pending_.push_back(CapacityAccrual{tenant, from, to, open.hold});
    }
    from = to;
  }
  open.since_ms = std::max(open.since_ms, now_ms);
}

void CapacityMeter::Apply(const TenantPolicy& policy, int64_t now_ms) {
  MutexLock lock(mutex_);
  for (auto it = open_.begin(); it != open_.end();) {
    Close(it->first, it->second, now_ms);
    const TenantConfig* t = policy.Find(it->first);
    if (t == nullptr || HoldOf(*t).MilliNanoPerHour() == 0) {
      it = open_.erase(it);
    } else {
      it->second.hold = HoldOf(*t);
      ++it;
    }
  }
  for (const auto& [name, tenant] : policy.tenants) {
    CapacityHold hold = HoldOf(tenant);
    if (hold.MilliNanoPerHour() == 0 || open_.count(name) != 0) continue;
    open_[name] = Open{std::move(hold), now_ms};
  }
}

void CapacityMeter::Stop(int64_t now_ms) {
  MutexLock lock(mutex_);
  for (auto& [name, open] : open_) Close(name, open, now_ms);
  open_.clear();
}

StatusOr<std::vector<CapacityCharge>> CapacityMeter::Flush(UsageLedger& ledger, int64_t now_ms) {
  MutexLock flushing(flush_mutex_);
  std::vector<CapacityAccrual> batch;
  {
    MutexLock lock(mutex_);
    for (auto& [name, open] : open_) Close(name, open, now_ms);
    batch.swap(pending_);
  }
  auto charges = ledger.AccrueCapacity(batch);
  if (!charges.ok()) {
    // Put the batch back in front of what was closed meanwhile (time order per tenant).
    MutexLock lock(mutex_);
    batch.insert(batch.end(), pending_.begin(), pending_.end());
    pending_.swap(batch);
  }
  return charges;
}

size_t CapacityMeter::pending() const {
  MutexLock lock(mutex_);
  return pending_.size();
}

}  // namespace llmux
