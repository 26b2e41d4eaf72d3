#include "server/capacity_billing.h"

#include <chrono>

#include "llmux/capacity_meter.h"
#include "llmux/log.h"

namespace llmux::server {

Status FlushCapacity(const ServerTelemetry& telemetry, int64_t now_ms) {
  if (telemetry.capacity == nullptr || telemetry.ledger == nullptr) return Status::Ok();
  auto charges = telemetry.capacity->Flush(*telemetry.ledger, now_ms);
  if (!charges.ok()) {
    LogEvent(LogLevel::kError, "capacity_write_failed",
             {F("error", charges.status().message()),
              F("pending", static_cast<long long>(telemetry.capacity->pending()))});
    return charges.status();
  }
  for (const CapacityCharge& c : *charges) {
    // The shared store first: a tenant it has not seen yet is seeded from `quota`, which must
    // not hold this charge at that moment.
    if (telemetry.admission != nullptr) {
      telemetry.admission->RecordCharge(c.tenant, c.hour_start_ms, c.added_nano);
    }
    if (telemetry.quota != nullptr) telemetry.quota->Record(c.tenant, c.hour_start_ms, 0, c.added_nano);
  }
  return Status::Ok();
}

CapacityFlusher::CapacityFlusher(ServerTelemetry telemetry, std::chrono::milliseconds interval)
    : telemetry_(telemetry), interval_(interval) {
  thread_ = std::thread([this] {
    MutexLock lock(mutex_);
    while (!cv_.WaitFor(lock, interval_, [this]() REQUIRES(mutex_) { return stopping_; })) {
      lock.Unlock();
      (void)FlushCapacity(telemetry_, WallClockMs());  // logged inside; retried next time
      lock.Lock();
    }
  });
}

CapacityFlusher::~CapacityFlusher() { Stop(); }

void CapacityFlusher::Stop() {
  {
    MutexLock lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.NotifyAll();
  thread_.join();
  if (telemetry_.capacity != nullptr) telemetry_.capacity->Stop(WallClockMs());
  (void)FlushCapacity(telemetry_, WallClockMs());
}

int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace llmux::server
