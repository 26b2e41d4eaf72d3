// AVX-512 helpers shared by the CPU backend's kernels. Every reduction here has ONE fixed order
// (documented per function), which is what makes the ops batch-invariant: the same inputs give
// the same bits whatever the batch shape, tile or thread that computes them.
#pragma once

// NOTE: GCC 12's AVX-512 intrinsics build their pass-through operand from _mm512_undefined_*()
// (`__Y = __Y`), which -Wuninitialized flags once inlined into our code. The values are never
// read; the warning is disabled for the translation units that use these kernels (GCC only:
// clang neither warns there nor knows -Wmaybe-uninitialized).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace llmux::cpu {

// Mask of the first n (0..16) lanes.
inline __mmask16 TailMask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// 16 consecutive elements at p as F32 (exact conversions). Unaligned loads: weights may sit at
// any offset inside a mapped file.
inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 LoadBf16x16(const uint16_t* p) {
  __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
inline __m512 LoadF16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// The F16 scale of the Q8_0 block at blk (dtype.h), as F32 in every lane (vpbroadcastw from
// memory + vcvtph2ps: two instructions).
inline __m512 Q8Scale(const uint8_t* blk) {
  int16_t d;
  std::memcpy(&d, blk, 2);
  return _mm512_cvtph_ps(_mm256_set1_epi16(d));
}
// Elements k..k+15 (k a multiple of 16) of a Q8_0 row at `row`: d * q, exact in F32.
inline __m512 LoadQ8x16(const uint8_t* row, int64_t k) {
  const uint8_t* blk = row + (k >> 5) * 34;
  __m512i q = _mm512_cvtepi8_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + (k & 31))));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(q), Q8Scale(blk));
}
// Masked variants: lanes outside `m` are 0 and their memory is not touched.
inline __m512 LoadMasked(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 LoadF16Masked(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 LoadBf16Masked(const uint16_t* p, __mmask16 m) {
  __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

// Horizontal sum with a fixed tree: lanes i and i+8, then i and i+4, then i and i+2, then 0 and 1.
inline float Hsum(__m512 v) {
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// [Hsum(v0), Hsum(v1), Hsum(v2), Hsum(v3)], bit for bit: the same additions of the same lane
// pairs as Hsum (float addition is commutative, so which operand is which does not matter),
// four reductions sharing each shuffle and add.
inline __m128 Hsum4(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
  // Lanes i + i+8: [a(v0) | a(v1)], [a(v2) | a(v3)], 8 lanes each.
  const __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x44),
                                   _mm512_shuffle_f32x4(v0, v1, 0xee));
  const __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(v2, v3, 0x44),
                                   _mm512_shuffle_f32x4(v2, v3, 0xee));
  // Lanes i + i+4: 128-bit lane k holds b(vk).
  __m512 r = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, 0x88),
                           _mm512_shuffle_f32x4(s01, s23, 0xdd));
  // Lanes 0 + 2 and 1 + 3 of each 128-bit lane (movehl), then 0 + 1 (movehdup).
  r = _mm512_add_ps(r, _mm512_permute_ps(r, 0xee));
  r = _mm512_add_ps(r, _mm512_permute_ps(r, 0x55));
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), r));
}

// sum_i a[i] * b[i] over n floats: 16-lane FMA accumulation over consecutive chunks of 16 in
// order, the last partial chunk masked, then Hsum. The order every dot product in the backend
// follows.
inline float Dot(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(Load16(a + i), Load16(b + i), acc);
  if (i < n) {
    __mmask16 m = TailMask(n - i);
    acc = _mm512_fmadd_ps(LoadMasked(a + i, m), LoadMasked(b + i, m), acc);
  }
  return Hsum(acc);
}

// exp(x) per lane, Cephes' single-precision polynomial (max rel. error ~2 ulp); x <= -88 -> 0.
inline __m512 Exp(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.33654f);
  __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.37626f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
  y = _mm512_scalef_ps(y, n);
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), y);
}

}  // namespace llmux::cpu
