#include "backend/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace llmux::cpu {
namespace {
// NOTE: ~0.1-0.5 ms of polling before sleeping. Ops of one forward step follow each other
// within microseconds and a futex wake-up costs more than a small op, so workers stay hot
// across a step but do not burn a core between steps.
constexpr int kSpinIterations = 20000;
// After Rest (a forward step ended), a much shorter poll (~10-50 us): long enough to catch the
// next step of a busy engine (sampling and scheduling between steps take tens of microseconds,
// and catching it saves a futex wake-up), short enough to hand the core to the I/O threads
// when no step follows soon.
constexpr int kRestSpinIterations = 1000;
constexpr int kChunksPerThread = 4;
// The caller waiting for a chunk that a descheduled worker holds: after this many polls it
// yields its core (on 2 shared cores, to that worker or to an I/O thread) between polls.
constexpr int kWaitSpinsBeforeYield = 2000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads_ = threads;
  workers_.reserve(threads_ - 1);
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::Work(uint32_t job) {
  uint64_t s = claim_.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t chunks = (s >> 16) & 0xffff, next = s & 0xffff;
    if ((s >> 32) != job || next >= chunks) return;
    if (!claim_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      continue;
    }
    const int64_t begin = n_ * next / chunks, end = n_ * (next + 1) / chunks;
    if (begin < end) (*fn_)(begin, end);
    done_.fetch_add(1, std::memory_order_acq_rel);
    s = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int max_chunks) {
  if (n <= 0) return;
  const int chunks =
      static_cast<int>(std::min<int64_t>({n, max_chunks, kChunksPerThread * threads_, 0xffff}));
  if (chunks <= 1 || threads_ == 1) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  done_.store(0, std::memory_order_relaxed);
  resting_.store(false, std::memory_order_relaxed);
  const uint32_t job = generation_.load(std::memory_order_relaxed) + 1;
  claim_.store((static_cast<uint64_t>(job) << 32) | (static_cast<uint64_t>(chunks) << 16),
               std::memory_order_release);
  generation_.store(job, std::memory_order_release);
  generation_.notify_all();
  Work(job);
  for (int spin = 0; done_.load(std::memory_order_acquire) != chunks; ++spin) {
    if (spin < kWaitSpinsBeforeYield) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::Rest() { resting_.store(true, std::memory_order_release); }

void ThreadPool::Wake() {
  if (threads_ == 1 || !resting_.exchange(false, std::memory_order_acq_rel)) return;
  // A generation with no job: the claim word still names the previous (finished) job, so a
  // worker that wakes for it finds nothing to claim and spins, ready for the next one.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
}

void ThreadPool::WorkerLoop() {
  // NOTE: 0, not a fresh load: the pool may already have run (or be destroying) a job by the
  // time this thread starts, and it must see that generation as new.
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0;
         g == seen &&
         spin < (resting_.load(std::memory_order_relaxed) ? kRestSpinIterations : kSpinIterations);
         ++spin) {
      _mm_pause();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    Work(g);
  }
}

}  // namespace llmux::cpu
