// The telemetry services the HTTP layer feeds (all optional; null = off). Owned by the daemon,
// which keeps them alive until the server has shut down.
#pragma once

#include "llmux/admission.h"
#include "llmux/capacity_meter.h"
#include "llmux/metrics.h"
#include "llmux/quota.h"
#include "llmux/usage_ledger.h"

namespace llmux::server {

struct ServerTelemetry {
  Metrics* metrics = nullptr;
  UsageLedger* ledger = nullptr;
  QuotaTracker* quota = nullptr;
  // Capacity billing (reservations, dedicated pools); flushed before usage is read.
  CapacityMeter* capacity = nullptr;
  // Cluster mode: capacity charges also count toward the fleet's spend quota (null: local mode,
  // where `quota` alone counts them).
  Admission* admission = nullptr;
};

}  // namespace llmux::server
