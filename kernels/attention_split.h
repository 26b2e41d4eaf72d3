// How paged attention splits one query's keys into independently reduced parts.
//
// NOTE: batch invariance. The split of a query's key range depends on its context length
// alone (never on the batch size, the number of sequences or the grid), and the parts are
// combined in a fixed order. A token's attention output is therefore bit-identical whatever
// batch it is computed in. Shared by the kernel and the host (grid sizing).
#pragma once

#ifdef __CUDACC__
#define LLMUX_HD __host__ __device__ __forceinline__
#else
#define LLMUX_HD inline
#endif

namespace llmux::kernels {

inline constexpr int kAttnTileKeys = 64;       // keys staged in shared memory at once
// NOTE: occupancy. A decode token gets one block per (kv head, split), so the split count is
// what fills the device at small batch: with one tile (64 keys) per split, a 1k-token decode of
// Llama-3-8B (8 kv heads) is 8 x 16 = 128 blocks, about one wave on 132 SMs, where 512-key
// splits gave 16 blocks. The price, paid at every batch size: each split writes its partial
// (m, l, head_dim floats per query head) and the fold reads it back, about 6% on top of the
// 64 keys of K and V a split reads (head_dim 128, bf16). Contexts over 32 tiles get longer
// splits (kAttnMaxSplits bounds the workspace).
inline constexpr int kAttnSplitKeys = kAttnTileKeys;  // target keys per split
inline constexpr int kAttnMaxSplits = 32;             // longer contexts get longer splits
inline constexpr int kAttnMaxGroup = 16;       // query heads per kv head
inline constexpr int kAttnMaxHeadDim = 256;

// Rows of one attention block: (query token, query head of the GQA group) pairs, 4 warps of
// 16 rows for the tensor-core tiles.
inline constexpr int kAttnTileRows = 64;

// Query tokens per attention block for a GQA group of `group` query heads per kv head.
LLMUX_HD int AttnQueryTileTokens(int group) {
  return group >= kAttnTileRows ? 1 : kAttnTileRows / group;
}

struct AttnSplit {
  int num_splits;  // >= 1
  int split_len;   // keys per split (a multiple of kAttnTileKeys), the last one may be shorter
};

// context_len >= 1.
//
// NOTE: the split depends on ceil(context_len / kAttnTileKeys) only, i.e. it is the same for
// every query position of one 64-position window [64w, 64w + 63] (context 64w + 1 .. 64w + 64),
// and every split of such a position holds at least one of its keys. So a query tile never
// straddling a window shares one split layout among all its rows, and a token's split (and
// with it its bits) is the same whether it is computed alone (decode) or in a prefill tile.
LLMUX_HD AttnSplit AttnSplitFor(int context_len) {
  int n = (context_len + kAttnSplitKeys - 1) / kAttnSplitKeys;
  if (n > kAttnMaxSplits) n = kAttnMaxSplits;
  int len = (context_len + n - 1) / n;
  len = (len + kAttnTileKeys - 1) / kAttnTileKeys * kAttnTileKeys;
  AttnSplit s;
  s.split_len = len;
  s.num_splits = (context_len + len - 1) / len;
  return s;
}

// True when positions a and b (>= 0) lie in the same 64-position window (same split layout).
LLMUX_HD bool AttnSameWindow(int a, int b) { return a / kAttnTileKeys == b / kAttnTileKeys; }

}  // namespace llmux::kernels

#undef LLMUX_HD
