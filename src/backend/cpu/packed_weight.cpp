#include "backend/cpu/packed_weight.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

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
        case DType::kQ8_0:  // rows are whole blocks (dtype.h)
          std::memcpy(out, row + g * kQ8BlockBytes, kQ8BlockBytes);
          break;
        case DType::kI32: break;  // rejected by PackedGroupBytes
      }
    }
  }
}

void UnpackRowsF32(const PackedWeight& w, int64_t n0, int64_t n1, float* dst) {
  const PackedLayout& l = w.layout;
  const size_t gb = l.group_bytes();
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t p = n / kPanelRows, j = n % kPanelRows, rows = l.PanelRows(p);
    const std::byte* panel = w.data + l.PanelOffset(p);
    float* out = dst + (n - n0) * l.k;
    for (int64_t g = 0; g < l.groups(); ++g) {
      const std::byte* in = panel + static_cast<size_t>(g * rows + j) * gb;
      float v[kGroupElems];
      switch (l.dtype) {
        case DType::kF32: std::memcpy(v, in, sizeof(v)); break;
        case DType::kF16:
        case DType::kBF16: {
          uint16_t e[kGroupElems];
          std::memcpy(e, in, sizeof(e));
          for (int i = 0; i < kGroupElems; ++i) {
            if (l.dtype == DType::kF16) {
              v[i] = HalfToFloat(e[i]);
            } else {  // dword i = element i (low half), element 16 + i (high half)
              v[i] = Bf16ToFloat(e[i < 16 ? 2 * i : 2 * (i - 16) + 1]);
            }
          }
          break;
        }
        case DType::kQ8_0: DequantizeRowQ8_0(in, kGroupElems, v); break;
        case DType::kI32: break;
      }
      const int64_t k0 = g * kGroupElems;
      std::memcpy(out + k0, v, sizeof(float) * std::min(kGroupElems, l.k - k0));
    }
  }
}

}  // namespace llmux::cpu
