// Q8_0 weights on the CUDA backend: dequantized (d * q) and rounded to BF16 at LoadWeight.
#include <gtest/gtest.h>

#include <vector>

#include "gpu_test_util.h"
#include "llmux/backend.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;

TEST(GpuQ8, LoadWeightDequantizesQ8ToBf16) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  constexpr int64_t kRows = 3, kCols = 64;
  std::vector<float> vals(kRows * kCols);
  for (size_t i = 0; i < vals.size(); ++i) vals[i] = static_cast<float>(i % 23) * 0.37f - 4.0f;
  std::vector<std::byte> q8(DTypeBytes(DType::kQ8_0, kRows * kCols));
  for (int64_t r = 0; r < kRows; ++r) {
    QuantizeRowQ8_0(vals.data() + r * kCols, kCols, q8.data() + DTypeBytes(DType::kQ8_0, r * kCols));
  }
  std::vector<float> want(vals.size());
  DequantizeRowQ8_0(q8.data(), kRows * kCols, want.data());
  HostTensor h{"w", DType::kQ8_0, {kRows, kCols}, q8.data(), q8.size()};
  auto m = b->LoadWeight(h, WeightKind::kMatrix);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->dtype, DType::kBF16);
  EXPECT_EQ(m->rows, kRows);
  EXPECT_EQ(m->cols, kCols);
  const auto got = dev.Get(*m);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], Bf16ToFloat(FloatToBf16(want[i]))) << i;

  HostTensor ragged{"r", DType::kQ8_0, {6, 32}, q8.data(), 6 * 34};
  ragged.shape = {12, 16};  // rows must be whole 32-element blocks
  EXPECT_EQ(b->LoadWeight(ragged, WeightKind::kMatrix).status().code(),
            StatusCode::kInvalidArgument);
}
#endif

}  // namespace
}  // namespace llmux
