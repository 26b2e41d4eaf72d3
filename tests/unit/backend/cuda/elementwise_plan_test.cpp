// Launch shapes of the row-wise kernels (kernels/elementwise_plan.h), without a device: the
// access width of copies and elementwise ops follows every address, stride and row length
// (the model's fused q/k/v and gate/up views get 16-byte accesses, a misaligned view falls
// back), and a norm's reduction layout depends on the row length alone and fits its
// registers with the fewest warps.
#include <gtest/gtest.h>

#ifdef LLMUX_HAVE_CUDA
#include "elementwise_plan.h"
#endif

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using kernels::AccessBytes;
using kernels::NormPlan;

constexpr uintptr_t kBase = 0x7f0000000000;  // cudaMalloc alignment (256 bytes)

TEST(CudaElementwisePlan, AccessBytesIsTheWidestThatDividesEverything) {
  // Dense bf16 rows of 4096 values: 16-byte accesses.
  EXPECT_EQ(AccessBytes({kBase, kBase + 8192}, {8192, 8192}, 8192, 2), 16);
  // Each of address, stride and row length can narrow it.
  EXPECT_EQ(AccessBytes({kBase, kBase + 8}, {8192, 8192}, 8192, 2), 8);
  EXPECT_EQ(AccessBytes({kBase, kBase}, {8192, 8196}, 8192, 2), 4);
  EXPECT_EQ(AccessBytes({kBase, kBase}, {8192, 8192}, 8190, 2), 2);
  EXPECT_EQ(AccessBytes({kBase + 2}, {8192}, 8192, 2), 2);
  // A row of 173 bf16 values (346 bytes) with an odd stride: element by element.
  EXPECT_EQ(AccessBytes({kBase}, {2 * 178}, 346, 2), 2);
  // f32 rows never go below their element size: 4 bytes.
  EXPECT_EQ(AccessBytes({kBase}, {4 * 1001}, 4 * 1001, 4), 4);
  EXPECT_EQ(AccessBytes({kBase}, {4 * 49152}, 4 * 49152, 4), 16);
  // No tensors but a row length: the row length decides.
  EXPECT_EQ(AccessBytes({}, {}, 24, 2), 8);
}

// The model's views: gate and up are the two halves of one gate_up output; q and k are column
// slices of one qkv output (docs/cuda_backend.md, fused weights).
TEST(CudaElementwisePlan, FusedModelViewsGetSixteenByteAccesses) {
  struct Model {
    const char* name;
    int heads, kv_heads, head_dim, ffn;
  };
  for (const Model m :
       {Model{"SmolLM-135M", 9, 3, 64, 1536}, Model{"Llama-3-8B", 32, 8, 128, 14336},
        Model{"Qwen2-0.5B", 14, 2, 64, 4864}, Model{"stories260K", 8, 4, 8, 172}}) {
    const int64_t qkv = int64_t{m.heads + 2 * m.kv_heads} * m.head_dim;
    const uintptr_t k = kBase + 2 * static_cast<uintptr_t>(m.heads * m.head_dim);
    EXPECT_EQ(kernels::RopeAccessBytes(kBase, qkv, k, qkv, m.head_dim), m.head_dim >= 16 ? 16 : 8)
        << m.name;
    // stories260K's ffn of 172 values is 344 bytes: 8-byte accesses.
    const int64_t gu = 2 * int64_t{m.ffn};
    EXPECT_EQ(AccessBytes({kBase, kBase + 2 * m.ffn, kBase + (1 << 20)},
                          {2 * gu, 2 * gu, 2 * m.ffn}, 2 * m.ffn, 2),
              m.ffn % 8 == 0 ? 16 : 8)
        << m.name;
  }
  // A view whose stride is odd (a padded test tensor) falls back to one pair per access; a
  // half head of 3 values (head_dim 6) too.
  EXPECT_EQ(kernels::RopeAccessBytes(kBase, 128 * 4 + 5, kBase + 4096, 128, 128), 2);
  EXPECT_EQ(kernels::RopeAccessBytes(kBase, 60, kBase + 4096, 60, 6), 2);
  // head_dim 8: the half head is 8 bytes.
  EXPECT_EQ(kernels::RopeAccessBytes(kBase, 64, kBase + 4096, 32, 8), 8);
}

void ExpectPlan(int cols, NormPlan want) {
  const NormPlan p = kernels::PlanNorm(cols);
  EXPECT_EQ(p.vec, want.vec) << cols;
  EXPECT_EQ(p.vectors, want.vectors) << cols;
  EXPECT_EQ(p.threads, want.threads) << cols;
  EXPECT_EQ(p.vectors_per_thread, want.vectors_per_thread) << cols;
  EXPECT_EQ(p.rows_per_block, want.rows_per_block) << cols;
}

TEST(CudaElementwisePlan, NormPlansOfModelWidths) {
  // {vec, vectors, threads per row, vectors per thread, rows per block}
  ExpectPlan(576, {8, 72, 32, 3, 4});        // SmolLM-135M: a warp per row
  ExpectPlan(896, {8, 112, 32, 4, 4});       // Qwen2-0.5B
  ExpectPlan(2048, {8, 256, 64, 4, 1});      // Llama-3.2-1B
  ExpectPlan(4096, {8, 512, 128, 4, 1});     // Llama-3-8B
  ExpectPlan(8192, {8, 1024, 256, 4, 1});    // Llama-3-70B
  ExpectPlan(16384, {8, 2048, 512, 4, 1});   // Llama-3.1-405B
  ExpectPlan(32768, {8, 4096, 1024, 4, 1});  // the widest
  ExpectPlan(173, {1, 173, 32, 6, 4});       // odd widths: element by element
  ExpectPlan(16383, {1, 16383, 1024, 16, 1});
  ExpectPlan(1, {1, 1, 32, 1, 4});
  EXPECT_TRUE(kernels::NormColsSupported(32768));
  EXPECT_FALSE(kernels::NormColsSupported(32776));
  EXPECT_TRUE(kernels::NormColsSupported(16383));
  EXPECT_FALSE(kernels::NormColsSupported(16385));
  EXPECT_FALSE(kernels::NormColsSupported(0));
  EXPECT_EQ(kernels::NormBlocks(kernels::PlanNorm(576), 1), 1);
  EXPECT_EQ(kernels::NormBlocks(kernels::PlanNorm(576), 7), 2);
  EXPECT_EQ(kernels::NormBlocks(kernels::PlanNorm(576), 64), 16);
  EXPECT_EQ(kernels::NormBlocks(kernels::PlanNorm(4096), 7), 7);
}

// Every supported width: the plan covers the row exactly once within the registers a thread
// has, in whole warps, with the fewest warps that can (one warp fewer would not hold it).
TEST(CudaElementwisePlan, NormPlanCoversEveryWidthWithTheFewestWarps) {
  for (int cols = 1; cols <= 32768; ++cols) {
    if (!kernels::NormColsSupported(cols)) {
      ASSERT_TRUE(cols > 16384 && cols % 8 != 0) << cols;
      continue;
    }
    const NormPlan p = kernels::PlanNorm(cols);
    ASSERT_EQ(p.vec, cols % 8 == 0 ? 8 : 1) << cols;
    ASSERT_EQ(p.vec * p.vectors, cols) << cols;
    ASSERT_EQ(p.threads % 32, 0) << cols;
    ASSERT_LE(p.threads, 1024) << cols;
    ASSERT_LE(p.vectors_per_thread * p.vec, kernels::NormValuesPerThread(p.vec)) << cols;
    ASSERT_GE(p.threads * p.vectors_per_thread, p.vectors) << cols;
    ASSERT_LT((p.vectors_per_thread - 1) * p.threads, p.vectors) << cols;  // no idle round
    if (p.threads > 32) {
      ASSERT_GT(p.vectors, (p.threads - 32) * kernels::NormValuesPerThread(p.vec) / p.vec) << cols;
    }
    ASSERT_EQ(p.rows_per_block, p.threads == 32 ? 4 : 1) << cols;
  }
}

TEST(CudaElementwisePlan, NormVectorizedNeedsEveryTensorAligned) {
  const NormPlan p = kernels::PlanNorm(4096);
  EXPECT_TRUE(kernels::NormVectorized(p, {kBase, kBase + 4096 * 2}, {4096, 4096}, kBase + 256));
  EXPECT_FALSE(kernels::NormVectorized(p, {kBase, kBase + 2}, {4096, 4096}, kBase));
  EXPECT_FALSE(kernels::NormVectorized(p, {kBase, kBase}, {4096 + 5, 4096}, kBase));
  EXPECT_FALSE(kernels::NormVectorized(p, {kBase, kBase}, {4096, 4096}, kBase + 4));
  EXPECT_FALSE(kernels::NormVectorized(kernels::PlanNorm(173), {kBase}, {176}, kBase));
  // The plan itself does not change with alignment: a row's reduction order is the same.
  const NormPlan q = kernels::PlanNorm(4096);
  EXPECT_EQ(q.threads, p.threads);
  EXPECT_EQ(q.vec, p.vec);
}
#else
TEST(CudaElementwisePlan, SkippedWithoutCuda) { GTEST_SKIP() << "SKIPPED: built without CUDA"; }
#endif

}  // namespace
}  // namespace llmux
