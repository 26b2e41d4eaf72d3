// A plain tiled GEMM with a fixed reduction order: out[m, n] = sum_k x[m, k] * w[n, k].
// Used when no pinned cuBLASLt algorithm passes its check for a shape (batch-invariant mode)
// and as the reference in the GEMM tests. Each output is one f32 fma chain over k = 0..K-1,
// so a row's result never depends on M.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// Output columns per CTA (an M = 1 GEMM launches ceil(N / kGemmFallbackTileN) CTAs).
inline constexpr int kGemmFallbackTileN = 64;

// x: [M, K] bf16, w: [N, K] bf16, out: [M, N] bf16 (out_is_f32 false) or f32; row strides in
// elements.
cudaError_t LaunchGemmFallback(const void* x, int64_t x_stride, const void* w, int64_t w_stride,
                               void* out, int64_t out_stride, bool out_is_f32, int m, int n,
                               int k, cudaStream_t stream);

}  // namespace llmux::kernels
