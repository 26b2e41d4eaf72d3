// Weight matrices prepacked once at load into the layout MatMul's kernels read (matmul.cpp).
//
// A [N, K] weight is cut into panels of kPanelRows consecutive rows (the last panel may be
// shorter) and K into groups of 32 elements (K padded with zeros to a whole group). Panel p
// holds, group after group, the group's slice of each of its rows:
//
//   panel p (rows r0 = p * kPanelRows .. r0 + rows - 1), one contiguous stream:
//     [group 0: row r0 | row r0+1 | ... ][group 1: row r0 | row r0+1 | ... ] ...
//
// so decode's GEMV reads each panel front to back (one stream, what the prefetcher wants) and
// prefill's register tiles find the 6-12 weight rows of one k step side by side.
//
// Elements stay in the weight's own dtype (no F32 blow-up of 16-bit weights):
//   F32   128 bytes per row and group: elements k..k+31 in order.
//   F16    64 bytes: elements k..k+31 in order.
//   BF16   64 bytes: 16 dwords, dword i = element k+i in its low half, element k+16+i in its
//          high half, so `dword << 16` is chunk k..k+15 as exact F32 and `dword & 0xffff0000`
//          is chunk k+16..k+31: one integer op per 16 weights, no shuffle.
//   Q8_0   34 bytes: the row's Q8_0 block (F16 scale + 32 int8), its scale moved next to the
//          scales of its neighbours. A panel's group is cut into halves of up to kQ8HalfRows
//          rows (rows 0..5 and 6..11); a half of h rows is h * 34 bytes: the h F16 scales
//          (2 bytes each, row order), then the h rows' 32 int8 each (row order). So the tile
//          of a decode (12 rows) or a prefill (6 rows, starting at row 0 or 6) converts its
//          scales with one instruction per half instead of one per row (Q8RowOffsets).
// Every element converts to the same F32 value as in the row-major weight, so a kernel that
// keeps the per-output FMA order gives the same bits from either layout (matmul.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "llmux/dtype.h"

namespace llmux::cpu {

// Rows per panel. Decode tiles span a whole panel (1-2 x rows by 12 weight rows); prefill tiles
// take half of one (4 x rows by 6 weight rows).
inline constexpr int64_t kPanelRows = 12;
// Elements per group (a Q8_0 block).
inline constexpr int64_t kGroupElems = 32;

// Bytes of one row's group in `dtype` (F32 128, F16/BF16 64, Q8_0 34).
size_t PackedGroupBytes(DType dtype);

// Q8_0 panels: rows per half of a group (see above).
inline constexpr int64_t kQ8HalfRows = kPanelRows / 2;

// Where row j (0 <= j < rows) of a Q8_0 panel of `rows` rows keeps its scale and its 32 int8 of
// one group, in bytes from the start of that group's slice of the panel.
struct Q8RowOffsets {
  int64_t scale = 0;
  int64_t q = 0;
};
constexpr Q8RowOffsets Q8Offsets(int64_t rows, int64_t j) {
  const int64_t half = j < kQ8HalfRows ? 0 : kQ8HalfRows;
  const int64_t in_half = (rows - half) < kQ8HalfRows ? rows - half : kQ8HalfRows;
  const int64_t base = half * static_cast<int64_t>(kQ8BlockBytes);
  return {base + 2 * (j - half), base + 2 * in_half + 32 * (j - half)};
}

// Shape of a packed [n, k] weight.
struct PackedLayout {
  DType dtype = DType::kF32;
  int64_t n = 0;
  int64_t k = 0;

  int64_t groups() const { return (k + kGroupElems - 1) / kGroupElems; }
  size_t group_bytes() const { return PackedGroupBytes(dtype); }
  // Rows in panel p.
  int64_t PanelRows(int64_t p) const {
    const int64_t r = n - p * kPanelRows;
    return r < kPanelRows ? r : kPanelRows;
  }
  // Byte offset of panel p (every panel before it is full).
  size_t PanelOffset(int64_t p) const {
    return static_cast<size_t>(p * kPanelRows * groups()) * group_bytes();
  }
  // Total bytes: n rows of groups() groups each. Equal to the row-major size when k is a
  // multiple of 32 (F32/F16/BF16 rows are padded to whole groups otherwise).
  size_t bytes() const { return static_cast<size_t>(n * groups()) * group_bytes(); }
};

// A weight in the packed layout, owned by the backend that made it.
struct PackedWeight {
  PackedLayout layout;
  const std::byte* data = nullptr;  // layout.bytes(), 64-byte aligned
};

// Packs rows [n0, n1) of the row-major weight `src` ([layout.n, layout.k] in layout.dtype, row
// stride `src_stride` elements, any alignment) into their panels at `dst` (layout.bytes()).
// n0 must be a multiple of kPanelRows and n1 either one or layout.n, so that whole panels are
// written; padding elements are written as zeros. Rows of different calls never overlap, so
// threads may pack disjoint panel ranges at once.
void PackRows(const PackedLayout& layout, const void* src, int64_t src_stride, int64_t n0,
              int64_t n1, std::byte* dst);

// Rows [n0, n1) of a packed weight as exact F32, row-major [n1 - n0, layout.k] at dst: the
// Embedding op's row gather from a packed table, the OpenBLAS path, tests. Each element gets
// the bits the kernels widen it to (vcvtph2ps, bf16 << 16, d * q).
void UnpackRowsF32(const PackedWeight& w, int64_t n0, int64_t n1, float* dst);

}  // namespace llmux::cpu
