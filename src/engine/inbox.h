// The engine's inbox: the one queue other threads use to reach the engine thread (submits,
// aborts, tenant upserts), bounded per lane for submits, the flag that stops the engine, and
// the yield flag that asks the step in flight to stop for a higher-lane arrival.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "llmux/engine.h"
#include "llmux/thread_annotations.h"

namespace llmux {

struct SubmitItem {
  EngineRequest request;
  OutputSink sink;
};
struct AbortItem {
  uint64_t id;
};
struct UpsertItem {
  std::string name;
  TenantLimits limits;
};
using InboxItem = std::variant<SubmitItem, AbortItem, UpsertItem>;

// Thread-safe.
//
// Lanes: a submit counts against the bound of its lane (EngineRequest::lane, else its tenant's
// lane as last upserted; an unknown tenant's, or an out-of-range lane, counts in the lowest
// lane), so a flood in one lane cannot fill the inbox for another.
//
// Yield: while the engine thread has a step in flight (BeginStep .. EndStep or the next
// TakeAll), a submit raises yield_flag() when its lane is above every lane in that step
// (engine.yield_to_higher_lane), or when its tenant is one of the step's underserved
// tenants and it arrives in the step's top lane (engine.yield_to_underserved: the new request
// would make its tenant the lane's most underserved, Scheduler::UnderservedStopTenants; one
// stop per submit at most);
// so does BeginStep when such a submit is already queued. The flag is lowered by TakeAll, when
// the engine takes the arrivals into its next schedule. Submits outside a step raise nothing.
class EngineInbox {
 public:
  // `max_per_lane`: bound on the submits queued per lane; `num_lanes` >= 1.
  EngineInbox(int32_t max_per_lane, int32_t num_lanes);

  // Queues a submit; Unavailable when the inbox is closed or the submit's lane is full.
  Status PushSubmit(SubmitItem item);
  // Queues an abort or an upsert (never bounded); Unavailable when the inbox is closed. An
  // upsert also records the tenant's lane for the submits that follow.
  Status Push(InboxItem item);
  // Everything queued, in order; the inbox is empty afterwards, no step is in flight and the
  // yield flag is lowered.
  std::deque<InboxItem> TakeAll();
  int32_t size() const;
  // Submits queued in `lane` (tests, stats).
  int32_t lane_size(int32_t lane) const;

  // Why the yield flag was raised (the first reason since the last TakeAll).
  enum class YieldReason { kNone, kHigherLane, kUnderserved };

  // A step whose highest lane (lowest number) is `top_lane` is in flight. `higher_lanes`: a
  // submit of a lane above `top_lane` stops it; `underserved`: a submit in `top_lane` by one of
  // these tenants stops it.
  void BeginStep(int32_t top_lane, bool higher_lanes, std::vector<std::string> underserved);
  // No step is in flight any more.
  void EndStep();
  // Raised when the step in flight should stop for a higher-lane arrival (checked by the model
  // between layers). Stable address for the inbox's lifetime.
  const std::atomic<bool>* yield_flag() const { return &yield_; }
  YieldReason yield_reason() const;

  // Closes the inbox (pushes fail from now on) and wakes a waiting engine thread. Returns false
  // when it was already closed.
  bool Close();
  bool closed() const;
  // Waits up to `timeout` for an item or Close; returns at once when an item is queued.
  // Returns whether the inbox is closed.
  bool WaitForItem(std::chrono::milliseconds timeout);

 private:
  // NOTE: no lane is below it, so outside a step no submit raises the flag (one that arrives
  // between TakeAll and BeginStep is seen by BeginStep).
  static constexpr int32_t kNoStep = -1;
  int32_t LaneOf(const EngineRequest& request) const REQUIRES(mutex_);
  // Whether `request` (of lane `lane`) stops the step in flight, and why.
  YieldReason Stops(const EngineRequest& request, int32_t lane) const REQUIRES(mutex_);
  void Raise(YieldReason reason) REQUIRES(mutex_);

  const int32_t max_per_lane_;
  const int32_t num_lanes_;
  mutable Mutex mutex_;
  CondVar cv_;
  std::deque<InboxItem> items_ GUARDED_BY(mutex_);
  std::vector<int32_t> lane_counts_ GUARDED_BY(mutex_);  // queued submits per lane
  std::unordered_map<std::string, int32_t> tenant_lanes_ GUARDED_BY(mutex_);
  int32_t step_top_lane_ GUARDED_BY(mutex_) = kNoStep;  // the step in flight's highest lane
  bool step_higher_lanes_ GUARDED_BY(mutex_) = false;   // higher-lane submits stop it
  std::vector<std::string> step_underserved_ GUARDED_BY(mutex_);  // ... and these tenants'
  YieldReason reason_ GUARDED_BY(mutex_) = YieldReason::kNone;
  bool closed_ GUARDED_BY(mutex_) = false;
  std::atomic<bool> yield_{false};
};

}  // namespace llmux
