// Helpers shared by the KV-cache manager's tests.
#pragma once

#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "kv/kv_cache_manager.h"

namespace llmux::kv_test {

// The n tokens start, start + 1, ..., start + n - 1.
inline std::vector<int32_t> Tokens(int32_t n, int32_t start) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Registers every full block of `tokens` (block b held in table[b]) under `root`, in order, as
// the scheduler's Update does for a sequence that computed them. Returns the chain after the
// last full block (where a partial tail continues).
inline PrefixChain RegisterFullBlocks(KvCacheManager& kv, const PrefixRoot& root,
                                      std::span<const int32_t> tokens,
                                      std::span<const int32_t> table) {
  PrefixChain chain{root.seed_hash, -1, 0, 0, false};
  const int32_t bs = kv.block_size();
  for (size_t b = 0; b < tokens.size() / bs; ++b) {
    kv.RegisterFullBlock(root, tokens.subspan(b * bs, bs), table[b], &chain);
  }
  return chain;
}

}  // namespace llmux::kv_test
