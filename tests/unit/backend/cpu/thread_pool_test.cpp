#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace llmux::cpu {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInContiguousChunks) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int64_t n : {1, 2, 7, 1000}) {
      for (int rep = 0; rep < 50; ++rep) {  // back-to-back jobs reuse the workers
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> calls{0};
        pool.ParallelFor(n, [&](int64_t b, int64_t e) {
          ASSERT_LT(b, e);
          calls.fetch_add(1);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
        EXPECT_EQ(calls.load(), threads == 1 ? 1 : std::min<int64_t>(4 * threads, n));
      }
    }
    std::atomic<int> calls{0};
    pool.ParallelFor(100, [&](int64_t, int64_t) { calls.fetch_add(1); }, 1);
    EXPECT_EQ(calls.load(), 1) << "max_chunks";
  }
}

// After Rest (workers sleep at once) and Wake (they spin again), every job is still complete and
// still run by more than one thread: two chunks that each wait for the other to start can only
// finish if a worker took one of them while the caller ran the other.
TEST(ThreadPoolTest, RestAndWakeBetweenJobsKeepWorkersServing) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (int rep = 0; rep < 100; ++rep) {
      // rep % 4: 0 nothing, 1 Rest, 2 Rest then Wake, 3 Rest and let the workers fall asleep.
      if (rep % 4 != 0) pool.Rest();
      if (rep % 4 == 2) pool.Wake();
      if (rep % 4 == 3) std::this_thread::sleep_for(std::chrono::microseconds(200));
      std::atomic<int> started{0};
      std::atomic<bool> timed_out{false};
      pool.ParallelFor(2, [&](int64_t, int64_t) {
        started.fetch_add(1);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (started.load() < 2) {
          if (std::chrono::steady_clock::now() > deadline) {
            timed_out = true;
            return;
          }
          std::this_thread::yield();
        }
      });
      ASSERT_FALSE(timed_out.load())
          << "no worker joined job " << rep << " with " << threads << " threads";
      std::vector<std::atomic<int>> hits(1000);
      pool.ParallelFor(1000, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int i = 0; i < 1000; ++i) ASSERT_EQ(hits[i].load(), 1) << "rep " << rep << " i " << i;
    }
    pool.Rest();  // destruction while resting still joins every worker
  }
}

}  // namespace
}  // namespace llmux::cpu
