#include "bias_add.cuh"
#include "common.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ float Load(const T* p);
template <>
__device__ __forceinline__ float Load(const float* p) {
  return *p;
}
template <>
__device__ __forceinline__ float Load(const __nv_bfloat16* p) {
  return Bf16ToF32(*p);
}
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = F32ToBf16(v); }

template <typename T>
__global__ void BiasAddKernel(T* out, int64_t out_stride, const float* __restrict__ bias,
                              int cols) {
  const int c = blockIdx.x * kThreads + threadIdx.x;
  if (c >= cols) return;
  T* p = out + static_cast<int64_t>(blockIdx.y) * out_stride + c;
  Store(p, Load(p) + bias[c]);
}

}  // namespace

cudaError_t LaunchBiasAdd(void* out, int64_t out_stride, bool out_is_f32, const float* bias,
                          int rows, int cols, cudaStream_t stream) {
  LLMUX_KCHECK(out != nullptr && bias != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && out_stride >= cols, "bias_add shape");
  LLMUX_KCHECK(rows <= 65535, "bias_add: at most 65535 rows per launch");
  if (rows == 0) return cudaSuccess;
  const dim3 grid(CeilDiv(cols, kThreads), rows);
  if (out_is_f32) {
    BiasAddKernel<float><<<grid, kThreads, 0, stream>>>(static_cast<float*>(out), out_stride,
                                                         bias, cols);
  } else {
    BiasAddKernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(
        static_cast<__nv_bfloat16*>(out), out_stride, bias, cols);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
