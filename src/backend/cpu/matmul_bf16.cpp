#include "backend/cpu/matmul_bf16.h"

#include <vector>

#include "backend/cpu/matmul_driver.h"
#include "backend/cpu/packed_weight.h"
#include "backend/cpu/simd.h"
#include "llmux/status.h"

namespace llmux::cpu {

#if defined(__AVX512BF16__)

namespace {

// Dwords per group: 32 bf16 elements.
constexpr int64_t kGroupDwords = kGroupElems / 2;

// Word 2i <- word i, word 2i + 1 <- word 16 + i: row-major order k..k+31 to the packed group
// order (dword i = elements k+i, k+16+i), as PackRows does.
inline __m512i GroupOrder(__m512i v) {
  const __m512i idx =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, v);
}

inline __m512 Dp(__m512 acc, __m512i x, __m512i w) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(x), reinterpret_cast<__m512bh&>(w));
}

using matmul_driver::InRegister;

// The tile family of bf16 activations times BF16 weights (matmul_driver.h). Tile: out[i, j] for
// i < MR x rows (prepared, xs dwords apart), j < NR weight rows. Group g of weight row j at
// w + j * rs + g * cs (bytes): the packed group order when kPacked, else row-major bf16 (K
// elements per row, permuted in registers; the last partial group loaded masked).
template <bool kPacked>
struct DotTiles {
  using X = uint32_t;
  template <int MR, int NR>
  static void Tile(const uint32_t* x, int64_t xs, const std::byte* w, int64_t rs, int64_t cs,
                   int64_t K, bool prefetch, const float* bias, float* out, int64_t os) {
    __m512 acc[MR][NR];
    matmul_driver::ZeroTile(acc);
    const int64_t groups = (K + kGroupElems - 1) / kGroupElems;
    const int64_t full = kPacked ? groups : K / kGroupElems;
    for (int64_t g = 0; g < full; ++g) {
      const std::byte* wg = w + g * cs;
      if (prefetch) matmul_driver::PrefetchGroup<NR, kPacked>(wg, rs, cs);
      __m512i xv[MR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        xv[i] = _mm512_loadu_si512(x + i * xs + g * kGroupDwords);
        InRegister(xv[i]);
      }
#pragma GCC unroll 12
      for (int j = 0; j < NR; ++j) {
        __m512i wv = _mm512_loadu_si512(wg + j * rs);
        if constexpr (!kPacked) wv = GroupOrder(wv);
        InRegister(wv);
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) acc[i][j] = Dp(acc[i][j], xv[i], wv);
      }
    }
    if (full < groups) {  // row-major only: the last K % 32 elements, zeros after them
      const std::byte* wg = w + full * cs;
      const auto m = static_cast<__mmask32>((uint64_t{1} << (K - full * kGroupElems)) - 1);
      __m512i xv[MR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_si512(x + i * xs + full * kGroupDwords);
#pragma GCC unroll 12
      for (int j = 0; j < NR; ++j) {
        const __m512i wv = GroupOrder(_mm512_maskz_loadu_epi16(m, wg + j * rs));
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) acc[i][j] = Dp(acc[i][j], xv[i], wv);
      }
    }
    matmul_driver::StoreTile<MR, NR>(acc, bias, out, os);
  }
};

// NOTE: from about this many activation elements, splitting their rounding over the threads
// saves more than the extra ParallelFor wake-up costs (a few microseconds).
constexpr int64_t kParallelPackElems = int64_t{1} << 16;

}  // namespace

bool Bf16DotAvailable() {
  static const bool available = __builtin_cpu_supports("avx512bf16");
  return available;
}

void PackBf16Activations(const float* x, int64_t x_stride, int64_t M, int64_t K, uint32_t* dst) {
  const int64_t groups = (K + kGroupElems - 1) / kGroupElems;
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * x_stride;
    uint32_t* out = dst + m * groups * kGroupDwords;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k = g * kGroupElems;
      const int64_t rem = K - k;
      const __mmask16 mlo = rem >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(rem);
      const __mmask16 mhi = rem >= 32   ? static_cast<__mmask16>(0xffff)
                            : rem > 16 ? TailMask(rem - 16)
                                       : static_cast<__mmask16>(0);
      const __m512 lo = _mm512_maskz_loadu_ps(mlo, row + k);
      const __m512 hi = _mm512_maskz_loadu_ps(mhi, row + k + 16);
      // Words 0..15 = bf16(lo), 16..31 = bf16(hi); then the group order.
      const __m512bh b = _mm512_cvtne2ps_pbh(hi, lo);
      _mm512_storeu_si512(out + g * kGroupDwords,
                          GroupOrder(reinterpret_cast<const __m512i&>(b)));
    }
  }
}

void MatMulBf16Dot(const MatMulArgs& a, ThreadPool& pool) {
  if (a.M <= 0 || a.N <= 0) return;
  const int64_t xs = (a.K + kGroupElems - 1) / kGroupElems * kGroupDwords;
  // Every activation row is rounded once, before the N split; all threads' panels then read
  // them (M * K element ops against M * N * K multiply-adds). Rows are independent: a prefill's
  // are split over the threads, a decode's few are done here.
  thread_local std::vector<uint32_t> xb;
  if (xb.size() < static_cast<size_t>(a.M * xs)) xb.resize(a.M * xs);
  uint32_t* xw = xb.data();
  if (a.M * a.K >= kParallelPackElems) {
    pool.ParallelFor(a.M, [&](int64_t m0, int64_t m1) {
      PackBf16Activations(a.x + m0 * a.x_stride, a.x_stride, m1 - m0, a.K, xw + m0 * xs);
    });
  } else {
    PackBf16Activations(a.x, a.x_stride, a.M, a.K, xw);
  }
  matmul_driver::Run<DotTiles<false>, DotTiles<true>>(a, xw, xs, pool);
}

#else  // !__AVX512BF16__

bool Bf16DotAvailable() { return false; }

void PackBf16Activations(const float*, int64_t, int64_t, int64_t, uint32_t*) {
  LLMUX_CHECK(false) << "PackBf16Activations: built without AVX-512 BF16";
}

void MatMulBf16Dot(const MatMulArgs&, ThreadPool&) {
  LLMUX_CHECK(false) << "MatMulBf16Dot: built without AVX-512 BF16";
}

#endif

}  // namespace llmux::cpu
