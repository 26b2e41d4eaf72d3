#include "backend/cpu/matmul.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/matmul_bf16.h"
#include "backend/cpu/simd.h"

namespace llmux::cpu {
namespace {

// Weight readers: one row's group of 32 elements (k..k+31, packed_weight.h) at `g` as two exact
// F32 chunks, lo = k..k+15 and hi = k+16..k+31. Load2 decodes both (sharing what it can),
// Load one of them. kPacked readers find zero padding past K; row-major ones (kPacked false)
// must not read past the row, so their tail goes through LoadMasked.
struct F32W {
  static constexpr bool kPacked = false;  // same bytes in both layouts; see F32Packed
  static __m512 Load(const std::byte* g, int h) {
    return Load16(reinterpret_cast<const float*>(g) + 16 * h);
  }
  static void Load2(const std::byte* g, __m512& lo, __m512& hi) {
    lo = Load(g, 0);
    hi = Load(g, 1);
  }
  static __m512 LoadMasked(const std::byte* g, int h, __mmask16 m) {
    return cpu::LoadMasked(reinterpret_cast<const float*>(g) + 16 * h, m);
  }
};
struct F16W {
  static constexpr bool kPacked = false;
  static __m512 Load(const std::byte* g, int h) {
    return LoadF16x16(reinterpret_cast<const uint16_t*>(g) + 16 * h);
  }
  static void Load2(const std::byte* g, __m512& lo, __m512& hi) {
    lo = Load(g, 0);
    hi = Load(g, 1);
  }
  static __m512 LoadMasked(const std::byte* g, int h, __mmask16 m) {
    return LoadF16Masked(reinterpret_cast<const uint16_t*>(g) + 16 * h, m);
  }
};
// Row-major BF16: zero-extend each 16-bit element, shift into the high half.
struct Bf16RowsW {
  static constexpr bool kPacked = false;
  static __m512 Load(const std::byte* g, int h) {
    return LoadBf16x16(reinterpret_cast<const uint16_t*>(g) + 16 * h);
  }
  static void Load2(const std::byte* g, __m512& lo, __m512& hi) {
    lo = Load(g, 0);
    hi = Load(g, 1);
  }
  static __m512 LoadMasked(const std::byte* g, int h, __mmask16 m) {
    return LoadBf16Masked(reinterpret_cast<const uint16_t*>(g) + 16 * h, m);
  }
};
// Packed BF16 (dword i = element i | element 16 + i << 16): one 64-byte load, then a shift (lo)
// or a mask (hi) per 16 weights.
struct Bf16PackedW {
  static constexpr bool kPacked = true;
  static __m512i Raw(const std::byte* g) { return _mm512_loadu_si512(g); }
  static __m512 Lo(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
  static __m512 Hi(__m512i v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)));
  }
  static __m512 Load(const std::byte* g, int h) { return h == 0 ? Lo(Raw(g)) : Hi(Raw(g)); }
  static void Load2(const std::byte* g, __m512& lo, __m512& hi) {
    const __m512i v = Raw(g);
    lo = Lo(v);
    hi = Hi(v);
  }
  static __m512 LoadMasked(const std::byte* g, int h, __mmask16) { return Load(g, h); }
};
// Q8_0 blocks (dtype.h): d * q, exact in F32, so a Q8_0 weight gives the same bits as the F32
// matrix DequantizeRowQ8_0 makes of it. Rows are whole blocks: no tail.
struct Q8W {
  static constexpr bool kPacked = false;
  static __m512 Half(const std::byte* g, int h, __m512 d) {
    const auto* q = reinterpret_cast<const __m128i*>(g + 2) + h;
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))), d);
  }
  static __m512 Scale(const std::byte* g) { return Q8Scale(reinterpret_cast<const uint8_t*>(g)); }
  static __m512 Load(const std::byte* g, int h) { return Half(g, h, Scale(g)); }
  static void Load2(const std::byte* g, __m512& lo, __m512& hi) {
    const __m512 d = Scale(g);
    lo = Half(g, 0, d);
    hi = Half(g, 1, d);
  }
  static __m512 LoadMasked(const std::byte* g, int h, __mmask16) { return Load(g, h); }
};
// Packed F32/F16/Q8_0 read exactly like their row-major forms; only kPacked differs.
template <class W>
struct PackedW : W {
  static constexpr bool kPacked = true;
};

// NOTE: prefetch distances for decode. Decode GEMV is bound by memory bandwidth; a packed
// panel is one contiguous stream (kPrefetchBytes ahead of the group being read), row-major
// rows are NR streams (kPrefetchGroups groups ahead in each row).
constexpr int64_t kPrefetchBytes = 2048;
constexpr int64_t kPrefetchGroups = 8;

// NOTE: an empty asm that claims to change v: the compiler must keep v in a register from here
// on. Without it GCC 12 folds the x (or F32 weight) loads into every FMA (MR * NR loads per
// chunk instead of MR + NR), which makes the prefill tile load-bound (docs/performance.md).
inline void InRegister(__m512& v) { asm("" : "+v"(v)); }

// out[i, j] = Dot(x row i, weight row j) (+ bias[j]) for i < MR, j < NR. x rows at x + i * xs;
// group g of weight row j at w + j * rs + g * cs (bytes). Per output: FMA over the 16-element
// chunks in k order, the last partial chunk masked, then Hsum: the Dot order (simd.h).
template <int MR, int NR, class W>
void Tile(const float* x, int64_t xs, const std::byte* w, int64_t rs, int64_t cs, int64_t K,
          bool prefetch, const float* bias, float* out, int64_t os) {
  __m512 acc[MR][NR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t full = K / kGroupElems;
  for (int64_t g = 0; g < full; ++g) {
    const std::byte* wg = w + g * cs;
    const float* xg = x + g * kGroupElems;
    if (prefetch) {
      if constexpr (W::kPacked) {
        // The tile's rows of this group are NR * rs contiguous bytes of the panel's stream.
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
    if constexpr (MR <= 2) {
      // Both chunks' x in registers; each weight row's group decoded once (one load for packed
      // BF16, one scale for Q8_0). Per accumulator: chunk lo, then hi.
      __m512 xlo[MR], xhi[MR];
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        xlo[i] = Load16(xg + i * xs);
        xhi[i] = Load16(xg + i * xs + 16);
      }
#pragma GCC unroll 12
      for (int j = 0; j < NR; ++j) {
        __m512 lo, hi;
        W::Load2(wg + j * rs, lo, hi);
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm512_fmadd_ps(xlo[i], lo, acc[i][j]);
          acc[i][j] = _mm512_fmadd_ps(xhi[i], hi, acc[i][j]);
        }
      }
    } else {
      // MR x rows of one chunk, then the next: MR * NR accumulators + MR x + 1 weight fit the
      // 32 registers; each weight vector is widened once for MR rows.
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m512 xv[MR];
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
          xv[i] = Load16(xg + i * xs + 16 * h);
          InRegister(xv[i]);
        }
#pragma GCC unroll 12
        for (int j = 0; j < NR; ++j) {
          __m512 wv = W::Load(wg + j * rs, h);
          InRegister(wv);
#pragma GCC unroll 4
          for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
      }
    }
  }
  // K % 32 trailing elements: a full chunk and/or a masked one, as Dot does.
  const int64_t tail = K - full * kGroupElems;
  for (int h = 0; h < 2 && tail - 16 * h > 0; ++h) {
    const int64_t rem = tail - 16 * h;
    const __mmask16 m = rem >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(rem);
    const std::byte* wg = w + full * cs;
    __m512 xv[MR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) xv[i] = LoadMasked(x + i * xs + full * kGroupElems + 16 * h, m);
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j) {
      const __m512 wv = W::LoadMasked(wg + j * rs, h, m);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  // Hsum of four accumulators at a time (Hsum4: the same bits as Hsum), + bias, stored.
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NR; j += 4) {
      const __m512 z = _mm512_setzero_ps();
      __m128 h = Hsum4(acc[i][j], j + 1 < NR ? acc[i][j + 1] : z, j + 2 < NR ? acc[i][j + 2] : z,
                       j + 3 < NR ? acc[i][j + 3] : z);
      const __mmask8 m = NR - j >= 4 ? 0xf : static_cast<__mmask8>((1u << (NR - j)) - 1u);
      if (bias != nullptr) h = _mm_add_ps(h, _mm_maskz_loadu_ps(m, bias + j));
      _mm_mask_storeu_ps(out + i * os + j, m, h);
    }
  }
}

using TileFn = void (*)(const float*, int64_t, const std::byte*, int64_t, int64_t, int64_t, bool,
                        const float*, float*, int64_t);

// Tile shapes: up to 2 x rows by a whole panel (decode), or up to 4 x rows by half a panel
// (prefill): at most 24 accumulators.
constexpr int kMaxMr = 4;
constexpr int kWideMr = 2;
constexpr int kMaxNr = static_cast<int>(kPanelRows);
constexpr int kNarrowNr = kMaxNr / 2;
constexpr int NrCap(int mr) { return mr <= kWideMr ? kMaxNr : kNarrowNr; }

// Table of Tile instantiations indexed [mr - 1][nr - 1] (nr <= NrCap(mr)).
template <class W>
struct TileTable {
  TileFn fn[kMaxMr][kMaxNr];
  template <int MR, int NR>
  constexpr void Fill() {
    fn[MR - 1][NR - 1] = &Tile<MR, NR, W>;
    if constexpr (NR < NrCap(MR)) {
      Fill<MR, NR + 1>();
    } else if constexpr (MR < kMaxMr) {
      Fill<MR + 1, 1>();
    }
  }
  constexpr TileTable() : fn{} { Fill<1, 1>(); }
};

template <class W>
constexpr TileTable<W> kTiles{};

// Rows of w per block: the unit threads split N into (whole panels).
constexpr int64_t kBlockN = 4 * kPanelRows;
static_assert(kBlockN % kPanelRows == 0);
// Below this M a row-major weight is streamed as is; from it on each block is packed first
// (the packed panel is reused by every m tile).
constexpr int64_t kPackMinM = 5;

int MrMax(int64_t M) { return M == 1 ? 1 : kMaxMr; }

// Rows [n0, n1) (whole panels of `layout`, n0 a multiple of kPanelRows) from packed `data`.
// For each tile of x rows, the block's panels in order: a decode tile reads each panel front to
// back in one pass.
template <class W>
void PackedBlock(const MatMulArgs& a, const PackedLayout& layout, const std::byte* data,
                 int64_t n0, int64_t n1, int64_t col0) {
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
        kTiles<W>.fn[mr - 1][nr - 1](a.x + m * a.x_stride, a.x_stride, panel + j0 * gb, gb,
                                     rows * gb, a.K, prefetch,
                                     a.bias != nullptr ? a.bias + n : nullptr,
                                     a.out + m * a.out_stride + n, a.out_stride);
      }
    }
  }
}

// Rows [n0, n1) streamed from the row-major weight (decode of a weight not packed at load).
template <class W>
void RowMajorBlock(const MatMulArgs& a, int64_t n0, int64_t n1) {
  const int64_t rs = static_cast<int64_t>(DTypeBytes(a.w_dtype, a.w_stride));
  const int64_t cs = static_cast<int64_t>(PackedGroupBytes(a.w_dtype));
  const auto* w = static_cast<const std::byte*>(a.w);
  const int mr_max = MrMax(a.M);
  for (int64_t m = 0; m < a.M; m += mr_max) {
    const int mr = static_cast<int>(std::min<int64_t>(mr_max, a.M - m));
    const int nr_cap = NrCap(mr);
    for (int64_t n = n0; n < n1; n += nr_cap) {
      const int nr = static_cast<int>(std::min<int64_t>(nr_cap, n1 - n));
      kTiles<W>.fn[mr - 1][nr - 1](a.x + m * a.x_stride, a.x_stride, w + n * rs, rs, cs, a.K,
                                   /*prefetch=*/true, a.bias != nullptr ? a.bias + n : nullptr,
                                   a.out + m * a.out_stride + n, a.out_stride);
    }
  }
}

// NOTE: threads split a decode GEMV (M < kPackMinM) by single panels, not by kBlockN blocks:
// SmolLM-135M's 576-row matrices are 12 blocks, which 8 chunks (4 per thread) cut 1:2:1:2...,
// leaving one thread idle at the end of every such region; 48 panels cut evenly. A prefill keeps
// the 48-row blocks its L2 reuse is built on (only a block can be packed per call).
int64_t SplitRows(const MatMulArgs& a) { return a.M < kPackMinM ? kPanelRows : kBlockN; }

// Units [b0, b1) of SplitRows(a) rows. RowsW reads the dtype row-major, PackW reads it packed.
template <class RowsW, class PackW>
void RunBlocks(const MatMulArgs& a, int64_t b0, int64_t b1) {
  const int64_t rows = SplitRows(a);
  if (a.packed != nullptr) {
    for (int64_t b = b0; b < b1; ++b) {
      PackedBlock<PackW>(a, a.packed->layout, a.packed->data, b * rows,
                         std::min(a.N, (b + 1) * rows), 0);
    }
    return;
  }
  if (a.M < kPackMinM) {
    for (int64_t b = b0; b < b1; ++b) {
      RowMajorBlock<RowsW>(a, b * rows, std::min(a.N, (b + 1) * rows));
    }
    return;
  }
  // A row-major weight in a prefill (an embedding table used as lm_head, callers without
  // LoadWeight): pack each block into a thread_local panel, then read it like a packed weight.
  thread_local std::vector<std::byte> storage;
  const PackedLayout full{a.w_dtype, std::min(a.N, kBlockN), a.K};
  if (storage.size() < full.bytes() + 64) storage.resize(full.bytes() + 64);
  auto* panel = reinterpret_cast<std::byte*>(
      (reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t{63});
  const size_t row_bytes = DTypeBytes(a.w_dtype, a.w_stride);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t n0 = b * kBlockN, n1 = std::min(a.N, n0 + kBlockN);
    const PackedLayout layout{a.w_dtype, n1 - n0, a.K};
    PackRows(layout, static_cast<const std::byte*>(a.w) + n0 * row_bytes, a.w_stride, 0,
             n1 - n0, panel);
    PackedBlock<PackW>(a, layout, panel, 0, n1 - n0, n0);
  }
}

}  // namespace

void MatMulInvariant(const MatMulArgs& a, ThreadPool& pool) {
  if (a.M <= 0 || a.N <= 0) return;
  if (a.w_dtype == DType::kBF16 && a.bf16_activations && Bf16DotAvailable()) {
    MatMulBf16Dot(a, pool);
    return;
  }
  const int64_t unit = SplitRows(a);
  const int64_t blocks = (a.N + unit - 1) / unit;
  // NOTE: below ~256K multiply-adds a second thread costs more in wake-up than it saves.
  const int max_chunks = a.M * a.N * a.K < (1 << 18) ? 1 : 1 << 15;
  pool.ParallelFor(
      blocks,
      [&](int64_t b0, int64_t b1) {
        switch (a.w_dtype) {
          case DType::kF32: RunBlocks<F32W, PackedW<F32W>>(a, b0, b1); break;
          case DType::kF16: RunBlocks<F16W, PackedW<F16W>>(a, b0, b1); break;
          case DType::kBF16: RunBlocks<Bf16RowsW, Bf16PackedW>(a, b0, b1); break;
          case DType::kQ8_0: RunBlocks<Q8W, PackedW<Q8W>>(a, b0, b1); break;
          case DType::kI32: break;  // rejected by the backend before it gets here
        }
      },
      max_chunks);
}

}  // namespace llmux::cpu
