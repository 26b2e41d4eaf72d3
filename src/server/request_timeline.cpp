#include "server/request_timeline.h"

#include <algorithm>

namespace llmux::server {

std::string_view PhaseEndingAt(Milestone m) {
  switch (m) {
    case Milestone::kRead:
      return "";
    case Milestone::kAuthenticated:
      return "auth";
    case Milestone::kPlanningStarted:
      return "plan_queue";
    case Milestone::kParsed:
      return "parse";
    case Milestone::kTokenized:
      return "tokenize";
    case Milestone::kAdmitted:
      return "admit";
    case Milestone::kSubmitted:
      return "submit";
    case Milestone::kEngineArrival:
      return "inbox";
    case Milestone::kFirstScheduled:
      return "queue";
    case Milestone::kFirstToken:
      return "prefill";
    case Milestone::kFirstByte:
      return "write";
  }
  return "";
}

void RequestTimeline::Mark(Milestone m, Clock::time_point t) {
  const int64_t ns =
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(t - read_).count());
  int64_t unset = 0;
  ns_[Index(m)].compare_exchange_strong(unset, ns + 1, std::memory_order_acq_rel);
}

std::optional<double> RequestTimeline::SecondsSinceRead(Milestone m) const {
  if (m == Milestone::kRead) return 0.0;
  const int64_t v = ns_[Index(m)].load(std::memory_order_acquire);
  if (v == 0) return std::nullopt;
  return static_cast<double>(v - 1) * 1e-9;
}

std::vector<std::pair<std::string_view, double>> RequestTimeline::Phases() const {
  std::vector<std::pair<std::string_view, double>> phases;
  double previous = 0;
  for (int i = 1; i < kNumMilestones; ++i) {
    const auto m = static_cast<Milestone>(i);
    const std::optional<double> at = SecondsSinceRead(m);
    if (!at) continue;
    // NOTE: milestones derived from the engine's relative timings (arrival, first scheduled)
    // can land a few microseconds before the previous one; a phase is never negative.
    phases.emplace_back(PhaseEndingAt(m), std::max(0.0, *at - previous));
    previous = std::max(previous, *at);
  }
  return phases;
}

void RequestTimeline::WhenWritten(std::function<void()> fn) {
  MutexLock lock(mutex_);
  waiting_ = std::move(fn);
  std::function<void()> ready = TakeWaiting();
  lock.Unlock();
  if (ready) ready();
}

void RequestTimeline::OnBytesWritten(Clock::time_point t) {
  if (!Has(Milestone::kFirstToken)) return;
  Mark(Milestone::kFirstByte, t);
  MutexLock lock(mutex_);
  done_ = true;
  std::function<void()> ready = TakeWaiting();
  lock.Unlock();
  if (ready) ready();
}

void RequestTimeline::Release() {
  MutexLock lock(mutex_);
  done_ = true;
  std::function<void()> ready = TakeWaiting();
  lock.Unlock();
  if (ready) ready();
}

std::function<void()> RequestTimeline::TakeWaiting() {
  if (!done_ || !waiting_) return nullptr;
  std::function<void()> fn = std::move(waiting_);
  waiting_ = nullptr;
  return fn;
}

}  // namespace llmux::server
