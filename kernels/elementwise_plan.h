// Launch shapes of the row-wise kernels (norms, SiLU-mul, row copies), chosen on the host.
// Plain C++ (no CUDA types): the launchers call these, and tests/unit/backend/cuda checks
// them without a device.
//
// NOTE: numerics. A copy or an elementwise op computes each value alone, so its access width
// never changes a result. A norm reduces a row: its reduction layout (`NormPlan`: elements per
// logical vector, threads per row) is a function of the row length only, never of the batch
// or of the tensors' alignment, so a row's bits are the same in any batch, in place or not;
// alignment only decides whether a logical vector is read with one 16-byte load or element by
// element (the same values in the same order).
#pragma once

#include <cstdint>
#include <initializer_list>

namespace llmux::kernels {

// Bytes one thread moves per access of a row-wise copy or elementwise kernel: the largest of
// 16, 8, 4 and `elem_bytes` that divides every base address, every row stride in bytes and
// the row length in bytes (so every access of every row is aligned and whole).
inline int AccessBytes(std::initializer_list<uintptr_t> addresses,
                       std::initializer_list<int64_t> stride_bytes, int64_t row_bytes,
                       int elem_bytes) {
  for (int w = 16; w > elem_bytes; w /= 2) {
    bool ok = row_bytes % w == 0;
    for (uintptr_t a : addresses) ok = ok && a % static_cast<uintptr_t>(w) == 0;
    for (int64_t s : stride_bytes) ok = ok && s % w == 0;
    if (ok) return w;
  }
  return elem_bytes;
}

// Values of a row one thread of a norm kernel keeps in registers: 32 in 8-element vectors,
// 16 element by element (more spills under the 64-register cap of a 1024-thread block).
constexpr int NormValuesPerThread(int vec) { return vec == 8 ? 32 : 16; }

// Rows a norm kernel takes: 1024 threads of NormValuesPerThread values, so up to 32768
// values when cols % 8 == 0 (every model width) and 16384 otherwise.
inline bool NormColsSupported(int cols) {
  return cols > 0 && cols <= 1024 * NormValuesPerThread(cols % 8 == 0 ? 8 : 1);
}

// How RmsNorm / AddRmsNorm split a row of `cols` bf16 values. Thread t of a row holds the
// logical vectors t, t + threads, t + 2 * threads, ... (vec consecutive elements each), reads
// them once into registers, adds its squares in that order (fmaf), and the row's threads then
// reduce with a fixed butterfly (docs/cuda_backend.md).
struct NormPlan {
  int vec = 1;                 // elements per logical vector: 8 when cols % 8 == 0, else 1
  int vectors = 0;             // cols / vec
  int threads = 32;            // threads per row, a multiple of 32, at most 1024
  int vectors_per_thread = 0;  // ceil(vectors / threads) <= NormValuesPerThread(vec) / vec
  int rows_per_block = 1;      // 4 when a row is one warp (a warp per row), else 1
};

// Fewest threads (in whole warps) that keep the row in registers: a warp per row up to
// 1024 values (512 for odd widths; SmolLM's 576: 72 vectors of 8, 3 per lane), 128 threads for
// 4096, 256 for 8192. Requires NormColsSupported(cols).
inline NormPlan PlanNorm(int cols) {
  NormPlan p;
  p.vec = cols % 8 == 0 ? 8 : 1;
  p.vectors = cols / p.vec;
  const int per_thread_max = NormValuesPerThread(p.vec) / p.vec;
  const int min_threads = (p.vectors + per_thread_max - 1) / per_thread_max;
  p.threads = (min_threads + 31) / 32 * 32;
  p.vectors_per_thread = (p.vectors + p.threads - 1) / p.threads;
  p.rows_per_block = p.threads == 32 ? 4 : 1;
  return p;
}

// Blocks of a norm launch over `rows` rows.
inline int NormBlocks(const NormPlan& p, int rows) {
  return (rows + p.rows_per_block - 1) / p.rows_per_block;
}

// Whether a norm's logical vectors can be read and written with 16-byte accesses: 8-element
// vectors, and every bf16 tensor's base address and row stride (in elements) as well as the
// f32 weight's address 16-byte aligned.
inline bool NormVectorized(const NormPlan& p, std::initializer_list<uintptr_t> bf16_addresses,
                           std::initializer_list<int64_t> bf16_strides, uintptr_t weight) {
  if (p.vec != 8 || weight % 16 != 0) return false;
  for (uintptr_t a : bf16_addresses) {
    if (a % 16 != 0) return false;
  }
  for (int64_t s : bf16_strides) {
    if (s % 8 != 0) return false;
  }
  return true;
}

// RoPE (rope.cu): the widest head_dim it takes (its cos/sin live in shared memory), and the
// bytes per access: kN = bytes / 2 consecutive pairs of a head move with one access per half,
// so q's and k's base addresses and row strides and the half head (head_dim / 2 values, which
// also places every head and its second half) must all be multiples of it.
inline constexpr int kRopeMaxHeadDim = 256;
inline int RopeAccessBytes(uintptr_t q, int64_t q_stride, uintptr_t k, int64_t k_stride,
                           int head_dim) {
  return AccessBytes({q, k}, {q_stride * 2, k_stride * 2}, int64_t{head_dim / 2} * 2, 2);
}

}  // namespace llmux::kernels
