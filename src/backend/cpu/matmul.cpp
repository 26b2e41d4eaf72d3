#include "backend/cpu/matmul.h"

#include <type_traits>

#include "backend/cpu/matmul_bf16.h"
#include "backend/cpu/matmul_driver.h"
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
// Packed F32/F16 read exactly like their row-major forms; only kPacked differs.
template <class W>
struct PackedW : W {
  static constexpr bool kPacked = true;
};

// Packed Q8_0 (packed_weight.h: per half of a panel group, the scales side by side, then the
// int8), read a tile's rows of one group together (Q8PackedGroup<NR>): the tile's rows start at
// row 0 or kQ8HalfRows of a panel, so its first half holds min(NR, kQ8HalfRows) rows and its
// second the rest. Each half's F16 scales become F32 with one vcvtph2ps at construction (once
// per group, not per row); a row then reads its scale with a broadcast load and computes d * q
// exactly as Q8W does (same bits).
struct Q8PackedW {
  static constexpr bool kPacked = true;
};
template <int NR>
class Q8PackedGroup {
 public:
  explicit Q8PackedGroup(const std::byte* wg) : wg_(wg) {
    _mm256_store_ps(d_[0], HalfScales<kFirst>(wg));
    if constexpr (NR > kFirst) {
      _mm256_store_ps(d_[1], HalfScales<NR - kFirst>(wg + kFirst * kQ8BlockBytes));
    }
  }
  void Load2(int j, __m512& lo, __m512& hi) const {
    const __m512 d = Scale(j);
    lo = Half(j, 0, d);
    hi = Half(j, 1, d);
  }
  __m512 Load(int j, int h) const { return Half(j, h, Scale(j)); }

 private:
  static constexpr int kFirst = NR < kQ8HalfRows ? NR : static_cast<int>(kQ8HalfRows);

  // The F16 scales of a half of `rows` rows at `half`, as F32 (lanes >= rows are 0).
  template <int rows>
  static __m256 HalfScales(const std::byte* half) {
    return _mm256_cvtph_ps(_mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << rows) - 1u), half));
  }
  // NOTE: the scale of row j is broadcast from memory (a load, no vector ALU op); a register
  // broadcast (vpermps) would compete with the int8 widening for the shuffle pipes.
  __m512 Scale(int j) const {
    const float* p = j < kFirst ? &d_[0][j] : &d_[1][j - kFirst];
    __m512 v;
    asm("vbroadcastss %1, %0" : "=v"(v) : "m"(*p));
    return v;
  }
  __m512 Half(int j, int h, __m512 d) const {
    const Q8RowOffsets o = Q8Offsets(NR, j);
    const auto* q = reinterpret_cast<const __m128i*>(wg_ + o.q) + h;
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))), d);
  }

  const std::byte* wg_;
  alignas(32) float d_[2][8];  // [half][row in half]: the F32 scales
};

// Readers that decode a tile's rows of a group together (a state built once per group). The
// others keep their per-row calls, W::Load2(wg + j * rs, ...), in the tile.
// NOTE: kept apart (if constexpr in the tile, not a common row view) because GCC 12 compiled the
// F16/BF16 GEMV tiles differently once every reader went through a per-group object.
template <class W>
inline constexpr bool kWholeGroup = false;
template <>
inline constexpr bool kWholeGroup<Q8PackedW> = true;
struct NoGroup {
  explicit NoGroup(const std::byte*) {}
};
template <class W, int NR>
using GroupOf = std::conditional_t<kWholeGroup<W>, Q8PackedGroup<NR>, NoGroup>;

using matmul_driver::InRegister;

// The tile family of exact F32 activations times weights W widens to F32 (matmul_driver.h).
// Tile: out[i, j] = Dot(x row i, weight row j) (+ bias[j]) for i < MR, j < NR. x rows at
// x + i * xs; group g of weight row j at w + j * rs + g * cs (bytes). Per output: FMA over the
// 16-element chunks in k order, the last partial chunk masked, then Hsum: the Dot order
// (simd.h).
template <class W>
struct WidenTiles {
  using X = float;
  template <int MR, int NR>
  static void Tile(const float* x, int64_t xs, const std::byte* w, int64_t rs, int64_t cs,
                   int64_t K, bool prefetch, const float* bias, float* out, int64_t os) {
    __m512 acc[MR][NR];
    matmul_driver::ZeroTile(acc);
    const int64_t full = K / kGroupElems;
    for (int64_t g = 0; g < full; ++g) {
      const std::byte* wg = w + g * cs;
      const float* xg = x + g * kGroupElems;
      if (prefetch) matmul_driver::PrefetchGroup<NR, W::kPacked>(wg, rs, cs);
      // Every other reader decodes a row's group on its own, from wg + j * rs.
      [[maybe_unused]] const GroupOf<W, NR> group(wg);
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
          if constexpr (kWholeGroup<W>) {
            group.Load2(j, lo, hi);
          } else {
            W::Load2(wg + j * rs, lo, hi);
          }
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
            __m512 wv;
            if constexpr (kWholeGroup<W>) {
              wv = group.Load(j, h);
            } else {
              wv = W::Load(wg + j * rs, h);
            }
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
        __m512 wv;
        if constexpr (kWholeGroup<W>) {
          wv = _mm512_setzero_ps();  // never: Q8_0 rows are whole blocks (no K tail)
        } else {
          wv = W::LoadMasked(wg + j * rs, h, m);
        }
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
      }
    }
    matmul_driver::StoreTile<MR, NR>(acc, bias, out, os);
  }
};

// The row-major reader of a dtype and its packed reader, as the driver's two families.
template <class RowsW, class PackW>
void Run(const MatMulArgs& a, ThreadPool& pool) {
  matmul_driver::Run<WidenTiles<RowsW>, WidenTiles<PackW>>(a, a.x, a.x_stride, pool);
}

}  // namespace

void MatMulInvariant(const MatMulArgs& a, ThreadPool& pool) {
  if (a.M <= 0 || a.N <= 0) return;
  if (a.w_dtype == DType::kBF16 && a.bf16_activations && Bf16DotAvailable()) {
    MatMulBf16Dot(a, pool);
    return;
  }
  switch (a.w_dtype) {
    case DType::kF32: Run<F32W, PackedW<F32W>>(a, pool); break;
    case DType::kF16: Run<F16W, PackedW<F16W>>(a, pool); break;
    case DType::kBF16: Run<Bf16RowsW, Bf16PackedW>(a, pool); break;
    case DType::kQ8_0: Run<Q8W, Q8PackedW>(a, pool); break;
    case DType::kI32: break;  // rejected by the backend before it gets here
  }
}

}  // namespace llmux::cpu
