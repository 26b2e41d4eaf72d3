#include "engine/inbox.h"

#include <algorithm>
#include <climits>

namespace llmux {

EngineInbox::EngineInbox(int32_t max_per_lane, int32_t num_lanes)
    : max_per_lane_(max_per_lane), num_lanes_(std::max(num_lanes, 1)) {
  MutexLock lock(mutex_);
  lane_counts_.assign(static_cast<size_t>(num_lanes_), 0);
}

int32_t EngineInbox::LaneOf(const EngineRequest& request) const {
  int32_t lane = request.lane;
  if (lane < 0) {
    auto it = tenant_lanes_.find(request.tenant);
    lane = it == tenant_lanes_.end() ? num_lanes_ - 1 : it->second;
  }
  return std::clamp(lane, 0, num_lanes_ - 1);
}

EngineInbox::YieldReason EngineInbox::Stops(const EngineRequest& request, int32_t lane) const {
  if (step_top_lane_ == kNoStep) return YieldReason::kNone;
  if (step_higher_lanes_ && lane < step_top_lane_) return YieldReason::kHigherLane;
  if (lane == step_top_lane_ &&
      std::find(step_underserved_.begin(), step_underserved_.end(), request.tenant) !=
          step_underserved_.end()) {
    return YieldReason::kUnderserved;
  }
  return YieldReason::kNone;
}

void EngineInbox::Raise(YieldReason reason) {
  if (reason == YieldReason::kNone) return;
  if (reason_ == YieldReason::kNone) reason_ = reason;
  // NOTE: under the mutex, so BeginStep/TakeAll order it against the step it concerns.
  yield_.store(true, std::memory_order_relaxed);
}

Status EngineInbox::PushSubmit(SubmitItem item) {
  {
    MutexLock lock(mutex_);
    if (closed_) return Unavailable("engine stopped");
    const int32_t lane = LaneOf(item.request);
    int32_t& count = lane_counts_[static_cast<size_t>(lane)];
    if (count >= max_per_lane_) {
      return Unavailable("engine inbox full (" + std::to_string(max_per_lane_) +
                         " submits in lane " + std::to_string(lane) + ")");
    }
    ++count;
    Raise(Stops(item.request, lane));
    items_.push_back(std::move(item));
  }
  cv_.NotifyOne();
  return Status::Ok();
}

Status EngineInbox::Push(InboxItem item) {
  {
    MutexLock lock(mutex_);
    if (closed_) return Unavailable("engine stopped");
    if (const auto* u = std::get_if<UpsertItem>(&item)) tenant_lanes_[u->name] = u->limits.lane;
    items_.push_back(std::move(item));
  }
  cv_.NotifyOne();
  return Status::Ok();
}

std::deque<InboxItem> EngineInbox::TakeAll() {
  std::deque<InboxItem> items;
  MutexLock lock(mutex_);
  items.swap(items_);
  std::fill(lane_counts_.begin(), lane_counts_.end(), 0);
  step_top_lane_ = kNoStep;
  reason_ = YieldReason::kNone;
  yield_.store(false, std::memory_order_relaxed);
  return items;
}

int32_t EngineInbox::size() const {
  MutexLock lock(mutex_);
  return static_cast<int32_t>(items_.size());
}

int32_t EngineInbox::lane_size(int32_t lane) const {
  MutexLock lock(mutex_);
  if (lane < 0 || lane >= num_lanes_) return 0;
  return lane_counts_[static_cast<size_t>(lane)];
}

void EngineInbox::BeginStep(int32_t top_lane, bool higher_lanes,
                            std::vector<std::string> underserved) {
  MutexLock lock(mutex_);
  step_top_lane_ = std::max(top_lane, 0);
  step_higher_lanes_ = higher_lanes;
  step_underserved_ = std::move(underserved);
  // Submits that arrived after TakeAll are not in this step either.
  if (higher_lanes) {
    for (int32_t lane = 0; lane < std::min(step_top_lane_, num_lanes_); ++lane) {
      if (lane_counts_[static_cast<size_t>(lane)] > 0) Raise(YieldReason::kHigherLane);
    }
  }
  if (!step_underserved_.empty()) {
    for (const InboxItem& item : items_) {
      const auto* submit = std::get_if<SubmitItem>(&item);
      if (submit != nullptr) Raise(Stops(submit->request, LaneOf(submit->request)));
    }
  }
}

void EngineInbox::EndStep() {
  MutexLock lock(mutex_);
  step_top_lane_ = kNoStep;
  step_underserved_.clear();
}

EngineInbox::YieldReason EngineInbox::yield_reason() const {
  MutexLock lock(mutex_);
  return reason_;
}

bool EngineInbox::Close() {
  {
    MutexLock lock(mutex_);
    if (closed_) return false;
    closed_ = true;
  }
  cv_.NotifyAll();
  return true;
}

bool EngineInbox::closed() const {
  MutexLock lock(mutex_);
  return closed_;
}

bool EngineInbox::WaitForItem(std::chrono::milliseconds timeout) {
  MutexLock lock(mutex_);
  if (!closed_ && items_.empty()) cv_.WaitFor(lock, timeout);
  return closed_;
}

}  // namespace llmux
