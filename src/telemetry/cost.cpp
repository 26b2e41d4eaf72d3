// Pricing of one call: exact integer arithmetic in nano-units (see docs/billing.md).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "llmux/usage_ledger.h"

namespace llmux {

int64_t CostNano(const Prices& prices, int64_t prompt_tokens, int64_t cached_tokens,
                 int64_t completion_tokens) {
  const int64_t cached = std::clamp<int64_t>(cached_tokens, 0, std::max<int64_t>(prompt_tokens, 0));
  const int64_t uncached = std::max<int64_t>(prompt_tokens, 0) - cached;
  const __int128 micro =  // nano-units * 10^6
      static_cast<__int128>(uncached) * prices.input_nano_per_mtok +
      static_cast<__int128>(cached) * prices.cached_nano_per_mtok +
      static_cast<__int128>(std::max<int64_t>(completion_tokens, 0)) * prices.output_nano_per_mtok;
  const __int128 nano = (micro + 500000) / 1000000;  // round half up (micro >= 0)
  const __int128 max = std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(nano > max ? max : nano);
}

}  // namespace llmux
