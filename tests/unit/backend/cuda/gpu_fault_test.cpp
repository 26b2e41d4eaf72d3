// Fault containment on the device: an error injected into a CUDA op (the test
// hook of cuda_access.h) fails that step at its sync point with Unavailable and
// nothing after it; a sticky error makes the backend report itself unusable and
// refuse every later step.
#include <gtest/gtest.h>

#include <vector>

#include "gpu_test_util.h"
#include "llmux/backend.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;

// cudaError_t values (the test target does not see the CUDA headers).
constexpr int kLaunchOutOfResources = 701;  // a step fault
constexpr int kIllegalAddress = 700;        // sticky

ForwardBatch TwoTokens() {
  ForwardBatch fb;
  fb.token_ids = {5, 6};
  fb.positions = {0, 1};
  fb.slot_mapping = {0, 1};
  fb.query_start_loc = {0, 2};
  fb.seq_lens = {2};
  fb.block_tables = {0};
  fb.max_blocks_per_seq = 1;
  fb.logits_indices = {1, 0};
  return fb;
}

// One step: gathers rows (1, 0) of `x` and copies them back (the sync point).
Status Step(Backend& b, const Tensor& x, const Tensor& out, std::vector<float>* host) {
  LLMUX_RETURN_IF_ERROR(b.BeginBatch(TwoTokens()));
  b.GatherLogitsRows(x, out);
  host->assign(out.rows * out.cols, 0.0f);
  return b.CopyToHostF32(out, host->data());
}

TEST(GpuFaults, InjectedStepFaultFailsOneStepAndTheNextRuns) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  KvCacheSpec s{1, 4, 16, 2, 1, 8, DType::kBF16};
  ASSERT_TRUE(b->InitKvCache(s).ok());
  DeviceTensors dev(b.get());
  const Tensor x = dev.Upload({1, 2, 3, 4, 5, 6}, DType::kF32, 2, 3);
  const Tensor out = dev.Make(DType::kF32, 2, 3);
  std::vector<float> host;
  ASSERT_TRUE(Step(*b, x, out, &host).ok());
  EXPECT_EQ(host, (std::vector<float>{4, 5, 6, 1, 2, 3}));

  ASSERT_TRUE(cuda::InjectFaultForTesting(*b, "Gather", kLaunchOutOfResources).ok());
  const Status failed = Step(*b, x, out, &host);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable);
  EXPECT_NE(failed.message().find("cuda step failed: Gather: "), std::string::npos)
      << failed.message();
  EXPECT_TRUE(b->DeviceHealth().ok());

  ASSERT_TRUE(Step(*b, x, out, &host).ok());
  EXPECT_EQ(host, (std::vector<float>{4, 5, 6, 1, 2, 3}));
}

TEST(GpuFaults, InjectedStickyFaultMakesTheBackendUnusable) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  KvCacheSpec s{1, 4, 16, 2, 1, 8, DType::kBF16};
  ASSERT_TRUE(b->InitKvCache(s).ok());
  DeviceTensors dev(b.get());
  const Tensor x = dev.Upload({1, 2, 3, 4, 5, 6}, DType::kF32, 2, 3);
  const Tensor out = dev.Make(DType::kF32, 2, 3);
  std::vector<float> host;
  ASSERT_TRUE(cuda::InjectFaultForTesting(*b, "Gather", kIllegalAddress).ok());
  const Status failed = Step(*b, x, out, &host);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable);
  EXPECT_NE(failed.message().find("cuda device faulted: Gather: "), std::string::npos)
      << failed.message();
  EXPECT_EQ(b->DeviceHealth().code(), StatusCode::kUnavailable);
  // Every later step is refused before it issues any device work.
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(b->BeginBatch(TwoTokens()).code(), StatusCode::kUnavailable) << i;
  }
  const int32_t blocks[] = {0};
  EXPECT_EQ(b->ZeroKvBlocks(blocks).code(), StatusCode::kUnavailable);
}
#endif  // LLMUX_HAVE_CUDA

}  // namespace
}  // namespace llmux
