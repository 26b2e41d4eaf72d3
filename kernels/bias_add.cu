#include "bias_add.cuh"
#include "common.cuh"
#include "elementwise_plan.h"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

template <int kN>
__device__ __forceinline__ void LoadOut(const float* p, float (&v)[kN]) {
  LoadF32<kN>(p, v);
}
template <int kN>
__device__ __forceinline__ void LoadOut(const __nv_bfloat16* p, float (&v)[kN]) {
  LoadBf16<kN>(p, v);
}
template <int kN>
__device__ __forceinline__ void StoreOut(float* p, const float (&v)[kN]) {
  StoreF32<kN>(p, v);
}
template <int kN>
__device__ __forceinline__ void StoreOut(__nv_bfloat16* p, const float (&v)[kN]) {
  StoreBf16<kN>(p, v);
}

// Each thread adds the bias to kN consecutive values of one row (one access each way); the
// add is one f32 addition per value, so kN never changes a result.
template <typename T, int kN>
__global__ void BiasAddKernel(T* out, int64_t out_stride, const float* __restrict__ bias,
                              int cols) {
  const int c = (blockIdx.x * kThreads + threadIdx.x) * kN;
  if (c >= cols) return;
  T* p = out + static_cast<int64_t>(blockIdx.y) * out_stride + c;
  float v[kN];
  LoadOut<kN>(p, v);
#pragma unroll
  for (int e = 0; e < kN; ++e) v[e] = __fadd_rn(v[e], bias[c + e]);
  StoreOut<kN>(p, v);
}

template <typename T, int kN>
void Launch(void* out, int64_t out_stride, const float* bias, int rows, int cols,
            cudaStream_t stream) {
  const dim3 grid(CeilDiv(CeilDiv(cols, kN), kThreads), rows);
  BiasAddKernel<T, kN><<<grid, kThreads, 0, stream>>>(static_cast<T*>(out), out_stride, bias, cols);
}

}  // namespace

cudaError_t LaunchBiasAdd(void* out, int64_t out_stride, bool out_is_f32, const float* bias,
                          int rows, int cols, cudaStream_t stream) {
  LLMUX_KCHECK(out != nullptr && bias != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && out_stride >= cols, "bias_add shape");
  LLMUX_KCHECK(rows <= 65535, "bias_add: at most 65535 rows per launch");
  if (rows == 0) return cudaSuccess;
  const int es = out_is_f32 ? 4 : 2;
  const int access =
      AccessBytes({reinterpret_cast<uintptr_t>(out)}, {out_stride * es}, int64_t{cols} * es, es);
  if (out_is_f32) {
    switch (access) {
      case 16:
        Launch<float, 4>(out, out_stride, bias, rows, cols, stream);
        break;
      case 8:
        Launch<float, 2>(out, out_stride, bias, rows, cols, stream);
        break;
      default:
        Launch<float, 1>(out, out_stride, bias, rows, cols, stream);
    }
  } else {
    switch (access) {
      case 16:
        Launch<__nv_bfloat16, 8>(out, out_stride, bias, rows, cols, stream);
        break;
      case 8:
        Launch<__nv_bfloat16, 4>(out, out_stride, bias, rows, cols, stream);
        break;
      case 4:
        Launch<__nv_bfloat16, 2>(out, out_stride, bias, rows, cols, stream);
        break;
      default:
        Launch<__nv_bfloat16, 1>(out, out_stride, bias, rows, cols, stream);
    }
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
