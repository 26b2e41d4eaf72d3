#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
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

}  // namespace
}  // namespace llmux::cpu
