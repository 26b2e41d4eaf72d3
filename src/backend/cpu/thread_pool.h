// A small persistent thread pool for the CPU backend's ops.
//
// ParallelFor(n, fn) runs fn(begin, end) over contiguous pieces of [0, n) and returns when all
// are done. Thread t of T (the caller is thread 0, workers 1..T-1) owns the contiguous share
// [n * t / T, n * (t + 1) / T): it runs its share front to back, in pieces of a quarter of what
// is left (at least one unit), then takes the back half of what is left of the share with the
// most left, until nothing is. So
//   - each thread reads one contiguous range: a decode GEMV, bound by reading its weight from
//     DRAM, is one prefetcher stream per thread (chunks claimed in turn by both threads cut it
//     into 8 streams, each ramping up again);
//   - which range a thread starts on is known before the job (PrefetchWhenIdle below);
//   - a worker that the OS has descheduled (2 cores shared with other processes) or that wakes
//     late delays a job by at most the piece it holds: the others take the rest of its share.
// No allocation per call. Workers spin briefly after a job (ops come back-to-back within a
// forward step), then sleep on an atomic wait, so an idle pool costs no CPU. The owner says when
// a burst of ops is over (Rest: the end of a forward step) and when one is about to start (Wake:
// the start of the next), so workers poll only briefly between steps instead of spinning on a
// core the I/O threads need.
//
// Idle prefetch: the owner may name the bytes the next job will stream (PrefetchWhenIdle); a
// thread with nothing to run (a worker between jobs while the caller runs a small op alone, or
// a thread whose share of an unbalanced job is done) prefetches the front of its share of them
// into its L2 instead of only polling.
//
// Which piece runs on which thread never matters for results: every op computes each output
// element in one fixed order (batch invariance does not depend on the split).
//
// Thread ownership: ParallelFor, PrefetchWhenIdle, Rest and Wake are called from one thread at
// a time (the engine thread that owns the backend); fn runs concurrently on the workers and
// must only write disjoint data.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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

  // Runs fn(begin, end) over contiguous pieces covering [0, n) once. The shares above are cut
  // in u = min(n, max_units, 2^20) units, unit i being [n * i / u, n * (i + 1) / u), so
  // max_units caps how finely the work is cut; max_units = 1 runs fn(0, n) on the calling
  // thread.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                   int64_t max_units = int64_t{1} << 20);

  // Names the bytes the next job will stream: until the next call, a thread with nothing to
  // run prefetches into its L2 the front of its share of [data, data + bytes), that is from
  // data + bytes * t / T, at most kIdlePrefetchBytes (what a ParallelFor over those bytes in
  // equal units gives thread t first). Only a hint: a prefetch never faults, so any address is
  // safe to name, a freed one included. nullptr or 0 bytes: nothing.
  void PrefetchWhenIdle(const void* data, size_t bytes);
  // Well under the 1 MiB L2 of the CPUs this targets, so the lines are still there when read.
  static constexpr size_t kIdlePrefetchBytes = 384 * 1024;

  // A burst of jobs is over: spinning workers cut their poll short (~10-50 us instead of
  // ~0.1-1 ms) and then sleep. A later ParallelFor still runs normally (it wakes them); call
  // Wake first to hide the wake-up latency.
  void Rest();
  // Jobs are about to come: wakes sleeping workers so they spin, ready for the next
  // ParallelFor, while the caller prepares it. Cheap when they are awake already.
  void Wake();

 private:
  // Where a thread is in the current idle-prefetch range. Addresses are integers: a named
  // range need not be memory at all, so no pointer arithmetic is done on it.
  struct IdleCursor {
    uint32_t id = 0;
    uintptr_t next = 0;  // the next line to prefetch
    size_t left = 0;     // bytes still to prefetch from it
  };

  void WorkerLoop(int self);
  // Runs job `job` as thread `self`: its own share, then others' units (none when `job` is no
  // longer the current job: a worker that woke late).
  void Work(uint32_t job, int self);
  // Prefetches the next few lines of thread `self`'s idle range; false when none are left.
  bool IdlePrefetch(int self, IdleCursor& c);

  int threads_;
  std::vector<std::thread> workers_;

  // The current job's parameters: written by the caller before the shares name the job, read
  // by a thread only after it has claimed one of the job's units (so the job is not over).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t units_ = 0;

  // Per thread: (job tag << 40) | (begin << 20) | end, the units of its share not yet claimed.
  // One word per share, each on its own cache line: the owner's claims stay in its own cache
  // until a thief comes, and the tag (the job id's low 24 bits) keeps a thread that wakes late
  // out of a newer job.
  struct alignas(64) Share {
    std::atomic<uint64_t> word{0};
  };
  std::unique_ptr<Share[]> shares_;
  std::atomic<int64_t> done_{0};         // units finished in the current job
  std::atomic<uint32_t> generation_{0};  // job id (or a Wake), for waking workers
  std::atomic<bool> resting_{false};     // Rest was called and no job or Wake came since
  std::atomic<bool> stop_{false};

  // PrefetchWhenIdle's range; idle_id_ changes with every call.
  std::atomic<uintptr_t> idle_data_{0};
  std::atomic<size_t> idle_bytes_{0};
  std::atomic<uint32_t> idle_id_{0};
  IdleCursor caller_cursor_;  // thread 0's
};

}  // namespace llmux::cpu
