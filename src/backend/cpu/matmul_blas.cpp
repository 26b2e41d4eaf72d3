// The batch-dependent OpenBLAS path (CpuBackendOptions::use_blas). See matmul.h.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/simd.h"

namespace llmux::cpu {
namespace {

// Rows of a packed or F16/BF16/Q8_0 weight converted per sgemm call: 256 x K floats (<= 4 MiB
// at K = 4096).
constexpr int64_t kBlasPanelN = 256;

void ConvertRows(const MatMulArgs& a, int64_t n0, int64_t n1, float* dst) {
  if (a.packed != nullptr) {
    UnpackRowsF32(*a.packed, n0, n1, dst);
    return;
  }
  if (a.w_dtype == DType::kQ8_0) {
    const auto* w = static_cast<const uint8_t*>(a.w);
    const int64_t ws = a.w_stride / kQ8BlockElems * static_cast<int64_t>(kQ8BlockBytes);
    for (int64_t n = n0; n < n1; ++n) {
      float* d = dst + (n - n0) * a.K;
      for (int64_t k = 0; k < a.K; k += 16) _mm512_storeu_ps(d + k, LoadQ8x16(w + n * ws, k));
    }
    return;
  }
  const auto* w = static_cast<const uint16_t*>(a.w);
  const bool f16 = a.w_dtype == DType::kF16;
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* src = w + n * a.w_stride;
    float* d = dst + (n - n0) * a.K;
    for (int64_t k = 0; k < a.K; k += 16) {
      __mmask16 m = a.K - k >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(a.K - k);
      __m512 v = f16 ? LoadF16Masked(src + k, m) : LoadBf16Masked(src + k, m);
      _mm512_mask_storeu_ps(d + k, m, v);
    }
  }
}

}  // namespace

void MatMulBlas(const MatMulArgs& a, ThreadPool& pool) {
  if (a.M <= 0 || a.N <= 0) return;
  auto gemm = [&](const float* w, int64_t ws, int64_t n0, int64_t n) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(a.M),
                static_cast<int>(n), static_cast<int>(a.K), 1.0f, a.x,
                static_cast<int>(a.x_stride), w, static_cast<int>(ws), 0.0f, a.out + n0,
                static_cast<int>(a.out_stride));
  };
  if (a.w_dtype == DType::kF32 && a.packed == nullptr) {
    gemm(static_cast<const float*>(a.w), a.w_stride, 0, a.N);
  } else {
    thread_local std::vector<float> panel;
    if (panel.size() < static_cast<size_t>(kBlasPanelN * a.K)) panel.resize(kBlasPanelN * a.K);
    // NOTE: the engine thread's buffer, passed by pointer: inside the lambda `panel` would name
    // the worker's own (empty) thread_local.
    float* dst = panel.data();
    for (int64_t n0 = 0; n0 < a.N; n0 += kBlasPanelN) {
      int64_t n1 = std::min(a.N, n0 + kBlasPanelN);
      // Conversion split over the pool; sgemm threads itself.
      pool.ParallelFor(n1 - n0, [&](int64_t r0, int64_t r1) {
        ConvertRows(a, n0 + r0, n0 + r1, dst + r0 * a.K);
      });
      gemm(dst, a.K, n0, n1 - n0);
    }
  }
  if (a.bias != nullptr) {
    for (int64_t m = 0; m < a.M; ++m) {
      float* o = a.out + m * a.out_stride;
      for (int64_t n = 0; n < a.N; ++n) o[n] += a.bias[n];
    }
  }
}

}  // namespace llmux::cpu
