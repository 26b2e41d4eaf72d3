#include "backend/cpu/matmul_bf16.h"

#include <algorithm>
#include <vector>

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

// See matmul.cpp: keeps v in a register (no load folded into every vdpbf16ps).
inline void InRegister(__m512i& v) { asm("" : "+v"(v)); }

constexpr int64_t kPrefetchBytes = 2048;
constexpr int64_t kPrefetchGroups = 8;

// out[i, j] for i < MR x rows (prepared, xs dwords apart), j < NR weight rows. Group g of weight
// row j at w + j * rs + g * cs (bytes): the packed group order when kPacked, else row-major
// bf16 (K elements per row, permuted in registers; the last partial group loaded masked).
template <int MR, int NR, bool kPacked>
void DotTile(const uint32_t* x, int64_t xs, const std::byte* w, int64_t rs, int64_t cs,
             int64_t K, bool prefetch, const float* bias, float* out, int64_t os) {
  __m512 acc[MR][NR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t groups = (K + kGroupElems - 1) / kGroupElems;
  const int64_t full = kPacked ? groups : K / kGroupElems;
  for (int64_t g = 0; g < full; ++g) {
    const std::byte* wg = w + g * cs;
    if (prefetch) {
      if constexpr (kPacked) {
        for (int64_t off = 0; off < NR * rs; off += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(wg) + kPrefetchBytes + off, _MM_HINT_T0);
        }
      } else {
#pragma GCC unroll 12
        for (int j = 0; j < NR; ++j) {
          _mm_prefetch(reinterpret_cast<const char*>(wg + j * rs + kPrefetchGroups * cs),
                       _MM_HINT_T0);
        }
      }
    }
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
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NR; j += 4) {
      const __m512 z = _mm512_setzero_ps();
      __m128 h = Hsum4(acc[i][j], j + 1 < NR ? acc[i][j + 1] : z, j + 2 < NR ? acc[i][j + 2] : z,
                       j + 3 < NR ? acc[i][j + 3] : z);
      const __mmask8 mk = NR - j >= 4 ? 0xf : static_cast<__mmask8>((1u << (NR - j)) - 1u);
      if (bias != nullptr) h = _mm_add_ps(h, _mm_maskz_loadu_ps(mk, bias + j));
      _mm_mask_storeu_ps(out + i * os + j, mk, h);
    }
  }
}

using DotTileFn = void (*)(const uint32_t*, int64_t, const std::byte*, int64_t, int64_t, int64_t,
                           bool, const float*, float*, int64_t);

// Tile shapes as in matmul.cpp: up to 2 x rows by a whole panel (decode), up to 4 x rows by
// half a panel (prefill); at most 24 accumulators + MR x + 1 weight registers.
constexpr int kMaxMr = 4;
constexpr int kWideMr = 2;
constexpr int kMaxNr = static_cast<int>(kPanelRows);
constexpr int NrCap(int mr) { return mr <= kWideMr ? kMaxNr : kMaxNr / 2; }

template <bool kPacked>
struct DotTileTable {
  DotTileFn fn[kMaxMr][kMaxNr];
  template <int MR, int NR>
  constexpr void Fill() {
    fn[MR - 1][NR - 1] = &DotTile<MR, NR, kPacked>;
    if constexpr (NR < NrCap(MR)) {
      Fill<MR, NR + 1>();
    } else if constexpr (MR < kMaxMr) {
      Fill<MR + 1, 1>();
    }
  }
  constexpr DotTileTable() : fn{} { Fill<1, 1>(); }
};
template <bool kPacked>
constexpr DotTileTable<kPacked> kDotTiles{};

// Threads split N into blocks of whole panels; below kPackMinM rows a row-major weight is
// streamed as is, from it on each block is packed first (as matmul.cpp does).
constexpr int64_t kBlockN = 4 * kPanelRows;
constexpr int64_t kPackMinM = 5;

int MrMax(int64_t M) { return M == 1 ? 1 : kMaxMr; }

// NOTE: from about this many activation elements, splitting their rounding over the threads
// saves more than the extra ParallelFor wake-up costs (a few microseconds).
constexpr int64_t kParallelPackElems = int64_t{1} << 16;

void PackedBlock(const MatMulArgs& a, const uint32_t* xb, int64_t xs, const PackedLayout& layout,
                 const std::byte* data, int64_t n0, int64_t n1, int64_t col0) {
  const int64_t gb = static_cast<int64_t>(layout.group_bytes());
  const bool prefetch = a.M < kPackMinM;
  const int mr_max = MrMax(a.M);
  for (int64_t m = 0; m < a.M; m += mr_max) {
    const int mr = static_cast<int>(std::min<int64_t>(mr_max, a.M - m));
    const int nr_cap = NrCap(mr);
    for (int64_t p0 = n0; p0 < n1; p0 += kPanelRows) {
      const int64_t p = p0 / kPanelRows, rows = layout.PanelRows(p);
      const std::byte* panel = data + layout.PanelOffset(p);
      for (int64_t j0 = 0; j0 < rows; j0 += nr_cap) {
        const int nr = static_cast<int>(std::min<int64_t>(nr_cap, rows - j0));
        const int64_t n = col0 + p0 + j0;
        kDotTiles<true>.fn[mr - 1][nr - 1](xb + m * xs, xs, panel + j0 * gb, gb, rows * gb, a.K,
                                           prefetch, a.bias != nullptr ? a.bias + n : nullptr,
                                           a.out + m * a.out_stride + n, a.out_stride);
      }
    }
  }
}

void RowMajorBlock(const MatMulArgs& a, const uint32_t* xb, int64_t xs, int64_t n0, int64_t n1) {
  const int64_t rs = static_cast<int64_t>(DTypeBytes(DType::kBF16, a.w_stride));
  const int64_t cs = static_cast<int64_t>(PackedGroupBytes(DType::kBF16));
  const auto* w = static_cast<const std::byte*>(a.w);
  const int mr_max = MrMax(a.M);
  for (int64_t m = 0; m < a.M; m += mr_max) {
    const int mr = static_cast<int>(std::min<int64_t>(mr_max, a.M - m));
    const int nr_cap = NrCap(mr);
    for (int64_t n = n0; n < n1; n += nr_cap) {
      const int nr = static_cast<int>(std::min<int64_t>(nr_cap, n1 - n));
      kDotTiles<false>.fn[mr - 1][nr - 1](xb + m * xs, xs, w + n * rs, rs, cs, a.K,
                                          /*prefetch=*/true,
                                          a.bias != nullptr ? a.bias + n : nullptr,
                                          a.out + m * a.out_stride + n, a.out_stride);
    }
  }
}

// The unit threads split N into: single panels for a decode GEMV, blocks for a prefill (see
// SplitRows in matmul.cpp).
int64_t SplitRows(const MatMulArgs& a) { return a.M < kPackMinM ? kPanelRows : kBlockN; }

// Units [b0, b1) of SplitRows(a) rows.
void RunBlocks(const MatMulArgs& a, const uint32_t* xb, int64_t xs, int64_t b0, int64_t b1) {
  const int64_t rows = SplitRows(a);
  if (a.packed != nullptr) {
    for (int64_t b = b0; b < b1; ++b) {
      PackedBlock(a, xb, xs, a.packed->layout, a.packed->data, b * rows,
                  std::min(a.N, (b + 1) * rows), 0);
    }
    return;
  }
  if (a.M < kPackMinM) {
    for (int64_t b = b0; b < b1; ++b) {
      RowMajorBlock(a, xb, xs, b * rows, std::min(a.N, (b + 1) * rows));
    }
    return;
  }
  // A row-major weight in a prefill: pack each block into a thread_local panel first.
  thread_local std::vector<std::byte> panel_storage;
  const size_t row_bytes = DTypeBytes(DType::kBF16, a.w_stride);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t n0 = b * kBlockN, n1 = std::min(a.N, (b + 1) * kBlockN);
    const PackedLayout layout{DType::kBF16, n1 - n0, a.K};
    if (panel_storage.size() < layout.bytes()) panel_storage.resize(layout.bytes());
    std::byte* panel = panel_storage.data();
    PackRows(layout, static_cast<const std::byte*>(a.w) + n0 * row_bytes, a.w_stride, 0, n1 - n0,
             panel);
    PackedBlock(a, xb, xs, layout, panel, 0, n1 - n0, n0);
  }
}

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
  const uint32_t* xp = xw;
  const int64_t unit = SplitRows(a);
  const int64_t blocks = (a.N + unit - 1) / unit;
  const int max_chunks = a.M * a.N * a.K < (1 << 18) ? 1 : 1 << 15;
  pool.ParallelFor(
      blocks, [&](int64_t b0, int64_t b1) { RunBlocks(a, xp, xs, b0, b1); }, max_chunks);
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
