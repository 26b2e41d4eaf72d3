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
// The caller waiting for a piece that a descheduled worker holds: after this many polls it
// yields its core (on 2 shared cores, to that worker or to an I/O thread) between polls.
constexpr int kWaitSpinsBeforeYield = 2000;

// Share words: tag (the job id's low 24 bits) | begin (20 bits) | end (20 bits).
constexpr int kUnitBits = 20;
constexpr uint64_t kUnitMask = (uint64_t{1} << kUnitBits) - 1;
constexpr uint64_t kTagMask = (uint64_t{1} << 24) - 1;
constexpr uint64_t ShareWord(uint64_t tag, uint64_t begin, uint64_t end) {
  return (tag << (2 * kUnitBits)) | (begin << kUnitBits) | end;
}
constexpr uint64_t TagOf(uint64_t w) { return w >> (2 * kUnitBits); }
constexpr uint64_t BeginOf(uint64_t w) { return (w >> kUnitBits) & kUnitMask; }
constexpr uint64_t EndOf(uint64_t w) { return w & kUnitMask; }
// An owner claims 1 / kOwnerPieceDivisor of what is left of its share per piece: few claims
// while much is left, and at most a quarter of its share held where a thief cannot take it
// (the OS may deschedule the owner). A thief takes half of what is left: each steal moves a
// cache line between cores (~0.1-0.3 us), so single-unit steals cost more than they balance
// (2-3% of a SmolLM-135M decode step, measured step by step in one process).
constexpr uint64_t kOwnerPieceDivisor = 4;
// Lines an idle thread prefetches between two looks at the job (~0.1 us of issue).
constexpr int kIdlePrefetchLines = 8;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads_ = threads;
  shares_ = std::make_unique<Share[]>(threads_);
  workers_.reserve(threads_ - 1);
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::Work(uint32_t job, int self) {
  const uint64_t tag = job & kTagMask;
  // Pieces [b, e) of units as [begin, end) of [0, n).
  const auto run = [this](uint64_t b, uint64_t e) {
    (*fn_)(n_ * static_cast<int64_t>(b) / units_, n_ * static_cast<int64_t>(e) / units_);
  };
  int64_t ran = 0;
  // Own share, front to back, in shrinking pieces.
  std::atomic<uint64_t>& own = shares_[self].word;
  uint64_t w = own.load(std::memory_order_acquire);
  while (TagOf(w) == tag && BeginOf(w) < EndOf(w)) {
    const uint64_t b = BeginOf(w), e = EndOf(w);
    const uint64_t take = std::max<uint64_t>(1, (e - b) / kOwnerPieceDivisor);
    if (!own.compare_exchange_weak(w, ShareWord(tag, b + take, e), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      continue;
    }
    run(b, b + take);
    ran += static_cast<int64_t>(take);
    w = own.load(std::memory_order_acquire);
  }
  // Then the back half of what is left of the share with the most left.
  for (;;) {
    int victim = -1;
    uint64_t vw = 0, most = 0;
    for (int t = 0; t < threads_; ++t) {
      if (t == self) continue;
      const uint64_t x = shares_[t].word.load(std::memory_order_acquire);
      if (TagOf(x) == tag && EndOf(x) > BeginOf(x) && EndOf(x) - BeginOf(x) > most) {
        victim = t;
        vw = x;
        most = EndOf(x) - BeginOf(x);
      }
    }
    if (victim < 0) break;
    const uint64_t e = EndOf(vw);
    const uint64_t take = std::max<uint64_t>(1, most / 2);
    if (!shares_[victim].word.compare_exchange_strong(vw, ShareWord(tag, BeginOf(vw), e - take),
                                                      std::memory_order_acq_rel,
                                                      std::memory_order_acquire)) {
      continue;
    }
    run(e - take, e);
    ran += static_cast<int64_t>(take);
  }
  // NOTE: one add per thread and job, not per piece: the counter's line moves between cores
  // once per thread instead of once per unit.
  if (ran > 0) done_.fetch_add(ran, std::memory_order_acq_rel);
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t max_units) {
  if (n <= 0) return;
  const int64_t units = std::min<int64_t>({n, max_units, static_cast<int64_t>(kUnitMask)});
  if (units <= 1 || threads_ == 1) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  units_ = units;
  done_.store(0, std::memory_order_relaxed);
  resting_.store(false, std::memory_order_relaxed);
  const uint32_t job = generation_.load(std::memory_order_relaxed) + 1;
  const uint64_t tag = job & kTagMask;
  for (int t = 0; t < threads_; ++t) {
    shares_[t].word.store(ShareWord(tag, static_cast<uint64_t>(units * t / threads_),
                                    static_cast<uint64_t>(units * (t + 1) / threads_)),
                          std::memory_order_release);
  }
  generation_.store(job, std::memory_order_release);
  generation_.notify_all();
  Work(job, 0);
  for (int spin = 0; done_.load(std::memory_order_acquire) != units; ++spin) {
    if (IdlePrefetch(0, caller_cursor_)) continue;
    if (spin < kWaitSpinsBeforeYield) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::PrefetchWhenIdle(const void* data, size_t bytes) {
  idle_data_.store(reinterpret_cast<uintptr_t>(data), std::memory_order_relaxed);
  idle_bytes_.store(data == nullptr ? 0 : bytes, std::memory_order_relaxed);
  idle_id_.fetch_add(1, std::memory_order_release);
}

bool ThreadPool::IdlePrefetch(int self, IdleCursor& c) {
  const uint32_t id = idle_id_.load(std::memory_order_acquire);
  if (id != c.id) {
    // NOTE: data and bytes may already be a newer call's while id is the older one: the lines
    // prefetched are then merely useless (a prefetch never faults), and the next look sees the
    // newer id.
    c.id = id;
    const uintptr_t data = idle_data_.load(std::memory_order_relaxed);
    const size_t bytes = idle_bytes_.load(std::memory_order_relaxed);
    const size_t lo = bytes * static_cast<size_t>(self) / static_cast<size_t>(threads_);
    const size_t hi = bytes * static_cast<size_t>(self + 1) / static_cast<size_t>(threads_);
    c.next = data + lo;
    c.left = std::min(hi - lo, kIdlePrefetchBytes);
  }
  if (c.left == 0) return false;
  for (int i = 0; i < kIdlePrefetchLines && c.left > 0; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c.next), _MM_HINT_T1);
    c.next += 64;
    c.left -= std::min<size_t>(c.left, 64);
  }
  return true;
}

void ThreadPool::Rest() { resting_.store(true, std::memory_order_release); }

void ThreadPool::Wake() {
  if (threads_ == 1 || !resting_.exchange(false, std::memory_order_acq_rel)) return;
  // A generation with no job: the shares still name the previous (finished) job, so a worker
  // that wakes for it finds nothing to claim and spins, ready for the next one.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
}

void ThreadPool::WorkerLoop(int self) {
  // NOTE: 0, not a fresh load: the pool may already have run (or be destroying) a job by the
  // time this thread starts, and it must see that generation as new.
  uint32_t seen = 0;
  IdleCursor cursor;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0;
         g == seen &&
         spin < (resting_.load(std::memory_order_relaxed) ? kRestSpinIterations : kSpinIterations);
         ++spin) {
      if (!IdlePrefetch(self, cursor)) _mm_pause();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    Work(g, self);
  }
}

}  // namespace llmux::cpu
