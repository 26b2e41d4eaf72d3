// MatMul kernels of the CPU backend: out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]).
//
// Batch invariance: every out[m, n] is Dot(x[m, :], w[n, :]) exactly as simd.h defines it
// (16-lane FMA accumulation over k chunks in order, masked tail, fixed Hsum), then + bias[n].
// Register tiles, weight layouts and thread splits only decide WHICH elements are computed
// together, never the order inside one, so a row's result is bit-identical for any M and thread
// count. F16/BF16/Q8_0 weights are converted to F32 exactly (vcvtph2ps, bf16 << 16, d * q) in
// registers, from the row-major weight or from its prepacked panels (packed_weight.h); both
// layouts give the same bits.
#pragma once

#include <cstdint>

#include "backend/cpu/packed_weight.h"
#include "backend/cpu/thread_pool.h"
#include "llmux/dtype.h"

namespace llmux::cpu {

// A MatMul of at most this many x rows is a decode GEMV, bound by reading its weight once from
// DRAM: its threads split it by single panels, a row-major weight is read as it is instead of
// being packed per block, and idle threads prefetch the next one (CpuBackend::NoteGemvWeight).
inline constexpr int64_t kGemvMaxRows = 4;

struct MatMulArgs {
  const float* x = nullptr;  // [M, K], row stride x_stride
  int64_t x_stride = 0;
  // The weight [N, K]: prepacked (packed != nullptr; w and w_stride unused, w_dtype ==
  // packed->layout.dtype), or row-major at w in w_dtype (F32/F16/BF16/Q8_0), row stride
  // w_stride elements, any alignment.
  const PackedWeight* packed = nullptr;
  const void* w = nullptr;
  DType w_dtype = DType::kF32;
  int64_t w_stride = 0;
  const float* bias = nullptr;  // [N] or nullptr
  float* out = nullptr;         // [M, N], row stride out_stride
  int64_t out_stride = 0;
  int64_t M = 0;
  int64_t N = 0;
  int64_t K = 0;
  // BF16 weights only: round the activations to bf16 and multiply with AVX-512 BF16
  // (matmul_bf16.h) where the CPU has it; false (or no AVX-512 BF16) keeps the exact F32 path.
  bool bf16_activations = false;
};

// The batch-invariant path. Threads split N. BF16 weights with a.bf16_activations go to
// MatMulBf16Dot (matmul_bf16.h) when Bf16DotAvailable(); every other case follows the order
// above.
void MatMulInvariant(const MatMulArgs& a, ThreadPool& pool);

// The batch-DEPENDENT fast path (CpuBackendOptions::use_blas): OpenBLAS sgemm, weights other
// than row-major F32 converted to F32 panels first. OpenBLAS chooses its own blocking (and K splits) from the
// shape, so a row's bits depend on M. Called from the engine thread; OpenBLAS threads itself.
void MatMulBlas(const MatMulArgs& a, ThreadPool& pool);

}  // namespace llmux::cpu
