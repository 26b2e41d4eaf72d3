// The MatMul driver shared by every tile family of the CPU backend: tile shapes, the table of
// tile instantiations, the N blocks threads split, and the three ways a block's weight is read
// (prepacked panels, row-major rows, row-major packed on the fly).
//
// A tile family is what one kernel file contributes (matmul.cpp: exact F32 activations times
// widened F32/F16/BF16/Q8_0 weights; matmul_bf16.cpp: bf16 activations times BF16 weights with
// vdpbf16ps). It is a struct with
//   using X = <activation element type the tiles read>;   // float, or uint32_t bf16 pairs
//   template <int MR, int NR>
//   static void Tile(const X* x, int64_t xs, const std::byte* w, int64_t rs, int64_t cs,
//                    int64_t K, bool prefetch, const float* bias, float* out, int64_t os);
// Tile computes out[i, j] (+ bias[j]) for the i < MR x rows at x + i * xs and the j < NR weight
// rows whose group g lies at w + j * rs + g * cs (bytes), each output in its family's fixed
// order. The driver only decides which outputs a tile computes together and which thread does
// it, never the order inside one output: that is what keeps every family batch invariant.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/packed_weight.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/thread_pool.h"
#include "llmux/dtype.h"

namespace llmux::cpu::matmul_driver {

// Tile shapes: up to 2 x rows by a whole panel (decode), or up to 4 x rows by half a panel
// (prefill): at most 24 accumulators + MR x + 1 weight register of the 32.
inline constexpr int kMaxMr = 4;
inline constexpr int kWideMr = 2;
inline constexpr int kMaxNr = static_cast<int>(kPanelRows);
inline constexpr int kNarrowNr = kMaxNr / 2;
constexpr int NrCap(int mr) { return mr <= kWideMr ? kMaxNr : kNarrowNr; }
// A decode of one row uses 1-row tiles over whole panels; everything else the largest tiles.
inline int MrMax(int64_t M) { return M == 1 ? 1 : kMaxMr; }

// Rows of w per block: the unit threads split a prefill's N into (whole panels).
inline constexpr int64_t kBlockN = 4 * kPanelRows;
static_assert(kBlockN % kPanelRows == 0);
// Below this M a row-major weight is streamed as is; from it on each block is packed first
// (the packed panel is reused by every m tile). Prefetching is for decode (M below it) only.
inline constexpr int64_t kPackMinM = kGemvMaxRows + 1;

// NOTE: prefetch distances for decode, whose GEMV is bound by memory bandwidth: a packed panel
// is one contiguous stream (kPrefetchBytes ahead of the group being read), row-major rows are
// NR streams (kPrefetchGroups groups ahead in each row).
inline constexpr int64_t kPrefetchBytes = 2048;
inline constexpr int64_t kPrefetchGroups = 8;

// NOTE: an empty asm that claims to change v (__m512 or __m512i): the compiler must keep v in a
// register from here on. Without it GCC 12 folds the x (or F32 weight) loads into every FMA or
// vdpbf16ps (MR * NR loads per chunk instead of MR + NR), which makes the prefill tile
// load-bound (docs/performance.md).
template <class V>
inline void InRegister(V& v) {
  asm("" : "+v"(v));
}

// Decode prefetch of a tile's NR weight rows at group wg: for a packed panel the tile's rows of
// the group are NR * rs contiguous bytes of the stream; row-major rows are NR streams.
template <int NR, bool kPacked>
inline void PrefetchGroup(const std::byte* wg, int64_t rs, int64_t cs) {
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

// A tile's start: every accumulator +0.
template <int MR, int NR>
inline void ZeroTile(__m512 (&acc)[MR][NR]) {
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
}

// A tile's end: out[i * os + j] = Hsum(acc[i][j]) (+ bias[j]) for i < MR, j < NR, four
// accumulators at a time (Hsum4: the same bits as Hsum).
template <int MR, int NR>
inline void StoreTile(const __m512 (&acc)[MR][NR], const float* bias, float* out, int64_t os) {
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

// NOTE: threads split a decode GEMV (M < kPackMinM) by single panels, not by kBlockN blocks:
// the pool balances a job by units taken from the back of a share (thread_pool.h), and
// SmolLM-135M's 576-row matrices are only 12 blocks, so the thread that finishes first would
// wait up to a whole block; 48 panels balance to one panel. A prefill keeps the 48-row blocks
// its L2 reuse is built on (only a block can be packed per call).
inline int64_t SplitRows(const MatMulArgs& a) {
  return a.M < kPackMinM ? kPanelRows : kBlockN;
}

// NOTE: below ~256K multiply-adds a second thread costs more in wake-up than it saves.
inline int MaxUnits(const MatMulArgs& a) { return a.M * a.N * a.K < (1 << 18) ? 1 : 1 << 15; }

// Table of Family::Tile instantiations indexed [mr - 1][nr - 1] (nr <= NrCap(mr)).
template <class Family>
struct TileTable {
  using Fn = void (*)(const typename Family::X*, int64_t, const std::byte*, int64_t, int64_t,
                      int64_t, bool, const float*, float*, int64_t);
  Fn fn[kMaxMr][kMaxNr];
  template <int MR, int NR>
  constexpr void Fill() {
    fn[MR - 1][NR - 1] = &Family::template Tile<MR, NR>;
    if constexpr (NR < NrCap(MR)) {
      Fill<MR, NR + 1>();
    } else if constexpr (MR < kMaxMr) {
      Fill<MR + 1, 1>();
    }
  }
  constexpr TileTable() : fn{} { Fill<1, 1>(); }
};
template <class Family>
inline constexpr TileTable<Family> kTiles{};

// Rows [n0, n1) (whole panels of `layout`, n0 a multiple of kPanelRows) from packed `data`,
// written to output columns col0 + n. x rows at x + m * xs. For each tile of x rows, the
// block's panels in order: a decode tile reads each panel front to back in one pass.
template <class Family>
void PackedBlock(const MatMulArgs& a, const typename Family::X* x, int64_t xs,
                 const PackedLayout& layout, const std::byte* data, int64_t n0, int64_t n1,
                 int64_t col0) {
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
        kTiles<Family>.fn[mr - 1][nr - 1](x + m * xs, xs, panel + j0 * gb, gb, rows * gb, a.K,
                                          prefetch, a.bias != nullptr ? a.bias + n : nullptr,
                                          a.out + m * a.out_stride + n, a.out_stride);
      }
    }
  }
}

// Rows [n0, n1) streamed from the row-major weight (decode of a weight not packed at load).
template <class Family>
void RowMajorBlock(const MatMulArgs& a, const typename Family::X* x, int64_t xs, int64_t n0,
                   int64_t n1) {
  const int64_t rs = static_cast<int64_t>(DTypeBytes(a.w_dtype, a.w_stride));
  const int64_t cs = static_cast<int64_t>(PackedGroupBytes(a.w_dtype));
  const auto* w = static_cast<const std::byte*>(a.w);
  const int mr_max = MrMax(a.M);
  for (int64_t m = 0; m < a.M; m += mr_max) {
    const int mr = static_cast<int>(std::min<int64_t>(mr_max, a.M - m));
    const int nr_cap = NrCap(mr);
    for (int64_t n = n0; n < n1; n += nr_cap) {
      const int nr = static_cast<int>(std::min<int64_t>(nr_cap, n1 - n));
      kTiles<Family>.fn[mr - 1][nr - 1](x + m * xs, xs, w + n * rs, rs, cs, a.K,
                                        /*prefetch=*/true,
                                        a.bias != nullptr ? a.bias + n : nullptr,
                                        a.out + m * a.out_stride + n, a.out_stride);
    }
  }
}

// Units [b0, b1) of SplitRows(a) weight rows. RowsFamily reads the weight row-major,
// PackFamily reads packed panels (both with the same X). x rows at x + m * xs.
template <class RowsFamily, class PackFamily>
void RunBlocks(const MatMulArgs& a, const typename PackFamily::X* x, int64_t xs, int64_t b0,
               int64_t b1) {
  static_assert(std::is_same_v<typename RowsFamily::X, typename PackFamily::X>);
  const int64_t rows = SplitRows(a);
  if (a.packed != nullptr) {
    for (int64_t b = b0; b < b1; ++b) {
      PackedBlock<PackFamily>(a, x, xs, a.packed->layout, a.packed->data, b * rows,
                              std::min(a.N, (b + 1) * rows), 0);
    }
    return;
  }
  if (a.M < kPackMinM) {
    for (int64_t b = b0; b < b1; ++b) {
      RowMajorBlock<RowsFamily>(a, x, xs, b * rows, std::min(a.N, (b + 1) * rows));
    }
    return;
  }
  // A row-major weight in a prefill (an embedding table used as lm_head, callers without
  // LoadWeight): pack each block into a thread_local 64-byte aligned panel, then read it like
  // a packed weight.
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
    PackedBlock<PackFamily>(a, x, xs, layout, panel, 0, n1 - n0, n0);
  }
}

// out = x w^T (+ bias) with the two families: threads split N into units of SplitRows(a).
template <class RowsFamily, class PackFamily>
void Run(const MatMulArgs& a, const typename PackFamily::X* x, int64_t xs, ThreadPool& pool) {
  const int64_t unit = SplitRows(a);
  const int64_t blocks = (a.N + unit - 1) / unit;
  pool.ParallelFor(
      blocks,
      [&](int64_t b0, int64_t b1) { RunBlocks<RowsFamily, PackFamily>(a, x, xs, b0, b1); },
      MaxUnits(a));
}

}  // namespace llmux::cpu::matmul_driver
