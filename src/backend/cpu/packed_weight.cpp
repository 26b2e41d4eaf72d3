#include "backend/cpu/packed_weight.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "backend/cpu/simd.h"  // also: GCC 12 AVX-512 intrinsic warnings off
#include "llmux/status.h"

namespace llmux::cpu {

size_t PackedGroupBytes(DType dtype) {
  switch (dtype) {
    case DType::kF32: return kGroupElems * 4;
    case DType::kF16:
    case DType::kBF16: return kGroupElems * 2;
    case DType::kQ8_0: return kQ8BlockBytes;
    case DType::kI32: break;
  }
  LLMUX_CHECK(false) << "packed weight: dtype " << DTypeName(dtype) << " is not a weight type";
  return 0;
}

void PackRows(const PackedLayout& layout, const void* src, int64_t src_stride, int64_t n0,
              int64_t n1, std::byte* dst) {
  LLMUX_CHECK(n0 % kPanelRows == 0 && (n1 % kPanelRows == 0 || n1 == layout.n) && n0 <= n1 &&
              n1 <= layout.n)
      << "PackRows: rows [" << n0 << ", " << n1 << ") are not whole panels of " << layout.n;
  const DType dt = layout.dtype;
  const size_t gb = layout.group_bytes();
  const int64_t groups = layout.groups();
  const size_t row_bytes = DTypeBytes(dt, src_stride);
  const auto* s = static_cast<const std::byte*>(src);
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t p = n / kPanelRows, j = n % kPanelRows, rows = layout.PanelRows(p);
    std::byte* panel = dst + layout.PanelOffset(p);
    const std::byte* row = s + static_cast<size_t>(n) * row_bytes;
    for (int64_t g = 0; g < groups; ++g) {
      std::byte* out = panel + static_cast<size_t>(g * rows + j) * gb;
      const int64_t k0 = g * kGroupElems;
      const int64_t count = std::min(kGroupElems, layout.k - k0);
      switch (dt) {
        case DType::kF32:
        case DType::kF16: {
          const size_t es = DTypeSize(dt);
          std::memcpy(out, row + k0 * es, count * es);
          std::memset(out + count * es, 0, (kGroupElems - count) * es);
          break;
        }
        case DType::kBF16: {
          if (count == kGroupElems) {  // word 2i <- element i, word 2i + 1 <- element 16 + i
            const __m512i idx = _mm512_set_epi16(
                31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
                20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
            _mm512_storeu_si512(out,
                                _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(row + 2 * k0)));
            break;
          }
          uint16_t e[kGroupElems] = {};
          std::memcpy(e, row + 2 * k0, 2 * count);
          uint32_t d[kGroupElems / 2];
          for (int i = 0; i < kGroupElems / 2; ++i) {
            d[i] = static_cast<uint32_t>(e[i]) | static_cast<uint32_t>(e[i + 16]) << 16;
          }
          std::memcpy(out, d, sizeof(d));
          break;
        }
        case DType::kQ8_0: {  // rows are whole blocks (dtype.h); scale and int8 apart
          const Q8RowOffsets o = Q8Offsets(rows, j);
          std::byte* group = panel + static_cast<size_t>(g * rows) * gb;
          std::memcpy(group + o.scale, row + g * kQ8BlockBytes, 2);
          std::memcpy(group + o.q, row + g * kQ8BlockBytes + 2, kQ8BlockElems);
          break;
        }
        case DType::kI32: break;  // rejected by PackedGroupBytes
      }
    }
  }
}

void UnpackRowsF32(const PackedWeight& w, int64_t n0, int64_t n1, float* dst) {
  const PackedLayout& l = w.layout;
  const size_t gb = l.group_bytes();
  const int64_t groups = l.groups();
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t p = n / kPanelRows, j = n % kPanelRows, rows = l.PanelRows(p);
    const std::byte* panel = w.data + l.PanelOffset(p);
    float* out = dst + (n - n0) * l.k;
    for (int64_t g = 0; g < groups; ++g) {
      const std::byte* in = panel + static_cast<size_t>(g * rows + j) * gb;
      // The group's elements k0..k0+31 as two exact F32 chunks, converted as the kernels do
      // (vcvtph2ps, bf16 << 16, d * q: the same bits as the row-major Embedding path).
      __m512 lo = _mm512_setzero_ps(), hi = lo;
      switch (l.dtype) {
        case DType::kF32:
          lo = _mm512_loadu_ps(in);
          hi = _mm512_loadu_ps(in + 64);
          break;
        case DType::kF16:
          lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in)));
          hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 32)));
          break;
        case DType::kBF16: {  // dword i = element i (low half), element 16 + i (high half)
          const __m512i v = _mm512_loadu_si512(in);
          lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
          hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536)));
          break;
        }
        case DType::kQ8_0: {  // F16 scale d and 32 int8 q (Q8Offsets): d * q, exact in F32
          const Q8RowOffsets o = Q8Offsets(rows, j);
          const std::byte* group = panel + static_cast<size_t>(g * rows) * gb;
          int16_t d16;
          std::memcpy(&d16, group + o.scale, 2);
          const __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16(d16));
          const auto* q = reinterpret_cast<const __m128i*>(group + o.q);
          lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q))), d);
          hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(q + 1))),
                             d);
          break;
        }
        case DType::kI32: return;  // rejected by PackedGroupBytes
      }
      const int64_t k0 = g * kGroupElems;
      const int64_t count = std::min(kGroupElems, l.k - k0);
      if (count == kGroupElems) {
        _mm512_storeu_ps(out + k0, lo);
        _mm512_storeu_ps(out + k0 + 16, hi);
      } else {  // the padded last group: only the row's elements are written
        const auto mask = [](int64_t c) {
          return c >= 16 ? static_cast<__mmask16>(0xffff)
                         : static_cast<__mmask16>((1u << std::max<int64_t>(c, 0)) - 1u);
        };
        _mm512_mask_storeu_ps(out + k0, mask(count), lo);
        _mm512_mask_storeu_ps(out + k0 + 16, mask(count - 16), hi);
      }
    }
  }
}

}  // namespace llmux::cpu
