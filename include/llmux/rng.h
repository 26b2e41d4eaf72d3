// Counter-based random numbers for sampling.
//
// A sequence's draw for output token i is a pure function of (seed, i): no generator state
// is carried between steps, so the same seed gives the same tokens whatever else shares the
// batch, in whatever order sequences are sampled, and after a preemption that recomputes
// the sequence.
#pragma once

#include <cstdint>

namespace llmux {

// The splitmix64 finalizer: a bijective 64-bit mix with full avalanche.
uint64_t Mix64(uint64_t x);

// 64 random bits for position `counter` of the stream keyed by `seed`. Distinct
// (seed, counter) pairs give independent-looking outputs; equal pairs give equal outputs.
uint64_t CounterHash(uint64_t seed, uint64_t counter);

// A uniform double in [0, 1) with 53 random bits, from CounterHash(seed, counter).
double UniformAt(uint64_t seed, uint64_t counter);

// A fresh seed from std::random_device, for requests that do not give one. Thread-safe.
uint64_t RandomSeed();

}  // namespace llmux
