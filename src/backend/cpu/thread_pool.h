// A small persistent thread pool for the CPU backend's ops.
//
// ParallelFor(n, fn) splits [0, n) into at most threads() contiguous chunks, runs fn(begin, end)
// on each (the calling thread takes chunk 0) and returns when all are done. No allocation per
// call. Workers spin briefly after a job (ops come back-to-back during a forward step), then
// sleep on an atomic wait, so an idle pool costs no CPU.
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

  // Runs fn(begin, end) over contiguous chunks of [0, n): chunk i is
  // [n * i / c, n * (i + 1) / c) with c = min(threads(), n, max_chunks).
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                   int max_chunks = 1 << 30);

 private:
  void WorkerLoop(int index);
  void RunChunk(int chunk);

  int threads_;
  std::vector<std::thread> workers_;

  // The current job; written by the caller before `generation_` is bumped.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;

  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers that have not finished the current job
  std::atomic<bool> stop_{false};
};

}  // namespace llmux::cpu
