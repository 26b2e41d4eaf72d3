// Cluster mode: the Admission whose figures are the whole fleet's, kept in Redis (src/cluster/).
// Semantics, key layout and what each guarantee becomes while Redis is down:
// docs/deployment.md.
#pragma once

#include <memory>

#include "llmux/admission.h"
#include "llmux/config.h"
#include "llmux/status.h"

namespace llmux {

class ClusterAdmission : public Admission {
 public:
  // Starts the replica's store thread (heartbeat, reconnects, reconciliation, the writes of
  // LeaveQueue/Finish). Redis need not be reachable yet: until it is, admission runs as
  // `cluster.on_store_failure` says. `cluster.replica_id` must be set (the daemon defaults it to
  // HOSTNAME:PORT). InvalidArgument when `cluster` is not enabled or has no replica id.
  // `ledger_totals` (may be null; must outlive the admission): this replica's usage from its
  // own ledger, read once per tenant to seed the replica's share of the fleet's quota counters
  // when Redis has none for the period (cluster mode just enabled, or Redis lost its data).
  static StatusOr<std::unique_ptr<ClusterAdmission>> Create(const ClusterSection& cluster,
                                                            QuotaTracker* ledger_totals = nullptr);

  // Blocks until the store is up and every change made before the call has been written to
  // it, or `timeout` passed; true when it got there. Any thread but an I/O thread (tests,
  // shutdown).
  virtual bool Flush(Millis timeout) = 0;
};

}  // namespace llmux
