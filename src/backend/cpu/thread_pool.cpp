#include "backend/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace llmux::cpu {
namespace {
// NOTE: ~50-100 us of polling before sleeping. Ops of one forward step follow each other within
// microseconds, and a futex wake-up costs more than a small op, so workers stay hot across a
// step but do not burn a core between steps.
constexpr int kSpinIterations = 20000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads_ = threads;
  workers_.reserve(threads_ - 1);
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::RunChunk(int chunk) {
  int64_t begin = n_ * chunk / chunks_;
  int64_t end = n_ * (chunk + 1) / chunks_;
  if (begin < end) (*fn_)(begin, end);
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int max_chunks) {
  if (n <= 0) return;
  int chunks = static_cast<int>(std::min<int64_t>({threads_, n, max_chunks}));
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  chunks_ = chunks;
  // NOTE: every worker acknowledges every job (even one without a chunk for it), so no worker
  // can still be reading this job's parameters when the next job overwrites them.
  pending_.store(threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  RunChunk(0);
  while (pending_.load(std::memory_order_acquire) != 0) _mm_pause();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < kSpinIterations; ++spin) {
      _mm_pause();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    if (index < chunks_) RunChunk(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace llmux::cpu
