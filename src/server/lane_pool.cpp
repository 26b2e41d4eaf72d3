#include "server/lane_pool.h"

#include <pthread.h>

#include <algorithm>

namespace llmux::server {

LanePool::LanePool(LanePoolOptions options)
    : options_(std::move(options)),
      lane_stats_size_(static_cast<size_t>(std::max(1, options_.lanes))) {
  LLMUX_CHECK(options_.threads >= 1) << "LanePool needs at least one thread";
  LLMUX_CHECK(options_.max_queued_per_lane >= 1) << "LanePool needs room for one job per lane";
  LLMUX_CHECK(options_.oldest_every >= 0) << "LanePool oldest_every must be >= 0";
  {
    MutexLock lock(mutex_);
    queues_.resize(lane_stats_size_);
    stats_.resize(lane_stats_size_);
  }
  MutexLock serial(shutdown_mutex_);
  workers_.reserve(static_cast<size_t>(options_.threads));
  for (int i = 0; i < options_.threads; ++i) {
    workers_.emplace_back([this] {
      pthread_setname_np(pthread_self(), options_.thread_name.substr(0, 15).c_str());
      WorkerLoop();
    });
  }
}

LanePool::~LanePool() { Shutdown(); }

Status LanePool::Post(int lane, Job job) {
  const size_t l = static_cast<size_t>(std::clamp(lane, 0, lanes() - 1));
  {
    MutexLock lock(mutex_);
    if (stopping_) return Unavailable("the server is shutting down");
    if (static_cast<int>(queues_[l].size()) >= options_.max_queued_per_lane) {
      ++stats_[l].refused;
      return Unavailable("the server is overloaded: " + std::to_string(options_.max_queued_per_lane) +
                         " requests of this lane are waiting to be planned");
    }
    queues_[l].push_back(Queued{posted_++, std::move(job)});
  }
  cv_.NotifyOne();
  return Status::Ok();
}

void LanePool::Shutdown() {
  MutexLock serial(shutdown_mutex_);
  {
    MutexLock lock(mutex_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

std::vector<LanePoolLaneStats> LanePool::Stats() const {
  MutexLock lock(mutex_);
  std::vector<LanePoolLaneStats> out = stats_;
  for (size_t l = 0; l < out.size(); ++l) out[l].queued = static_cast<int64_t>(queues_[l].size());
  return out;
}

bool LanePool::TakeNext(Job* job) {
  // The highest non-empty lane, or on an aging pick the lane whose front job is the oldest
  // (each lane's queue is FIFO, so its front is its oldest).
  const bool aging_pick =
      options_.oldest_every > 0 && (picks_ + 1) % static_cast<uint64_t>(options_.oldest_every) == 0;
  size_t pick = queues_.size();
  for (size_t l = 0; l < queues_.size(); ++l) {
    if (queues_[l].empty()) continue;
    if (pick == queues_.size()) {
      pick = l;
      if (!aging_pick) break;
    } else if (queues_[l].front().seq < queues_[pick].front().seq) {
      pick = l;
    }
  }
  if (pick == queues_.size()) return false;
  *job = std::move(queues_[pick].front().job);
  queues_[pick].pop_front();
  ++stats_[pick].started;
  ++picks_;
  return true;
}

void LanePool::WorkerLoop() {
  for (;;) {
    Job job;
    {
      MutexLock lock(mutex_);
      // Queued jobs run even once stopping: each answers its request (Shutdown is graceful).
      while (!TakeNext(&job)) {
        if (stopping_) return;
        cv_.Wait(lock);
      }
    }
    job();
  }
}

}  // namespace llmux::server
