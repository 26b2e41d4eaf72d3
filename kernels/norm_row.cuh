// The row kernel behind RmsNorm and AddRmsNorm (rms_norm.cu, add_rms_norm.cu), laid out by
// NormPlan (elementwise_plan.h): a thread reads its logical vectors of the row once into
// registers, the row's threads reduce the sum of squares in a fixed order, and the thread
// writes its outputs from the registers (no second read of the row).
#pragma once

#include "common.cuh"
#include "elementwise_plan.h"

namespace llmux::kernels {

struct NormRowArgs {
  __nv_bfloat16* residual = nullptr;  // AddRmsNorm: in/out, residual += x (rounded to bf16)
  int64_t residual_stride = 0;
  const __nv_bfloat16* x = nullptr;
  int64_t x_stride = 0;
  const float* weight = nullptr;
  float eps = 0.0f;
  __nv_bfloat16* out = nullptr;
  int64_t out_stride = 0;
  int rows = 0;
  int cols = 0;
  NormPlan plan;
};

// Logical vector `i` of a row: kVec values at row + i * kVec, read with one 16-byte load when
// kWide (then kVec == 8 and the address is 16-byte aligned), else value by value.
template <int kVec, bool kWide>
__device__ __forceinline__ void LoadBf16Vec(const __nv_bfloat16* row, int i, float (&v)[kVec]) {
  if constexpr (kWide) {
    static_assert(kVec == 8, "16-byte vectors hold 8 bf16 values");
    const uint4 raw = *reinterpret_cast<const uint4*>(row + i * kVec);
    const auto* h = reinterpret_cast<const __nv_bfloat16*>(&raw);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = Bf16ToF32(h[e]);
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = Bf16ToF32(row[i * kVec + e]);
  }
}

template <int kVec, bool kWide>
__device__ __forceinline__ void StoreBf16Vec(__nv_bfloat16* row, int i, const float (&v)[kVec]) {
  if constexpr (kWide) {
    uint4 raw;
    auto* h = reinterpret_cast<__nv_bfloat16*>(&raw);
#pragma unroll
    for (int e = 0; e < kVec; ++e) h[e] = F32ToBf16(v[e]);
    *reinterpret_cast<uint4*>(row + i * kVec) = raw;
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) row[i * kVec + e] = F32ToBf16(v[e]);
  }
}

template <int kVec, bool kWide>
__device__ __forceinline__ void LoadF32Vec(const float* p, int i, float (&v)[kVec]) {
  if constexpr (kWide) {
    const float4 a = *reinterpret_cast<const float4*>(p + i * kVec);
    const float4 b = *reinterpret_cast<const float4*>(p + i * kVec + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = p[i * kVec + e];
  }
}

// Sum over the first `warps` warps of the block (all threads get it). Fixed order: a butterfly
// per warp, then every warp adds the warp totals with a butterfly. `scratch`: 32 floats.
__device__ __forceinline__ float BlockSumWarps(float v, float* scratch, int warps) {
  const int lane = threadIdx.x & 31;
  v = WarpSum(v);
  if (lane == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  return WarpSum(lane < warps ? scratch[lane] : 0.0f);
}

// One row per warp (plan.threads == 32, plan.rows_per_block rows per block) or per block.
// kAdd: residual[r] = bf16(residual[r] + x[r]) is stored first and the norm is taken of the
// stored values.
template <int kVec, bool kWide, bool kAdd>
__global__ void __launch_bounds__(1024) NormRowKernel(NormRowArgs a) {
  constexpr int kMaxVectors = NormValuesPerThread(kVec) / kVec;
  __shared__ float scratch[32];
  const NormPlan& p = a.plan;
  const bool warp_rows = p.threads == 32;
  const int row = warp_rows ? blockIdx.x * p.rows_per_block + (threadIdx.x >> 5) : blockIdx.x;
  const int tid = warp_rows ? (threadIdx.x & 31) : threadIdx.x;
  if (row >= a.rows) return;  // only the last block of a warp-per-row launch, whole warps
  const __nv_bfloat16* xr = a.x + row * a.x_stride;
  [[maybe_unused]] __nv_bfloat16* rr = kAdd ? a.residual + row * a.residual_stride : nullptr;
  float v[kMaxVectors][kVec];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxVectors; ++j) {
    const int i = tid + j * p.threads;
    if (j < p.vectors_per_thread && i < p.vectors) {
      LoadBf16Vec<kVec, kWide>(xr, i, v[j]);
      if constexpr (kAdd) {
        float r[kVec];
        LoadBf16Vec<kVec, kWide>(rr, i, r);
#pragma unroll
        for (int e = 0; e < kVec; ++e) v[j][e] = Bf16ToF32(F32ToBf16(r[e] + v[j][e]));
        StoreBf16Vec<kVec, kWide>(rr, i, v[j]);  // exact: the values are bf16 already
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) ss = fmaf(v[j][e], v[j][e], ss);
    }
  }
  ss = warp_rows ? WarpSum(ss) : BlockSumWarps(ss, scratch, p.threads >> 5);
  // As the CPU op: 1 / sqrt(mean + eps) with IEEE sqrt and division, then (x * inv) * w.
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(a.cols) + a.eps);
  __nv_bfloat16* orow = a.out + row * a.out_stride;
#pragma unroll
  for (int j = 0; j < kMaxVectors; ++j) {
    const int i = tid + j * p.threads;
    if (j < p.vectors_per_thread && i < p.vectors) {
      float w[kVec];
      LoadF32Vec<kVec, kWide>(a.weight, i, w);
      float o[kVec];
#pragma unroll
      for (int e = 0; e < kVec; ++e) o[e] = __fmul_rn(__fmul_rn(v[j][e], inv), w[e]);
      StoreBf16Vec<kVec, kWide>(orow, i, o);
    }
  }
}

// The launcher of both norms (LaunchRmsNorm, LaunchAddRmsNorm): checks the shape, plans the
// row and launches the kernel variant. `residual` is read only when kAdd (null otherwise).
template <bool kAdd>
cudaError_t LaunchNormRows(void* residual, int64_t residual_stride, const void* x,
                           int64_t x_stride, const float* weight, float eps, void* out,
                           int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  NormRowArgs a;
  a.residual = static_cast<__nv_bfloat16*>(residual);
  a.residual_stride = residual_stride;
  a.x = static_cast<const __nv_bfloat16*>(x);
  a.x_stride = x_stride;
  a.weight = weight;
  a.eps = eps;
  a.out = static_cast<__nv_bfloat16*>(out);
  a.out_stride = out_stride;
  a.rows = rows;
  a.cols = cols;
  LLMUX_KCHECK(
      a.x != nullptr && a.weight != nullptr && a.out != nullptr && (!kAdd || a.residual != nullptr),
      "null pointer");
  LLMUX_KCHECK(NormColsSupported(a.cols), "norm: row too wide (NormColsSupported)");
  LLMUX_KCHECK(
      a.x_stride >= a.cols && a.out_stride >= a.cols && (!kAdd || a.residual_stride >= a.cols),
      "norm strides");
  if (a.rows == 0) return cudaSuccess;
  a.plan = PlanNorm(a.cols);
  const auto addr = [](const void* q) { return reinterpret_cast<uintptr_t>(q); };
  const bool wide =
      kAdd ? NormVectorized(a.plan, {addr(a.x), addr(a.out), addr(a.residual)},
                            {a.x_stride, a.out_stride, a.residual_stride}, addr(a.weight))
           : NormVectorized(a.plan, {addr(a.x), addr(a.out)}, {a.x_stride, a.out_stride},
                            addr(a.weight));
  const dim3 grid(NormBlocks(a.plan, a.rows));
  const dim3 block(a.plan.threads * a.plan.rows_per_block);
  if (a.plan.vec == 1) {
    NormRowKernel<1, false, kAdd><<<grid, block, 0, stream>>>(a);
  } else if (wide) {
    NormRowKernel<8, true, kAdd><<<grid, block, 0, stream>>>(a);
  } else {
    NormRowKernel<8, false, kAdd><<<grid, block, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
