#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace llmux::cpu {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceInContiguousPieces) {
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
        if (threads == 1 || n == 1) {
          EXPECT_EQ(calls.load(), 1);
        }
      }
    }
    std::atomic<int> calls{0};
    pool.ParallelFor(100, [&](int64_t, int64_t) { calls.fetch_add(1); }, 1);
    EXPECT_EQ(calls.load(), 1) << "max_units";
    // max_units = 3: pieces are whole units [100 i / 3, 100 (i + 1) / 3).
    std::vector<std::pair<int64_t, int64_t>> pieces;
    std::mutex mu;
    pool.ParallelFor(
        100,
        [&](int64_t b, int64_t e) {
          std::lock_guard<std::mutex> lock(mu);
          pieces.emplace_back(b, e);
        },
        3);
    for (const auto& [b, e] : pieces) {
      EXPECT_TRUE(b == 0 || b == 33 || b == 66) << b;
      EXPECT_TRUE(e == 33 || e == 66 || e == 100) << e;
    }
  }
}

// Thread t owns the share [n t / T, n (t + 1) / T): it runs a prefix of its share front to back,
// and others take the rest in pieces from the back. Checked from the pieces each thread ran,
// whatever the timing: no piece crosses a share; in each share, the pieces of its first runner
// follow each other from the share's start and the others' pieces cover the rest; with two
// threads (one thief per share) the stolen pieces go back to front.
TEST(ThreadPoolTest, ThreadsRunAPrefixOfTheirShareAndOthersTakeItsBack) {
  struct Piece {
    std::thread::id thread;
    int64_t begin, end;
  };
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    constexpr int64_t n = 600;
    for (int rep = 0; rep < 40; ++rep) {
      std::mutex mu;
      std::vector<Piece> pieces;  // in the order they started
      pool.ParallelFor(n, [&](int64_t b, int64_t e) {
        {
          std::lock_guard<std::mutex> lock(mu);
          pieces.push_back({std::this_thread::get_id(), b, e});
        }
        // Uneven work (rep-dependent), so that thieves come at different points.
        for (int64_t i = b; i < e; ++i) {
          if ((i + rep) % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
      });
      int64_t covered = 0;
      for (int t = 0; t < threads; ++t) {
        const int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
        std::vector<Piece> in_share;
        for (const Piece& p : pieces) {
          if (p.begin < hi && p.end > lo) {
            ASSERT_TRUE(p.begin >= lo && p.end <= hi) << "a piece crosses share " << t;
            in_share.push_back(p);
          }
        }
        // The owner: whoever ran the piece at the share's start (a share can be stolen whole).
        std::thread::id owner;
        for (const Piece& p : in_share) {
          if (p.begin == lo) owner = p.thread;
        }
        int64_t front = lo;  // where the owner's next piece starts
        std::vector<Piece> stolen;
        for (const Piece& p : in_share) {
          if (p.thread == owner && p.begin == front) {
            front = p.end;
          } else {
            stolen.push_back(p);
          }
        }
        // The stolen pieces cover [front, hi) once; with one thief they come back to front.
        int64_t stolen_units = 0;
        for (const Piece& p : stolen) {
          ASSERT_GE(p.begin, front) << "share " << t << ": a piece before the owner's prefix end";
          stolen_units += p.end - p.begin;
        }
        EXPECT_EQ(stolen_units, hi - front) << "share " << t << " of " << threads;
        if (threads == 2) {
          int64_t back = hi;
          for (const Piece& p : stolen) {
            ASSERT_EQ(p.end, back) << "share " << t << ": the thief takes from the back";
            back = p.begin;
          }
        }
        covered += hi - lo;
      }
      EXPECT_EQ(covered, n);
    }
  }
}

// PrefetchWhenIdle is only a hint: any address, even one never mapped, is safe to name, and jobs
// run as before while threads prefetch it.
TEST(ThreadPoolTest, IdlePrefetchOfAnyAddressIsSafe) {
  std::vector<char> buffer(1 << 20);
  ThreadPool pool(2);
  const void* targets[] = {buffer.data(), nullptr,
                           reinterpret_cast<const void*>(uintptr_t{1} << 46),
                           reinterpret_cast<const void*>(~uintptr_t{0} - 4096)};
  for (const void* target : targets) {
    pool.PrefetchWhenIdle(target, buffer.size());
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<std::atomic<int>> hits(1000);
      pool.ParallelFor(1000, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int i = 0; i < 1000; ++i) ASSERT_EQ(hits[i].load(), 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the worker idles on the range
  }
}

// After Rest (workers sleep at once) and Wake (they spin again), every job is still complete and
// still run by more than one thread: two units that each wait for the other to start can only
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
