#include "backend/cpu/matmul.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/simd.h"

namespace llmux::cpu {
namespace {

// Weight loaders: 16 consecutive elements k..k+15 of one weight row as exact F32. `Stride`
// turns a row stride in elements into one in T units; `Addr` is element k's address.
template <class TT>
struct DenseW {
  using T = TT;
  static constexpr bool kPairs = false;
  static int64_t Stride(int64_t elems) { return elems; }
  static const void* Addr(const T* row, int64_t k) { return row + k; }
};
struct F32W : DenseW<float> {
  static __m512 Load(const T* row, int64_t k) { return Load16(row + k); }
  static __m512 LoadTail(const T* row, int64_t k, __mmask16 m) { return LoadMasked(row + k, m); }
};
struct F16W : DenseW<uint16_t> {
  static __m512 Load(const T* row, int64_t k) { return LoadF16x16(row + k); }
  static __m512 LoadTail(const T* row, int64_t k, __mmask16 m) {
    return LoadF16Masked(row + k, m);
  }
};
struct Bf16W : DenseW<uint16_t> {
  static __m512 Load(const T* row, int64_t k) { return LoadBf16x16(row + k); }
  static __m512 LoadTail(const T* row, int64_t k, __mmask16 m) {
    return LoadBf16Masked(row + k, m);
  }
};
// Q8_0 rows (dtype.h): element k is q[k % 32] of block k / 32. Its 16-element chunks never
// straddle a block (k is a multiple of 16), and d * q is exact in F32, so a Q8_0 weight gives
// the same bits as the F32 matrix DequantizeRowQ8_0 makes of it.
struct Q8W {
  using T = uint8_t;
  // Tile reads a whole block (two 16-element chunks) per step: one scale broadcast per block.
  static constexpr bool kPairs = true;
  static void LoadBlock(const T* row, int64_t k, __m512& lo, __m512& hi) {
    const T* blk = row + (k >> 5) * static_cast<int64_t>(kQ8BlockBytes);
    const __m512 d = Q8Scale(blk);
    const auto* q = reinterpret_cast<const __m128i*>(blk + 2);
    lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))), d);
    hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1))), d);
  }
  static int64_t Stride(int64_t elems) {
    return elems / kQ8BlockElems * static_cast<int64_t>(kQ8BlockBytes);
  }
  static const void* Addr(const T* row, int64_t k) {
    return row + (k >> 5) * static_cast<int64_t>(kQ8BlockBytes) + 2 + (k & 31);
  }
  static __m512 Load(const T* row, int64_t k) { return LoadQ8x16(row, k); }
  static __m512 LoadTail(const T* row, int64_t k, __mmask16 m) {
    const T* blk = row + (k >> 5) * static_cast<int64_t>(kQ8BlockBytes);
    __m512i q = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, blk + 2 + (k & 31)));
    return _mm512_maskz_mul_ps(m, _mm512_cvtepi32_ps(q), Q8Scale(blk));
  }
};

// NOTE: prefetch distance for streamed (unpacked) weight rows, in elements. Decode GEMV is bound
// by memory bandwidth; the hardware prefetcher alone does not keep 6-8 row streams full.
constexpr int64_t kPrefetchElems = 256;

// out[i, j] for i < MR, j < NR: x rows x + i * xs, weight rows w + j * ws.
template <int MR, int NR, class W, bool kPrefetch>
void Tile(const float* x, int64_t xs, const typename W::T* w, int64_t ws, int64_t K,
          const float* bias, float* out, int64_t os) {
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  if constexpr (W::kPairs && MR <= 2) {
    // Same FMA sequence per accumulator as the loop below (chunk k, then k + 16); only the
    // weight decode is shared. MR <= 2 keeps x, weights and accumulators in 32 registers.
    for (; k + 32 <= K && k % 32 == 0; k += 32) {
      __m512 xlo[MR], xhi[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        xlo[i] = Load16(x + i * xs + k);
        xhi[i] = Load16(x + i * xs + k + 16);
      }
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        if constexpr (kPrefetch) {
          _mm_prefetch(static_cast<const char*>(W::Addr(w + j * ws, k + kPrefetchElems)),
                       _MM_HINT_T0);
        }
        __m512 lo, hi;
        W::LoadBlock(w + j * ws, k, lo, hi);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          acc[i][j] = _mm512_fmadd_ps(xlo[i], lo, acc[i][j]);
          acc[i][j] = _mm512_fmadd_ps(xhi[i], hi, acc[i][j]);
        }
      }
    }
  }
  for (; k + 16 <= K; k += 16) {
    __m512 xv[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = Load16(x + i * xs + k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      if constexpr (kPrefetch) {
        _mm_prefetch(static_cast<const char*>(W::Addr(w + j * ws, k + kPrefetchElems)),
                     _MM_HINT_T0);
      }
      __m512 wv = W::Load(w + j * ws, k);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  if (k < K) {
    __mmask16 m = TailMask(K - k);
    __m512 xv[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xv[i] = LoadMasked(x + i * xs + k, m);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      __m512 wv = W::LoadTail(w + j * ws, k, m);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      float v = Hsum(acc[i][j]);
      out[i * os + j] = bias != nullptr ? v + bias[j] : v;
    }
  }
}

template <class W, bool kPrefetch>
using TileFn = void (*)(const float*, int64_t, const typename W::T*, int64_t, int64_t,
                        const float*, float*, int64_t);

constexpr int kMaxMr = 4;
constexpr int kMaxNr = 8;

// Table of Tile instantiations indexed [mr - 1][nr - 1].
template <class W, bool kPrefetch>
struct TileTable {
  TileFn<W, kPrefetch> fn[kMaxMr][kMaxNr];
  template <int MR, int NR>
  constexpr void Fill() {
    fn[MR - 1][NR - 1] = &Tile<MR, NR, W, kPrefetch>;
    if constexpr (NR < kMaxNr) {
      Fill<MR, NR + 1>();
    } else if constexpr (MR < kMaxMr) {
      Fill<MR + 1, 1>();
    }
  }
  constexpr TileTable() : fn{} { Fill<1, 1>(); }
};

template <class W, bool kPrefetch>
constexpr TileTable<W, kPrefetch> kTiles{};

// Rows of w per block: the unit threads split N into, and the packed panel height.
constexpr int64_t kBlockN = 48;
// Packing into an F32 panel pays off once the panel is reused by more than one m tile.
constexpr int64_t kPackMinM = 5;

// Computes rows [m0, m1) x columns [n0, n1) from weight rows `w` (row n0 at w, stride ws).
template <class W, bool kPrefetch>
void Block(const MatMulArgs& a, const typename W::T* w, int64_t ws, int64_t n0, int64_t n1) {
  const int mr_max = a.M == 1 ? 1 : kMaxMr;
  const int nr_max = a.M <= 2 ? 8 : 6;  // 24 accumulators at most, 4 x rows + 1 weight in regs
  for (int64_t m = 0; m < a.M; m += mr_max) {
    int mr = static_cast<int>(std::min<int64_t>(mr_max, a.M - m));
    for (int64_t n = n0; n < n1; n += nr_max) {
      int nr = static_cast<int>(std::min<int64_t>(nr_max, n1 - n));
      kTiles<W, kPrefetch>.fn[mr - 1][nr - 1](a.x + m * a.x_stride, a.x_stride,
                                                w + (n - n0) * ws, ws, a.K,
                                                a.bias != nullptr ? a.bias + n : nullptr,
                                                a.out + m * a.out_stride + n, a.out_stride);
    }
  }
}

// Converts rows [n0, n1) of the weight into `panel` ([n1 - n0, kpad] F32, zero padded).
template <class W>
void Pack(const MatMulArgs& a, int64_t n0, int64_t n1, int64_t kpad, float* panel) {
  const auto* w = static_cast<const typename W::T*>(a.w);
  const int64_t ws = W::Stride(a.w_stride);
  for (int64_t n = n0; n < n1; ++n) {
    const typename W::T* src = w + n * ws;
    float* dst = panel + (n - n0) * kpad;
    int64_t k = 0;
    for (; k + 16 <= a.K; k += 16) _mm512_storeu_ps(dst + k, W::Load(src, k));
    for (; k < kpad; k += 16) {
      __mmask16 m = k < a.K ? TailMask(a.K - k) : 0;
      _mm512_storeu_ps(dst + k, m != 0 ? W::LoadTail(src, k, m) : _mm512_setzero_ps());
    }
  }
}

template <class W>
void RunBlocks(const MatMulArgs& a, int64_t b0, int64_t b1) {
  const auto* w = static_cast<const typename W::T*>(a.w);
  if (a.M < kPackMinM) {
    // Decode: stream the weight straight from (mapped) memory, converting on the fly.
    const int64_t ws = W::Stride(a.w_stride);
    for (int64_t b = b0; b < b1; ++b) {
      int64_t n0 = b * kBlockN, n1 = std::min(a.N, n0 + kBlockN);
      Block<W, true>(a, w + n0 * ws, ws, n0, n1);
    }
    return;
  }
  // Prefill: copy/convert each block once into an aligned F32 panel reused by every m tile.
  // NOTE: F32 is packed too: a mapped weight may sit at any byte offset, and loads that split
  // cache lines cost ~30% of GEMM throughput. The panel is thread_local and grows once.
  thread_local std::vector<float> storage;
  const int64_t kpad = (a.K + 15) / 16 * 16;
  if (storage.size() < static_cast<size_t>(kBlockN * kpad + 16)) storage.resize(kBlockN * kpad + 16);
  float* panel = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(storage.data()) + 63) &
                                          ~uintptr_t{63});
  for (int64_t b = b0; b < b1; ++b) {
    int64_t n0 = b * kBlockN, n1 = std::min(a.N, n0 + kBlockN);
    Pack<W>(a, n0, n1, kpad, panel);
    Block<F32W, false>(a, panel, kpad, n0, n1);
  }
}

}  // namespace

void MatMulInvariant(const MatMulArgs& a, ThreadPool& pool) {
  if (a.M <= 0 || a.N <= 0) return;
  const int64_t blocks = (a.N + kBlockN - 1) / kBlockN;
  // NOTE: below ~256K multiply-adds a second thread costs more in wake-up than it saves.
  const int max_chunks = a.M * a.N * a.K < (1 << 18) ? 1 : 1 << 15;
  pool.ParallelFor(
      blocks,
      [&](int64_t b0, int64_t b1) {
        switch (a.w_dtype) {
          case DType::kF32: RunBlocks<F32W>(a, b0, b1); break;
          case DType::kF16: RunBlocks<F16W>(a, b0, b1); break;
          case DType::kBF16: RunBlocks<Bf16W>(a, b0, b1); break;
          case DType::kQ8_0: RunBlocks<Q8W>(a, b0, b1); break;
          case DType::kI32: break;  // rejected by the backend before it gets here
        }
      },
      max_chunks);
}

}  // namespace llmux::cpu
