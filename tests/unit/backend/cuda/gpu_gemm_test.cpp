// MatMul (cuBLASLt or the fallback kernel) against the naive reference, and the
// batch-invariance contract: a row's bits do not depend on M.
// Tolerances: bf16 out rtol 1e-2 + atol 1e-2; f32 out (logits) rtol 1e-3 + atol 2e-3 (f32
// accumulation in another order over K <= 4096 terms of magnitude <= 1).
#include <gtest/gtest.h>

#include <cstdio>
#include <tuple>

#include "gpu_test_util.h"
#include "reference_ops.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;
using cuda::testing::RandomBf16;

Tensor LoadMatrix(Backend* b, const std::vector<float>& w, int n, int k) {
  HostTensor h{"w", DType::kF32, {n, k}, reinterpret_cast<const std::byte*>(w.data()),
               w.size() * 4};
  auto t = b->LoadWeight(h, WeightKind::kMatrix);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

void ExpectMatchesReferenceOnOddShapes(Backend* b);
void ExpectRowsInvariant(Backend* b, DType out_dtype, int n, int k);

TEST(GpuGemm, MatMulMatchesReferenceOnOddShapes) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  ExpectMatchesReferenceOnOddShapes(b.get());
}

// The fixed-order fallback kernel, forced for every shape: the path a weight shape takes
// when no cuBLASLt algorithm is batch invariant. Same tolerances, rows bit-identical across M.
TEST(GpuGemm, ForcedFallbackMatchesReferenceAndIsInvariant) {
  CudaBackendOptions o;
  o.force_gemm_fallback = true;
  LLMUX_CUDA_BACKEND_OR_SKIP(b, o);
  ExpectMatchesReferenceOnOddShapes(b.get());
  ExpectRowsInvariant(b.get(), DType::kBF16, 1024, 4096);
  ExpectRowsInvariant(b.get(), DType::kF32, 2048, 512);
  auto fallbacks = cuda::GemmFallbackShapes(*b);
  ASSERT_TRUE(fallbacks.ok());
  EXPECT_GE(*fallbacks, 7);  // every (N, K, output dtype) seen above
}

void ExpectMatchesReferenceOnOddShapes(Backend* b) {
  DeviceTensors dev(b);
  for (auto [m, n, k] : {std::tuple{1, 64, 64}, {7, 173, 96}, {16, 512, 173}, {33, 1024, 4096},
                         {130, 96, 264}}) {
    const auto x = RandomBf16(size_t(m) * k, m * 7 + k);
    const auto w = RandomBf16(size_t(n) * k, n * 3 + k);
    const auto bias = RandomBf16(n, 5);
    Tensor tw = LoadMatrix(b, w, n, k);
    Tensor tx = dev.Upload(x, DType::kBF16, m, k, 8);
    auto tb = b->UploadF32(bias, 1, n);
    ASSERT_TRUE(tb.ok());
    const auto want = cuda::testing::RefMatMul(x, w, nullptr, m, n, k);
    const auto want_b = cuda::testing::RefMatMul(x, w, &bias, m, n, k);
    char what[96];
    std::snprintf(what, sizeof(what), "M=%d N=%d K=%d", m, n, k);

    Tensor out16 = dev.Make(DType::kBF16, m, n, 16);
    b->MatMul(tx, tw, nullptr, out16);
    cuda::testing::ExpectClose(dev.Get(out16), want, 1e-2f, 1e-2f, what);
    b->MatMul(tx, tw, &*tb, out16);
    cuda::testing::ExpectClose(dev.Get(out16), want_b, 1e-2f, 1e-2f, what);
    Tensor out32 = dev.Make(DType::kF32, m, n);
    b->MatMul(tx, tw, nullptr, out32);
    cuda::testing::ExpectClose(dev.Get(out32), want, 1e-3f, 2e-3f, what);
  }
}

// Rows [0, m) of a product with M = m are bit-identical to the same rows with M = 300.
void ExpectRowsInvariant(Backend* b, DType out_dtype, int n, int k) {
  DeviceTensors dev(b);
  const int big = 300;
  const auto x = RandomBf16(size_t(big) * k, 77);
  const auto w = RandomBf16(size_t(n) * k, 78);
  Tensor tw = LoadMatrix(b, w, n, k);
  Tensor tx = dev.Upload(x, DType::kBF16, big, k);
  Tensor ref = dev.Make(out_dtype, big, n);
  b->MatMul(tx, tw, nullptr, ref);
  const auto all = dev.Get(ref);
  for (int m : {1, 2, 5, 16, 64, 255}) {
    Tensor out = dev.Make(out_dtype, m, n);
    b->MatMul(tx.RowSlice(0, m), tw, nullptr, out);
    const auto got = dev.Get(out);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], all[i]) << "M=" << m << " N=" << n << " K=" << k << " element " << i;
    }
  }
}

TEST(GpuGemm, RowsAreBitIdenticalAcrossBatchSizes) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  ExpectRowsInvariant(b.get(), DType::kBF16, 1024, 4096);
  ExpectRowsInvariant(b.get(), DType::kBF16, 4096, 1024);
  ExpectRowsInvariant(b.get(), DType::kF32, 2048, 512);
  auto fallbacks = cuda::GemmFallbackShapes(*b);
  ASSERT_TRUE(fallbacks.ok());
  std::printf("GEMM weight shapes on the fallback kernel: %d\n", *fallbacks);
}
#else
TEST(GpuGemm, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
