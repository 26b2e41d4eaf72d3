// Test inputs for the CUDA backend tests: deterministic values that are exact in bf16, so the
// device (bf16 activations) and the CPU backend (f32), the reference every op is judged
// against, start from the same numbers.
#pragma once

#include <cstdint>
#include <vector>

#include "llmux/dtype.h"

namespace llmux::cuda::testing {

inline float RoundBf16(float x) { return Bf16ToFloat(FloatToBf16(x)); }

// Deterministic values in [-scale, scale), already representable in bf16.
inline std::vector<float> RandomBf16(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>(s >> 40) / static_cast<float>(1 << 24);
    x = RoundBf16((2.0f * u - 1.0f) * scale);
  }
  return v;
}

}  // namespace llmux::cuda::testing
