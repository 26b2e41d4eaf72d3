// The integer definition of a sampled row's selection and draw, shared by the sampling kernel
// (kernels/sampling.cu) and its host emulation (src/backend/cuda/sampling_emulation.h). Plain
// C++ that nvcc also compiles for the device: every floating-point operation is an explicit
// fused multiply-add (one rounding, the same on both sides), so a token's fixed-point weight
// is the same integer on the host and on the device.
//
// For a row that draws (not greedy), with processed logits l, the argmax's logit lmax and
// inv_t = 1 / temperature:
//   x_i = (l_i - lmax) * inv_t            (two correctly rounded operations)
//   w_i = Exp(x_i)                         (float; 0 for x_i <= kWeightCutoff)
//   W_i = trunc(w_i * 2^kWeightBits)       (integer weight; the argmax has 2^40)
// Candidates are the tokens with W_i > 0, in the order (logit desc, id asc); prefix sums of
// W over that order are exact integers, so every cut and the draw is one integer comparison
// and does not depend on how the sums were grouped (threads, blocks, batch).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LLMUX_SAMPLING_HD __host__ __device__ __forceinline__
#else
#define LLMUX_SAMPLING_HD inline
#endif

namespace llmux::kernels::sampling {

constexpr int kWeightBits = 40;
constexpr uint64_t kWeightOne = 1ull << kWeightBits;
// e^-28 * 2^40 < 1: tokens this far below the argmax (after temperature) have weight 0.
constexpr float kWeightCutoff = -28.0f;
// vocab * 2^40 < 2^64: a row's weight total fits 64 bits.
constexpr int32_t kMaxVocab = (1 << 24) - 1;
// Radix descent: digits of kDigitBits over the order value, most significant first.
constexpr int kDigitBits = 10;
constexpr int kBuckets = 1 << kDigitBits;
// UniformAt's numbers are k / 2^53.
constexpr int kUniformBits = 53;

LLMUX_SAMPLING_HD float Fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

LLMUX_SAMPLING_HD uint32_t FloatBits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, sizeof(b));
  return b;
#endif
}

LLMUX_SAMPLING_HD float BitsFloat(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, sizeof(x));
  return x;
#endif
}

LLMUX_SAMPLING_HD float RoundToInt(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);  // round half to even, the default rounding mode
#endif
}

// The host sampler's DescendingKey: ascending keys are descending logits (-0 and +0 alike).
LLMUX_SAMPLING_HD uint32_t DescendingKey(float x) {
  const uint32_t bits = FloatBits(Fma(x, 1.0f, 0.0f));  // -0 -> +0
  const uint32_t flip = static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31) | 0x80000000u;
  return ~(bits ^ flip);
}

// Bits of a token id in the order value for a vocabulary of `vocab` tokens.
LLMUX_SAMPLING_HD int IdBits(int32_t vocab) {
  int b = 1;
  while ((1 << b) < vocab) ++b;
  return b;
}

// A token's place in the order (logit desc, id asc) as one number; unique per token.
LLMUX_SAMPLING_HD uint64_t OrderValue(float logit, int32_t id, int id_bits) {
  return (static_cast<uint64_t>(DescendingKey(logit)) << id_bits) | static_cast<uint64_t>(id);
}

// e^x for x in (kWeightCutoff, 0]: x = n ln2 + r (Cody-Waite), a degree-7 polynomial in r
// (|r| <= 0.35, relative error about 1e-8 before rounding), times 2^n. Only fmas: the same
// bits on the host and the device.
LLMUX_SAMPLING_HD float Exp(float x) {
  const float n = RoundToInt(Fma(x, 1.44269504f, 0.0f));
  float r = Fma(n, -0.693145751953125f, x);
  r = Fma(n, -1.42860677e-06f, r);
  float p = 1.98412698e-04f;  // 1/5040
  p = Fma(p, r, 1.38888889e-03f);
  p = Fma(p, r, 8.33333333e-03f);
  p = Fma(p, r, 4.16666667e-02f);
  p = Fma(p, r, 1.66666667e-01f);
  p = Fma(p, r, 0.5f);
  p = Fma(p, r, 1.0f);
  p = Fma(p, r, 1.0f);
  const float scale = BitsFloat(static_cast<uint32_t>(127 + static_cast<int32_t>(n)) << 23);
  return Fma(p, scale, 0.0f);
}

// (l - lmax) * inv_t, each operation rounded once.
LLMUX_SAMPLING_HD float Scaled(float l, float lmax, float inv_t) {
  return Fma(Fma(lmax, -1.0f, l), inv_t, 0.0f);
}

// The float weight w (used by min-p) of a scaled logit x.
LLMUX_SAMPLING_HD float Weight(float x) { return x > kWeightCutoff ? Exp(x) : 0.0f; }

// The integer weight W of a float weight w in [0, 1].
LLMUX_SAMPLING_HD uint64_t FixedWeight(float w) {
  const uint64_t v = static_cast<uint64_t>(Fma(w, 1099511627776.0f, 0.0f));  // w * 2^40
  return v < kWeightOne ? v : kWeightOne;
}

// a * b as 128 bits (hi, lo), from 32-bit halves (no __int128 on either side).
struct U128 {
  uint64_t hi;
  uint64_t lo;
};
LLMUX_SAMPLING_HD U128 Mul64(uint64_t a, uint64_t b) {
  const uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
  const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
  return {p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32), (mid << 32) | (p00 & 0xffffffffu)};
}
// a * b / 2^s for s in [0, 127], exactly: rounded down, or up when `round_up`. Both targets
// below are one such quotient (they fit 64 bits; the low 64 bits are returned).
LLMUX_SAMPLING_HD uint64_t MulShift(uint64_t a, uint64_t b, int s, bool round_up) {
  const U128 v = Mul64(a, b);
  uint64_t q;
  bool inexact;  // a bit shifted out was set
  if (s == 0) {
    q = v.lo;
    inexact = false;
  } else if (s < 64) {
    q = (v.lo >> s) | (v.hi << (64 - s));
    inexact = (v.lo << (64 - s)) != 0;
  } else {
    q = s == 64 ? v.hi : v.hi >> (s - 64);
    inexact = v.lo != 0 || (s > 64 && (v.hi << (128 - s)) != 0);
  }
  return round_up && inexact ? q + 1 : q;
}

// The top-p target: the smallest integer >= mass * top_p (exactly), at least 1. The nucleus
// is the shortest prefix of the candidates whose weight reaches it.
LLMUX_SAMPLING_HD uint64_t TopPTarget(uint64_t mass, float top_p) {
  const uint32_t bits = FloatBits(top_p);
  const uint32_t biased = (bits >> 23) & 0xffu;
  // top_p = mant * 2^-s exactly.
  const uint64_t mant = biased == 0 ? (bits & 0x7fffffu) : ((bits & 0x7fffffu) | 0x800000u);
  const int s = biased == 0 ? 149 : 150 - static_cast<int>(biased);
  uint64_t need = 1;
  if (s <= 0) {
    need = mass;  // top_p >= 1 (not used: such rows make no cut)
  } else if (s < 128) {
    need = MulShift(mass, mant, s, /*round_up=*/true);
  }
  return need > 0 ? need : 1;
}

// The draw's target: the token is the first candidate whose inclusive prefix weight P has
// P > u * mass, i.e. P >= floor(U * mass / 2^53) + 1 with U = u * 2^53 (exact: u has 53 bits).
LLMUX_SAMPLING_HD uint64_t DrawTarget(uint64_t mass, double u) {
  const uint64_t big_u = static_cast<uint64_t>(u * 9007199254740992.0);  // u * 2^53
  return MulShift(mass, big_u, kUniformBits, /*round_up=*/false) + 1;
}

// The digits of the radix descent over an order value of `total_bits` bits: level j covers
// bits [Shift(j), Shift(j) + Width(j)), most significant first; the last level may be narrower.
LLMUX_SAMPLING_HD int DigitLevels(int total_bits) {
  return (total_bits + kDigitBits - 1) / kDigitBits;
}
LLMUX_SAMPLING_HD int DigitShift(int total_bits, int level) {
  const int s = total_bits - (level + 1) * kDigitBits;
  return s > 0 ? s : 0;
}
LLMUX_SAMPLING_HD int DigitWidth(int total_bits, int level) {
  return total_bits - level * kDigitBits - DigitShift(total_bits, level);
}

}  // namespace llmux::kernels::sampling
