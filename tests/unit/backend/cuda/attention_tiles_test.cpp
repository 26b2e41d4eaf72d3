// Paged attention's query tiling (attention_tiles.h) and the split property it relies on
// (attention_split.h): no device needed, runs wherever the CUDA backend is built.
#include <gtest/gtest.h>

#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include "attention_split.h"
#include "backend/cuda/attention_tiles.h"

namespace llmux::cuda {
namespace {

using kernels::AttnSplitFor;

// Every position of a 64-position window has the same split layout, and each of its splits
// holds at least one of that position's keys: the rows of a tile can share one (z, key range)
// and every block the grid gives a row has work for it.
TEST(CudaAttentionTiles, SplitLayoutIsConstantOverEachWindow) {
  for (int w = 0; w < 70000 / 64; ++w) {
    const kernels::AttnSplit first = AttnSplitFor(64 * w + 1);
    for (int pos = 64 * w; pos < 64 * w + 64; ++pos) {
      const kernels::AttnSplit s = AttnSplitFor(pos + 1);
      ASSERT_EQ(s.num_splits, first.num_splits) << "position " << pos;
      ASSERT_EQ(s.split_len, first.split_len) << "position " << pos;
      ASSERT_LE((s.num_splits - 1) * s.split_len, pos) << "position " << pos;
    }
  }
}

TEST(CudaAttentionTiles, QueryTileTokensFillSixtyFourRows) {
  EXPECT_EQ(kernels::AttnQueryTileTokens(1), 64);
  EXPECT_EQ(kernels::AttnQueryTileTokens(4), 16);
  EXPECT_EQ(kernels::AttnQueryTileTokens(7), 9);  // 63 rows
  EXPECT_EQ(kernels::AttnQueryTileTokens(16), 4);
}

// Positions of `n` new tokens after `cached` ones.
void Append(std::vector<int32_t>* qsl, std::vector<int32_t>* pos, int cached, int n) {
  for (int i = 0; i < n; ++i) pos->push_back(cached + i);
  qsl->push_back(qsl->back() + n);
}

TEST(CudaAttentionTiles, TilesBreakAtSequencesWindowsSizeAndLaunches) {
  std::vector<int32_t> qsl = {0}, pos;
  Append(&qsl, &pos, 60, 40);  // seq 0: positions 60..99 (window break at 64)
  Append(&qsl, &pos, 500, 1);  // seq 1: a decode
  Append(&qsl, &pos, 0, 20);   // seq 2: a fresh prefill, group 4 -> 16-token tiles
  const AttnTiles t = BuildAttnTiles(qsl, pos, /*group=*/4, /*chunk_tokens=*/256);
  // (first, count): seq 0: 60..63 | 64..79 | 80..95 | 96..99; seq 1; seq 2: 16 + 4.
  EXPECT_EQ(t.tiles, (std::vector<int32_t>{0, 4, 4, 16, 20, 16, 36, 4, 40, 1, 41, 16, 57, 4}));
  EXPECT_EQ(t.chunk_begin, (std::vector<int>{0, 7}));
}

TEST(CudaAttentionTiles, LaunchesOwnContiguousTileRangesWithLocalFirstTokens) {
  std::vector<int32_t> qsl = {0}, pos;
  Append(&qsl, &pos, 0, 10);   // tokens 0..9
  Append(&qsl, &pos, 0, 300);  // tokens 10..309: crosses the launch boundary at token 256
  const int chunk = 256;
  const AttnTiles t = BuildAttnTiles(qsl, pos, /*group=*/1, chunk);
  ASSERT_EQ(t.chunk_begin.size(), 3u);
  std::vector<int> covered(pos.size(), 0);
  for (int c = 0; c < 2; ++c) {
    for (int k = t.chunk_begin[c]; k < t.chunk_begin[c + 1]; ++k) {
      const int first = t.tiles[2 * k] + c * chunk;
      const int count = t.tiles[2 * k + 1];
      ASSERT_GE(count, 1);
      ASSERT_LE(count, 64);
      ASSERT_LE(t.tiles[2 * k] + count, chunk) << "tile " << k << " crosses its launch";
      ASSERT_TRUE(kernels::AttnSameWindow(pos[first], pos[first + count - 1])) << "tile " << k;
      for (int i = first; i < first + count; ++i) ++covered[i];
    }
  }
  for (size_t i = 0; i < covered.size(); ++i) ASSERT_EQ(covered[i], 1) << "token " << i;
  // Token 256 (sequence 1's position 246) starts launch 1's first tile at local index 0; the
  // tile ends at position 255, the end of its window.
  EXPECT_EQ(t.tiles[2 * t.chunk_begin[1]], 0);
  EXPECT_EQ(t.tiles[2 * t.chunk_begin[1] + 1], 10);
}

TEST(CudaAttentionTiles, DecodeBatchesGetOneTilePerToken) {
  std::vector<int32_t> qsl = {0}, pos;
  for (int s = 0; s < 5; ++s) Append(&qsl, &pos, 100 * s + 63, 1);
  const AttnTiles t = BuildAttnTiles(qsl, pos, /*group=*/8, 256);
  EXPECT_EQ(t.tiles, (std::vector<int32_t>{0, 1, 1, 1, 2, 1, 3, 1, 4, 1}));
  EXPECT_EQ(t.chunk_begin, (std::vector<int>{0, 5}));
}

}  // namespace
}  // namespace llmux::cuda
#else
TEST(CudaAttentionTiles, SkippedWithoutCuda) { GTEST_SKIP() << "SKIPPED: built without CUDA"; }
#endif
