// A small persistent thread pool for the CPU backend's ops.
//
// ParallelFor(n, fn) splits [0, n) into contiguous chunks, runs fn(begin, end) on each and
// returns when all are done. The calling thread works too, and chunks are claimed dynamically,
// so a worker that the OS has descheduled (2 cores shared with other processes) delays a job
// by at most one chunk instead of stalling it. No allocation per call. Workers spin briefly
// after a job (ops come back-to-back within a forward step), then sleep on an atomic wait, so
// an idle pool costs no CPU. The owner says when a burst of ops is over (Rest: the end of a
// forward step) and when one is about to start (Wake: the start of the next), so workers poll
// only briefly between steps instead of spinning on a core the I/O threads need.
//
// Which chunk runs on which thread never matters for results: every op computes each output
// element in one fixed order (batch invariance does not depend on the split).
//
// Thread ownership: ParallelFor is called from one thread at a time (the engine thread that
// owns the backend); fn runs concurrently on the workers and must only write disjoint data.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace llmux::cpu {

class ThreadPool {
 public:
  // threads <= 0: std::thread::hardware_concurrency(). threads - 1 workers are started.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // Runs fn(begin, end) over c contiguous chunks of [0, n): chunk i is [n * i / c,
  // n * (i + 1) / c) with c = min(n, max_chunks, 4 * threads()). max_chunks = 1 runs fn(0, n)
  // on the calling thread.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                   int max_chunks = 1 << 15);

  // A burst of jobs is over: spinning workers cut their poll short (~10-50 us instead of
  // ~0.1-1 ms) and then sleep. A later ParallelFor still runs normally (it wakes them); call
  // Wake first to hide the wake-up latency.
  void Rest();
  // Jobs are about to come: wakes sleeping workers so they spin, ready for the next
  // ParallelFor, while the caller prepares it. Cheap when they are awake already.
  void Wake();

 private:
  void WorkerLoop();
  // Claims and runs chunks of job `job` until none is left.
  void Work(uint32_t job);

  int threads_;
  std::vector<std::thread> workers_;

  // The current job's parameters: written by the caller before `claim_` names the job, read
  // by a thread only after it has claimed one of the job's chunks (so the job is not over).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;

  // (job id << 32) | (chunks << 16) | next unclaimed chunk. One word, so a thread that wakes
  // late can never claim a chunk of a finished job or mix two jobs' parameters.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};           // chunks finished in the current job
  std::atomic<uint32_t> generation_{0};  // job id (or a Wake), for waking workers
  std::atomic<bool> resting_{false};     // Rest was called and no job or Wake came since
  std::atomic<bool> stop_{false};
};

}  // namespace llmux::cpu
