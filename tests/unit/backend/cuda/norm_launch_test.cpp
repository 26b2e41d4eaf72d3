// The norm launchers' preconditions, without a device: LaunchRmsNorm and LaunchAddRmsNorm share
// one launcher (kernels/norm_row.cuh), which checks pointers, row width and strides before any
// CUDA call and launches nothing for zero rows. The pointers below are host addresses that no
// call here dereferences.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include "add_rms_norm.cuh"
#include "rms_norm.cuh"
#endif

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using kernels::LaunchAddRmsNorm;
using kernels::LaunchRmsNorm;

constexpr int kCols = 576;

struct Rows {
  std::vector<uint16_t> residual = std::vector<uint16_t>(2 * kCols);
  std::vector<uint16_t> x = std::vector<uint16_t>(2 * kCols);
  std::vector<float> weight = std::vector<float>(kCols);
  std::vector<uint16_t> out = std::vector<uint16_t>(2 * kCols);
};

TEST(CudaNormLaunch, ZeroRowsLaunchNothing) {
  Rows r;
  EXPECT_EQ(LaunchRmsNorm(r.x.data(), kCols, r.weight.data(), 1e-5f, r.out.data(), kCols,
                          /*rows=*/0, kCols, nullptr),
            cudaSuccess);
  EXPECT_EQ(LaunchAddRmsNorm(r.residual.data(), kCols, r.x.data(), kCols, r.weight.data(), 1e-5f,
                             r.out.data(), kCols, /*rows=*/0, kCols, nullptr),
            cudaSuccess);
}

TEST(CudaNormLaunchDeathTest, BothNormsCheckTheirPointers) {
  Rows r;
  EXPECT_DEATH(LaunchRmsNorm(nullptr, kCols, r.weight.data(), 1e-5f, r.out.data(), kCols, 1,
                             kCols, nullptr),
               "null pointer");
  EXPECT_DEATH(LaunchRmsNorm(r.x.data(), kCols, nullptr, 1e-5f, r.out.data(), kCols, 1, kCols,
                             nullptr),
               "null pointer");
  EXPECT_DEATH(LaunchAddRmsNorm(nullptr, kCols, r.x.data(), kCols, r.weight.data(), 1e-5f,
                                r.out.data(), kCols, 1, kCols, nullptr),
               "null pointer");
  EXPECT_DEATH(LaunchAddRmsNorm(r.residual.data(), kCols, r.x.data(), kCols, r.weight.data(),
                                1e-5f, nullptr, kCols, 1, kCols, nullptr),
               "null pointer");
}

TEST(CudaNormLaunchDeathTest, BothNormsRefuseARowTooWideForTheKernel) {
  Rows r;
  // 32776 columns: more than NormColsSupported takes (elementwise_plan_test pins the limit).
  EXPECT_DEATH(LaunchRmsNorm(r.x.data(), 32776, r.weight.data(), 1e-5f, r.out.data(), 32776, 1,
                             32776, nullptr),
               "row too wide");
  EXPECT_DEATH(LaunchAddRmsNorm(r.residual.data(), 32776, r.x.data(), 32776, r.weight.data(),
                                1e-5f, r.out.data(), 32776, 1, 32776, nullptr),
               "row too wide");
}

TEST(CudaNormLaunchDeathTest, BothNormsCheckTheirStrides) {
  Rows r;
  EXPECT_DEATH(LaunchRmsNorm(r.x.data(), kCols - 1, r.weight.data(), 1e-5f, r.out.data(), kCols,
                             1, kCols, nullptr),
               "norm strides");
  EXPECT_DEATH(LaunchRmsNorm(r.x.data(), kCols, r.weight.data(), 1e-5f, r.out.data(), kCols - 1,
                             1, kCols, nullptr),
               "norm strides");
  // Only the fused norm has a residual, so only it checks the residual's stride.
  EXPECT_DEATH(LaunchAddRmsNorm(r.residual.data(), kCols - 1, r.x.data(), kCols, r.weight.data(),
                                1e-5f, r.out.data(), kCols, 1, kCols, nullptr),
               "norm strides");
}
#else
TEST(CudaNormLaunch, SkippedWithoutCuda) { GTEST_SKIP() << "SKIPPED: built without CUDA"; }
#endif

}  // namespace
}  // namespace llmux
