// MatMul (cuBLASLt or the fallback kernel) against the CPU backend's MatMul, and the
// batch-invariance contract: a row's bits do not depend on M, one kernel per weight shape.
// Tolerances: bf16 out rtol 1e-2 + atol 1e-2; f32 out (logits) rtol 1e-3 + atol 2e-3 (f32
// accumulation in another order over K <= 4096 terms of magnitude <= 1).
#include <gtest/gtest.h>

#include <cstdio>
#include <tuple>

#include "backend/cuda/gemm_choice.h"
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
  // What /admin/pools shows: every shape on the fallback, ceil(N / 64) CTAs at M = 1.
  bool saw_1024x4096 = false;
  for (const GemmChoice& c : b->GemmChoices()) {
    EXPECT_EQ(c.kernel, "fallback") << c.n << "x" << c.k;
    EXPECT_EQ(c.ctas_at_m1, (c.n + 63) / 64) << c.n << "x" << c.k;
    if (c.n == 1024 && c.k == 4096 && !c.out_f32) {
      saw_1024x4096 = true;
      EXPECT_GE(c.m_plans, 7);  // M = 33 above, then 300, 1, 2, 5, 16, 64, 255
    }
  }
  EXPECT_TRUE(saw_1024x4096);
}

// out = x w^T (+ bias) on the CPU backend, the reference op (f32 activations; w as given).
std::vector<float> CpuMatMul(Backend& cpu, const std::vector<float>& x,
                             const std::vector<float>& w, const std::vector<float>* bias, int m,
                             int n, int k) {
  HostTensor hw{"w", DType::kF32, {n, k}, reinterpret_cast<const std::byte*>(w.data()),
                w.size() * 4};
  auto tw = cpu.LoadWeight(hw, WeightKind::kMatrix);  // aliases w: used before w goes away
  EXPECT_TRUE(tw.ok()) << tw.status().ToString();
  auto tx = cpu.UploadF32(x, m, k);
  EXPECT_TRUE(tx.ok());
  std::vector<float> out(size_t(m) * n);
  Tensor to = Tensor::Dense(out.data(), DType::kF32, m, n);
  if (bias != nullptr) {
    auto tb = cpu.UploadF32(*bias, 1, n);
    EXPECT_TRUE(tb.ok());
    cpu.MatMul(*tx, *tw, &*tb, to);
  } else {
    cpu.MatMul(*tx, *tw, nullptr, to);
  }
  return out;
}

void ExpectMatchesReferenceOnOddShapes(Backend* b) {
  DeviceTensors dev(b);
  auto cpu = CreateCpuBackend({.threads = 4});
  ASSERT_TRUE(cpu.ok());
  for (auto [m, n, k] : {std::tuple{1, 64, 64}, {7, 173, 96}, {16, 512, 173}, {33, 1024, 4096},
                         {130, 96, 264}}) {
    const auto x = RandomBf16(size_t(m) * k, m * 7 + k);
    const auto w = RandomBf16(size_t(n) * k, n * 3 + k);
    const auto bias = RandomBf16(n, 5);
    Tensor tw = LoadMatrix(b, w, n, k);
    Tensor tx = dev.Upload(x, DType::kBF16, m, k, 8);
    auto tb = b->UploadF32(bias, 1, n);
    ASSERT_TRUE(tb.ok());
    const auto want = CpuMatMul(**cpu, x, w, nullptr, m, n, k);
    const auto want_b = CpuMatMul(**cpu, x, w, &bias, m, n, k);
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
  // One pinned kernel per weight shape for every M, none rejected at some layout; a pinned
  // cuBLASLt algorithm reports its tile and the CTAs it launches at M = 1.
  const std::vector<GemmChoice> choices = b->GemmChoices();
  ASSERT_EQ(choices.size(), 3u);  // (1024, 4096, bf16), (2048, 512, f32), (4096, 1024, bf16)
  EXPECT_EQ(choices[0].n, 1024);
  EXPECT_EQ(choices[1].n, 2048);
  EXPECT_TRUE(choices[1].out_f32);
  EXPECT_EQ(choices[2].n, 4096);
  for (const GemmChoice& c : choices) {
    std::printf("GEMM choice: %s (%d candidates failed the bit-identity check)\n",
                cuda::DescribeGemmChoice(c).c_str(), c.candidates_tried);
    EXPECT_TRUE(c.kernel == "cublaslt" || c.kernel == "fallback") << c.kernel;
    EXPECT_EQ(c.m_plans, 7);  // M = 300, 1, 2, 5, 16, 64, 255
    EXPECT_EQ(c.rejected_layouts, 0);
    if (c.kernel == "cublaslt") {
      ASSERT_GT(c.tile_n, 0);
      EXPECT_EQ(c.ctas_at_m1, (c.n + c.tile_n - 1) / c.tile_n);
    }
  }
}

// Fast mode (engine.batch_invariant: false): cuBLASLt's heuristic per M, reported as such.
TEST(GpuGemm, FastModeChoosesPerM) {
  CudaBackendOptions o;
  o.batch_invariant = false;
  LLMUX_CUDA_BACKEND_OR_SKIP(b, o);
  ExpectMatchesReferenceOnOddShapes(b.get());
  const std::vector<GemmChoice> choices = b->GemmChoices();
  ASSERT_EQ(choices.size(), 10u);  // 5 weight shapes x (bf16, f32) outputs
  for (const GemmChoice& c : choices) {
    EXPECT_EQ(c.kernel, "per_m");
    EXPECT_EQ(c.ctas_at_m1, 0);
  }
}
#else
TEST(GpuGemm, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
