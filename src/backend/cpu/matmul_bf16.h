// MatMul on BF16 weights with BF16 activations: AVX-512 BF16 `vdpbf16ps`.
//
// The arithmetic (CpuBackendOptions::bf16_activations == kBf16, the default):
//   1. Each activation row is rounded to bf16 once per MatMul (vcvtne2ps2bf16: round to nearest
//      even, denormals flushed to zero) and laid out like the weight's packed groups
//      (packed_weight.h): per 32 elements k..k+31, 16 dwords, dword i = bf16(x[k+i]) in its low
//      half and bf16(x[k+16+i]) in its high half; K padded with zeros to whole groups.
//   2. Per output (m, n), 16 F32 lanes start at +0; for each group in k order, lane i becomes
//      vdpbf16ps(lane, x dword i, w dword i): lane += x[k+16+i] * w[k+16+i], rounded, then
//      lane += x[k+i] * w[k+i], rounded (each product of two bf16 is exact in F32; bf16 inputs
//      that are denormal count as zero, denormal results are flushed to zero).
//   3. out[m, n] = Hsum(lanes) (simd.h's fixed tree) + bias[n].
// Lanes, groups and the final tree are those of the F32 path (matmul.h: lane i sums elements
// k+i and k+16+i of every group), only the products differ. Tiles and threads decide which
// outputs are computed together, never the order inside one: a row's bits do not depend on M,
// the tile shape or the thread count (batch invariant), and packed and row-major weights give
// the same bits.
#pragma once

#include <cstdint>

#include "backend/cpu/matmul.h"
#include "backend/cpu/thread_pool.h"

namespace llmux::cpu {

// True when this build has the AVX-512 BF16 kernels (-march with avx512bf16) and the CPU runs
// them. Otherwise BF16 weights always take the exact F32-activation path of matmul.h.
bool Bf16DotAvailable();

// Rounds x [M, K] (row stride x_stride) to bf16 in the group layout of step 1 above, to dst
// (M rows of 16 * ceil(K / 32) dwords each). Requires Bf16DotAvailable().
void PackBf16Activations(const float* x, int64_t x_stride, int64_t M, int64_t K, uint32_t* dst);

// out = x w^T (+ bias) for a BF16 weight (a.w_dtype == kBF16, packed or row-major) with the
// arithmetic above. Threads split N as MatMulInvariant does. Requires Bf16DotAvailable().
void MatMulBf16Dot(const MatMulArgs& a, ThreadPool& pool);

}  // namespace llmux::cpu
