// llmux-bench: seeded random numbers and the length / arrival distributions of a workload.
// Header-only (tested by unit_tools). Every draw goes through Rng, whose output is fixed by
// the standard (mt19937_64) and converted to doubles here, never through <random>'s
// distributions, whose results differ between standard libraries: a seed means the same
// workload everywhere.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

namespace llmux::bench {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Uniform integer in [lo, hi] (lo <= hi).
  int64_t Int(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(engine_() % span);
  }
  // Exponential with the given rate (> 0): a Poisson process's inter-arrival time.
  double Exponential(double rate) { return -std::log1p(-Uniform()) / rate; }
  // Standard normal (Box-Muller, one value per call).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  std::mt19937_64 engine_;
};

// A distribution of token counts (prompt or output lengths).
struct LengthDist {
  enum class Kind { kFixed, kUniform, kShareGpt };
  Kind kind = Kind::kFixed;
  int64_t value = 128;  // kFixed
  int64_t min = 1;      // kUniform: inclusive bounds; kShareGpt: clamp bounds
  int64_t max = 1024;
  double mean = 200;    // kShareGpt: mean of the (unclamped) log-normal
  double sigma = 1.0;   // kShareGpt: sigma of the underlying normal (tail weight)

  // One draw; always >= 1.
  int64_t Sample(Rng& rng) const {
    int64_t v = value;
    switch (kind) {
      case Kind::kFixed: break;
      case Kind::kUniform: v = rng.Int(min, max); break;
      case Kind::kShareGpt: {
        // NOTE: log-normal — ShareGPT's conversation lengths are right-skewed with a long tail
        // (many short turns, a few very long ones); mu is chosen so the mean is `mean`.
        const double mu = std::log(mean) - sigma * sigma / 2;
        v = std::clamp<int64_t>(std::llround(std::exp(mu + sigma * rng.Normal())), min, max);
        break;
      }
    }
    return std::max<int64_t>(v, 1);
  }

  std::string Describe() const {
    switch (kind) {
      case Kind::kFixed: return "fixed " + std::to_string(value);
      case Kind::kUniform: return "uniform " + std::to_string(min) + ".." + std::to_string(max);
      case Kind::kShareGpt:
        return "sharegpt mean " + std::to_string(std::llround(mean)) + " [" + std::to_string(min) +
               ".." + std::to_string(max) + "]";
    }
    return "";
  }
};

// Seed of tenant `index`'s stream, so adding a tenant does not change the others' workloads.
inline uint64_t TenantSeed(uint64_t scenario_seed, size_t index) {
  // SplitMix64 finaliser over (seed, index).
  uint64_t z = scenario_seed + 0x9E3779B97F4A7C15ULL * (index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace llmux::bench
