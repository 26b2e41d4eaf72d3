// A lane-ordered worker pool: the front door's CPU work (parsing a completion request,
// rendering its chat template, tokenizing its prompts) runs here, off the connections' strands,
// so a flood of one lane's requests cannot hold an I/O thread that a higher lane's request
// needs. One bounded FIFO queue per lane; a free worker takes the oldest job of the highest lane
// (0) that has one, as the scheduler admits lanes -- except every `oldest_every`-th pick, which
// takes the oldest job of any lane (aging: a lower lane is never starved, and a higher lane
// gives up at most one pick in `oldest_every` to it; docs/isolation.md says why a pick count and
// not a wait time).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "llmux/status.h"
#include "llmux/thread_annotations.h"

namespace llmux::server {

struct LanePoolOptions {
  int lanes = 1;                   // queues; lane 0 is the highest (TenantConfig::lane_index)
  int threads = 1;                 // workers, >= 1
  int max_queued_per_lane = 256;   // jobs waiting in one lane's queue, >= 1
  // Every this-many-th pick takes the oldest queued job of any lane (by Post order) instead of
  // the highest lane's; 0 = strict lane priority (a lower lane waits while any higher lane has
  // a job). 1 = plain FIFO across lanes.
  int oldest_every = 0;
  std::string thread_name = "llmux-plan";  // at most 15 characters (pthread_setname_np)
};

// Figures for /metrics, per lane.
struct LanePoolLaneStats {
  int64_t queued = 0;    // jobs waiting now
  int64_t started = 0;   // jobs a worker took, since start
  int64_t refused = 0;   // Post refusals because the lane's queue was full, since start
};

// Thread-safe. Owns its workers; the destructor shuts the pool down (see Shutdown).
class LanePool {
 public:
  using Job = std::function<void()>;

  explicit LanePool(LanePoolOptions options);
  ~LanePool();
  LanePool(const LanePool&) = delete;
  LanePool& operator=(const LanePool&) = delete;

  // Queues `job` at the back of `lane`'s queue (a lane beyond the last counts as the last).
  // Unavailable, with `job` dropped, when that queue holds max_queued_per_lane jobs already or
  // the pool is shutting down. A job runs on a worker thread; it must not throw.
  Status Post(int lane, Job job);

  // Refuses new jobs, lets the workers run every job already queued (in lane order), and
  // joins them. Idempotent; must not be called from a job.
  void Shutdown();

  int lanes() const { return static_cast<int>(lane_stats_size_); }
  std::vector<LanePoolLaneStats> Stats() const;

 private:
  void WorkerLoop();
  // The next job to run (see oldest_every); false when every queue is empty.
  bool TakeNext(Job* job) REQUIRES(mutex_);

  struct Queued {
    uint64_t seq;  // Post order, over all lanes
    Job job;
  };

  const LanePoolOptions options_;
  const size_t lane_stats_size_;
  mutable Mutex mutex_;
  CondVar cv_;
  std::vector<std::deque<Queued>> queues_ GUARDED_BY(mutex_);     // [lane]
  uint64_t posted_ GUARDED_BY(mutex_) = 0;  // jobs queued so far (the next job's seq)
  uint64_t picks_ GUARDED_BY(mutex_) = 0;   // jobs taken so far
  std::vector<LanePoolLaneStats> stats_ GUARDED_BY(mutex_);       // [lane] (queued unused)
  bool stopping_ GUARDED_BY(mutex_) = false;
  Mutex shutdown_mutex_;  // serializes Shutdown callers
  std::vector<std::thread> workers_ GUARDED_BY(shutdown_mutex_);
};

}  // namespace llmux::server
