// Naive CPU references for the CUDA elementwise kernel tests: plain loops in float (double for
// reductions), on values already rounded to bf16 where the device sees bf16 inputs. GEMM,
// attention and the model are judged against the CPU backend itself.
#pragma once

#include <algorithm>
#include <cmath>
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

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w.  x: [rows, cols].
inline std::vector<float> RefRmsNorm(const std::vector<float>& x, const std::vector<float>& w,
                                     float eps, int rows, int cols) {
  std::vector<float> out(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int c = 0; c < cols; ++c) ss += double(x[r * cols + c]) * x[r * cols + c];
    const double inv = 1.0 / std::sqrt(ss / cols + eps);
    for (int c = 0; c < cols; ++c) out[r * cols + c] = float(x[r * cols + c] * inv * w[c]);
  }
  return out;
}

// In place on x: [tokens, heads * head_dim], rotate-half.
inline void RefRope(std::vector<float>& x, const std::vector<int>& positions,
                    const std::vector<float>& inv_freq, int heads, int head_dim) {
  const int half = head_dim / 2;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int h = 0; h < heads; ++h) {
      float* p = &x[(t * heads + h) * head_dim];
      for (int i = 0; i < half; ++i) {
        const double a = double(float(positions[t]) * inv_freq[i]);
        const float c = float(std::cos(a)), s = float(std::sin(a));
        const float x1 = p[i], x2 = p[i + half];
        p[i] = x1 * c - x2 * s;
        p[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

inline float RefSilu(float g) { return g / (1.0f + std::exp(-g)); }

}  // namespace llmux::cuda::testing
