// Host logic of the CUDA backend that needs no device: the fault state machine
// (device_faults.h) and the graph cache's LRU policy (lru_cache.h). These run
// on every build with CUDA, GPU or not.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include "attention_split.h"
#include "backend/cuda/device_faults.h"
#include "backend/cuda/lru_cache.h"

namespace llmux::cuda {
namespace {

// cudaError_t values (driver_types.h; the test target does not see the CUDA
// headers).
TEST(CudaDeviceFaults, ClassifiesContextCorruptingErrorsAsSticky) {
  // IllegalAddress, LaunchTimeout, ECCUncorrectable, Assert,
  // HardwareStackError, IllegalInstruction, MisalignedAddress, InvalidPc,
  // LaunchFailure.
  for (int e : {700, 702, 214, 710, 714, 715, 716, 718, 719}) {
    EXPECT_EQ(ClassifyCudaError(e), FaultKind::kSticky) << e;
  }
  // InvalidValue, MemoryAllocation, InvalidConfiguration, NotReady,
  // LaunchOutOfResources.
  for (int e : {1, 2, 9, 600, 701}) EXPECT_EQ(ClassifyCudaError(e), FaultKind::kStep) << e;
}

TEST(CudaDeviceFaults, StepFaultFailsThatStepOnly) {
  DeviceFaults f;
  EXPECT_TRUE(f.TakeStepStatus().ok());
  f.Record(FaultKind::kStep, "Attention: too many resources requested for launch");
  f.Record(FaultKind::kStep,
           "SiluMul: second failure");  // the first one is reported
  EXPECT_TRUE(f.step_failed());
  EXPECT_TRUE(f.Health().ok());
  const Status s = f.TakeStepStatus();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "cuda step failed: Attention: too many resources requested for launch");
  EXPECT_FALSE(f.step_failed());
  EXPECT_TRUE(f.TakeStepStatus().ok());  // the next step is clean
  EXPECT_TRUE(f.Health().ok());
  EXPECT_FALSE(f.faulted());
}

TEST(CudaDeviceFaults, StickyFaultIsReportedByEveryLaterStep) {
  DeviceFaults f;
  f.Record(FaultKind::kStep, "MatMul: cublasLtMatmul: cuBLAS status 13");
  f.Record(FaultKind::kSticky, "copy to host: an illegal memory access was encountered");
  EXPECT_TRUE(f.faulted());
  Status s = f.TakeStepStatus();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "cuda device faulted: copy to host: an illegal memory "
            "access was encountered (this "
            "step: MatMul: cublasLtMatmul: cuBLAS status 13)");
  for (int step = 0; step < 3; ++step) {
    s = f.TakeStepStatus();
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << step;
    EXPECT_EQ(s.message(),
              "cuda device faulted: copy to host: an illegal "
              "memory access was encountered")
        << step;
  }
  EXPECT_EQ(f.Health().code(), StatusCode::kUnavailable);
  EXPECT_EQ(f.Health().message(),
            "cuda device faulted: copy to host: an "
            "illegal memory access was encountered");
  // A later sticky error does not replace the first (the root cause).
  f.Record(FaultKind::kSticky, "Rope: unspecified launch failure");
  EXPECT_NE(f.Health().message().find("illegal memory access"), std::string::npos);
}

TEST(CudaGraphLru, EvictsTheLeastRecentlyUsed) {
  LruCache<int, std::string> c(3);
  EXPECT_FALSE(c.Insert(1, "a").has_value());
  EXPECT_FALSE(c.Insert(2, "b").has_value());
  EXPECT_FALSE(c.Insert(3, "c").has_value());
  ASSERT_NE(c.Find(1), nullptr);  // 1 is now the most recent: 2 is the oldest
  EXPECT_EQ(*c.Find(1), "a");
  auto evicted = c.Insert(4, "d");
  ASSERT_TRUE(evicted.has_value());
  EXPECT_EQ(evicted->first, 2);
  EXPECT_EQ(evicted->second, "b");
  EXPECT_EQ(c.Find(2), nullptr);
  EXPECT_EQ(c.size(), 3u);
  evicted = c.Insert(5, "e");  // 3 is now the oldest
  ASSERT_TRUE(evicted.has_value());
  EXPECT_EQ(evicted->first, 3);
  std::vector<std::string> released;
  c.Clear([&](const std::string& v) { released.push_back(v); });
  EXPECT_EQ(released, (std::vector<std::string>{"e", "d", "a"}));  // most recent first
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.Find(1), nullptr);
}

// The split of a query's keys: a function of its context length alone (batch invariance),
// one 64-key tile per split up to 32 splits (occupancy at small batch), every split non-empty,
// tile-aligned, and the whole context covered.
TEST(CudaAttentionSplit, OneTilePerSplitUpTo32ThenLongerSplits) {
  using kernels::AttnSplitFor;
  for (int ctx = 1; ctx <= 70000; ++ctx) {
    const kernels::AttnSplit s = AttnSplitFor(ctx);
    ASSERT_GE(s.num_splits, 1) << ctx;
    ASSERT_LE(s.num_splits, kernels::kAttnMaxSplits) << ctx;
    ASSERT_EQ(s.split_len % kernels::kAttnTileKeys, 0) << ctx;
    ASSERT_GE(s.num_splits * s.split_len, ctx) << ctx;
    ASSERT_LT((s.num_splits - 1) * s.split_len, ctx) << ctx;  // no empty split
    if (ctx <= 32 * 64) {
      ASSERT_EQ(s.split_len, 64) << ctx;
    }
  }
  EXPECT_EQ(AttnSplitFor(1).num_splits, 1);
  EXPECT_EQ(AttnSplitFor(1024).num_splits, 16);
  EXPECT_EQ(AttnSplitFor(1299).num_splits, 21);
  EXPECT_EQ(AttnSplitFor(4096).num_splits, 32);
  EXPECT_EQ(AttnSplitFor(4096).split_len, 128);
  EXPECT_EQ(AttnSplitFor(100000).split_len, 3136);
  EXPECT_EQ(AttnSplitFor(100000).num_splits, 32);
}

}  // namespace
}  // namespace llmux::cuda
#endif  // LLMUX_HAVE_CUDA
