// The daemon's side of capacity billing: writing what the CapacityMeter measured to the usage
// ledger and the quota totals.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

#include "llmux/status.h"
#include "llmux/thread_annotations.h"
#include "server/server_telemetry.h"

namespace llmux::server {

// Flushes telemetry.capacity into telemetry.ledger up to `now_ms` and adds each row's gain to
// telemetry.quota. A failure (PostgreSQL unreachable) is logged once per call as
// `capacity_write_failed` and returned; the time stays pending for the next flush. OK and a
// no-op when the meter or the ledger is off. Any thread.
Status FlushCapacity(const ServerTelemetry& telemetry, int64_t now_ms);

// Flushes capacity every `interval` on its own thread, so that quota totals follow held
// capacity and a crash loses at most one interval of it (the next run does not bill the time
// it was down). Stop (or the destructor) flushes once more and ends the thread.
class CapacityFlusher {
 public:
  CapacityFlusher(ServerTelemetry telemetry, std::chrono::milliseconds interval);
  ~CapacityFlusher();
  CapacityFlusher(const CapacityFlusher&) = delete;
  CapacityFlusher& operator=(const CapacityFlusher&) = delete;

  // Stops charging (CapacityMeter::Stop at now), writes the rest and ends the thread.
  // Idempotent; any thread but the flusher's.
  void Stop();

 private:
  const ServerTelemetry telemetry_;
  const std::chrono::milliseconds interval_;
  Mutex mutex_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mutex_) = false;
  std::thread thread_;
};

// The wall clock in Unix milliseconds.
int64_t WallClockMs();

}  // namespace llmux::server
