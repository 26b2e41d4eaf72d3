#include "backend/cuda/attention_tiles.h"

#include "attention_split.h"

namespace llmux::cuda {

AttnTiles BuildAttnTiles(std::span<const int32_t> query_start_loc,
                         std::span<const int32_t> positions, int group, int chunk_tokens) {
  AttnTiles out;
  const int max_tokens = kernels::AttnQueryTileTokens(group);
  const int num_tokens = static_cast<int>(positions.size());
  out.chunk_begin.push_back(0);
  int chunk = 0;
  for (size_t s = 0; s + 1 < query_start_loc.size(); ++s) {
    const int begin = query_start_loc[s];
    const int end = query_start_loc[s + 1];
    int first = begin;
    for (int t = begin; t <= end; ++t) {
      const bool close = t == end || t - first == max_tokens || t % chunk_tokens == 0 ||
                         !kernels::AttnSameWindow(positions[first], positions[t]);
      if (t == first || !close) continue;
      // Tiles are emitted in token order, so a new launch starts at the first tile whose
      // first token lies in it.
      while (first / chunk_tokens > chunk) {
        out.chunk_begin.push_back(static_cast<int>(out.tiles.size() / 2));
        ++chunk;
      }
      out.tiles.push_back(first % chunk_tokens);
      out.tiles.push_back(t - first);
      first = t;
    }
  }
  const int chunks = (num_tokens + chunk_tokens - 1) / chunk_tokens;
  while (static_cast<int>(out.chunk_begin.size()) < chunks + 1) {
    out.chunk_begin.push_back(static_cast<int>(out.tiles.size() / 2));
  }
  return out;
}

}  // namespace llmux::cuda
