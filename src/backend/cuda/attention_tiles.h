// How a batch's tokens are grouped into paged-attention query tiles (one block per tile, kv
// head and split; kernels/paged_attention.cu). Host only, plain values: tested without a device.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace llmux::cuda {

struct AttnTiles {
  // [num_tiles][2]: (first token within its launch, token count).
  std::vector<int32_t> tiles;
  // Launch c (tokens [c * chunk_tokens, ...)) owns tiles [chunk_begin[c], chunk_begin[c + 1]).
  std::vector<int> chunk_begin;
};

// Splits every sequence's tokens (query_start_loc: [num_seqs + 1] offsets; positions: one per
// token) into tiles of consecutive tokens that stay inside one sequence, one 64-position
// window (kernels::AttnSameWindow) and one launch of `chunk_tokens` tokens, with at most
// kernels::AttnQueryTileTokens(group) tokens each. A decode token is a tile of its own.
// NOTE: which tile a token lands in does not change its result (the kernel's batch
// invariance); tiling only decides how many rows share each K/V load.
AttnTiles BuildAttnTiles(std::span<const int32_t> query_start_loc,
                         std::span<const int32_t> positions, int group, int chunk_tokens);

}  // namespace llmux::cuda
