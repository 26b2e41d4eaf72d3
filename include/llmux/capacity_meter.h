// Capacity billing: turns the capacity each tenant holds under the policy in force (its
// reservation, its dedicated pool) into capacity rows of the usage ledger, one per tenant and
// UTC hour, prorated to the millisecond across policy reloads. See docs/billing.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llmux/status.h"
#include "llmux/thread_annotations.h"
#include "llmux/tenant_policy.h"
#include "llmux/usage_ledger.h"

namespace llmux {

// Thread-safe: Apply from the reload paths, Flush from a timer thread and the usage routes.
// Time is passed in (Unix ms), so tests drive a month through it.
class CapacityMeter {
 public:
  CapacityMeter() = default;
  CapacityMeter(const CapacityMeter&) = delete;
  CapacityMeter& operator=(const CapacityMeter&) = delete;

  // From `now_ms` on, each tenant of `policy` holds HoldOf(tenant): the time each tenant held
  // its previous hold up to now is set aside for the next Flush, and tenants no longer in the
  // policy stop being charged. Tenants whose hold costs nothing are not tracked (no rows).
  void Apply(const TenantPolicy& policy, int64_t now_ms);

  // Writes the time held up to `now_ms` (split at UTC hours) to `ledger`. On success returns
  // what each touched row gained and forgets the written time; on failure (e.g. PostgreSQL
  // unreachable) keeps it, so the next Flush writes it, and returns the ledger's error.
  StatusOr<std::vector<CapacityCharge>> Flush(UsageLedger& ledger, int64_t now_ms);

  // Stops charging every tenant at `now_ms` (the daemon's drain); a Flush after it writes the
  // rest.
  void Stop(int64_t now_ms);

  // Accruals waiting for the next Flush (tests, /metrics).
  size_t pending() const;

 private:
  struct Open {
    CapacityHold hold;
    int64_t since_ms = 0;
  };
  // Moves [open.since_ms, now_ms) of `tenant` to pending_, split at UTC hours.
  void Close(const std::string& tenant, Open& open, int64_t now_ms) REQUIRES(mutex_);

  mutable Mutex mutex_;
  std::map<std::string, Open> open_ GUARDED_BY(mutex_);
  std::vector<CapacityAccrual> pending_ GUARDED_BY(mutex_);  // in time order per tenant
  Mutex flush_mutex_;                                         // one Flush at a time
};

}  // namespace llmux
