#include "llmux/rng.h"

#include <random>

namespace llmux {

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t CounterHash(uint64_t seed, uint64_t counter) {
  // NOTE: two rounds so that neighbouring seeds and neighbouring counters both decorrelate;
  // a single Mix64(seed ^ counter) would make (s, c) and (c, s) collide.
  return Mix64(Mix64(seed) ^ (counter * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL));
}

double UniformAt(uint64_t seed, uint64_t counter) {
  return static_cast<double>(CounterHash(seed, counter) >> 11) * 0x1.0p-53;
}

uint64_t RandomSeed() {
  // NOTE: std::random_device is not guaranteed thread-safe on one shared instance, so each
  // call uses its own; the cost (one open/read of the entropy source) is per request.
  std::random_device rd;
  const uint64_t hi = rd();
  const uint64_t lo = rd();
  return (hi << 32) ^ lo;
}

}  // namespace llmux
