// The invariant-mode GEMM algorithm choice (gemm_choice.h) on plain values: no device needed,
// runs wherever the CUDA backend is built. Shapes are Llama-3-8B's on a 132-SM H100/H200.
#include <gtest/gtest.h>

#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include <cublasLt.h>

#include "backend/cuda/gemm_choice.h"

namespace llmux::cuda {
namespace {

GemmCandidate Tile(int tile_n, int tile_m, int prefill_rank, int split_k = 1,
                   bool reduction = false) {
  GemmCandidate c;
  c.tile_n = tile_n;
  c.tile_m = tile_m;
  c.prefill_rank = prefill_rank;
  c.offered_at_m = prefill_rank == GemmCandidate::kUnranked ? 1 : 2048;
  c.split_k = split_k;
  c.reduction = reduction;
  return c;
}

// A candidate the heuristic offered only at the decode reference `m`.
GemmCandidate Decode(int tile_n, int tile_m, int m) {
  GemmCandidate c = Tile(tile_n, tile_m, GemmCandidate::kUnranked);
  c.offered_at_m = m;
  return c;
}

TEST(GemmChoice, CtasCountTilesAlongNAndM) {
  EXPECT_EQ(GemmCtas(Tile(128, 128, 0), 1, 4096), 32);
  EXPECT_EQ(GemmCtas(Tile(128, 128, 0), 128, 4096), 32);
  EXPECT_EQ(GemmCtas(Tile(128, 128, 0), 129, 4096), 64);
  EXPECT_EQ(GemmCtas(Tile(64, 32, 0), 1, 1000), 16);  // ceil(1000 / 64)
  EXPECT_EQ(GemmCtas(Tile(0, 0, 0), 2048, 4096), 1);  // unknown tile
  EXPECT_EQ(GemmCtas(Tile(128, 64, 0), 0, 4096), 32);  // M = 0 counts as one row of tiles
}

TEST(GemmChoice, SplitKAndReductionSchemesAreNeverCandidates) {
  EXPECT_TRUE(GemmSplitFree(Tile(128, 128, 0)));
  EXPECT_FALSE(GemmSplitFree(Tile(128, 128, 0, 4)));
  EXPECT_FALSE(GemmSplitFree(Tile(128, 128, 0, 1, true)));
  const std::vector<GemmCandidate> c = {Tile(32, 64, 0, 8), Tile(16, 64, 1, 1, true),
                                        Tile(128, 128, 2)};
  EXPECT_EQ(InvariantGemmOrder(c, 4096, 132), (std::vector<int>{2}));
}

// o_proj / down_proj (N = 4096): the prefill heuristic's favourites (256- and 128-row tiles)
// give 16-32 CTAs at M = 1; the tiles that (nearly) fill the device go first.
TEST(GemmChoice, NarrowOutputsPreferTheTileThatFillsTheDeviceAtM1) {
  const std::vector<GemmCandidate> c = {
      Tile(256, 128, 0),    // 16 CTAs
      Tile(128, 128, 1),    // 32
      Tile(64, 128, 2, 4),  // split-K: dropped
      Tile(64, 64, 3),      // 64
      Decode(32, 64, 64),   // 128 (>= 90% of 132), offered at M = 64
      Decode(16, 8, 1),     // 256 -> capped at 132 (one wave), offered at M = 1 only
  };
  // 128 and 132 busy SMs count as equal; the tile offered for larger M wins between them.
  EXPECT_EQ(InvariantGemmOrder(c, 4096, 132), (std::vector<int>{4, 5, 3, 1, 0}));
  // On a 64-SM device 64 CTAs already fill a wave: the ranked 64x64 beats the unranked ones.
  EXPECT_EQ(InvariantGemmOrder(c, 4096, 64), (std::vector<int>{3, 4, 5, 1, 0}));
}

// Within 10% of the best decode grid, the prefill ranking decides: a ranked 32-row tile (128
// CTAs) goes before an unranked 16-row one (one full wave).
TEST(GemmChoice, NearlyFullGridsAreOrderedByThePrefillRanking) {
  const std::vector<GemmCandidate> c = {Decode(16, 64, 16), Tile(32, 128, 2),
                                        Tile(128, 128, 0)};
  EXPECT_EQ(InvariantGemmOrder(c, 4096, 132), (std::vector<int>{1, 0, 2}));
  EXPECT_EQ(GemmBusySms(c[0], 4096, 132), 132);
  EXPECT_EQ(GemmBusySms(c[1], 4096, 132), 128);
  EXPECT_EQ(GemmBusySms(c[2], 4096, 132), 32);
}

// gate_up (N = 28672): every tile fills the device at M = 1, so the prefill ranking decides.
TEST(GemmChoice, WideOutputsKeepThePrefillRanking) {
  const std::vector<GemmCandidate> c = {Tile(64, 64, 4), Tile(128, 128, 1), Tile(128, 256, 0),
                                        Decode(32, 64, 64)};
  EXPECT_EQ(InvariantGemmOrder(c, 28672, 132), (std::vector<int>{2, 1, 0, 3}));
  // A 256-row tile gives 112 CTAs: short of a wave, so it goes after every tile that fills one.
  const std::vector<GemmCandidate> d = {Tile(256, 128, 0), Tile(64, 64, 4)};
  EXPECT_EQ(InvariantGemmOrder(d, 28672, 132), (std::vector<int>{1, 0}));
}

TEST(GemmChoice, TiesKeepTheCallersOrderAndUnknownTilesGoLast) {
  const std::vector<GemmCandidate> c = {Tile(0, 0, 0), Decode(64, 64, 16), Decode(64, 128, 16),
                                        Tile(128, 64, 1)};
  EXPECT_EQ(InvariantGemmOrder(c, 1024, 132), (std::vector<int>{1, 2, 3, 0}));
  EXPECT_TRUE(InvariantGemmOrder({}, 1024, 132).empty());
}

TEST(GemmChoice, TileIdsMapToThisCublasLtsEnum) {
  int n = -1, m = -1;
  ASSERT_TRUE(CublasLtTileDims(CUBLASLT_MATMUL_TILE_8x8, &n, &m));
  EXPECT_EQ(n, 8);
  EXPECT_EQ(m, 8);
  ASSERT_TRUE(CublasLtTileDims(CUBLASLT_MATMUL_TILE_128x64, &n, &m));
  EXPECT_EQ(n, 128);
  EXPECT_EQ(m, 64);
  ASSERT_TRUE(CublasLtTileDims(CUBLASLT_MATMUL_TILE_64x256, &n, &m));
  EXPECT_EQ(n, 64);
  EXPECT_EQ(m, 256);
  ASSERT_TRUE(CublasLtTileDims(CUBLASLT_MATMUL_TILE_END - 1, &n, &m));
  EXPECT_GT(n, 0);
  EXPECT_GT(m, 0);
  EXPECT_FALSE(CublasLtTileDims(CUBLASLT_MATMUL_TILE_UNDEFINED, &n, &m));
  EXPECT_FALSE(CublasLtTileDims(CUBLASLT_MATMUL_TILE_END, &n, &m));
}

TEST(GemmChoice, DescribesTheChoiceInOneLine) {
  GemmChoice c;
  c.n = 4096;
  c.k = 14336;
  c.kernel = "cublaslt";
  c.tile_n = 64;
  c.tile_m = 64;
  c.ctas_at_m1 = 64;
  EXPECT_EQ(DescribeGemmChoice(c), "N=4096 K=14336 bf16: cublaslt tile 64x64, 64 CTAs at M=1");
  c.kernel = "fallback";
  c.out_f32 = true;
  EXPECT_EQ(DescribeGemmChoice(c), "N=4096 K=14336 f32: fallback, 64 CTAs at M=1");
  c.kernel = "per_m";
  EXPECT_EQ(DescribeGemmChoice(c), "N=4096 K=14336 f32: per_m");
}

}  // namespace
}  // namespace llmux::cuda
#else
TEST(GemmChoice, SkippedWithoutCuda) { GTEST_SKIP() << "SKIPPED: built without CUDA"; }
#endif
