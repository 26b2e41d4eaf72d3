#include "common.cuh"
#include "silu_mul.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void SiluMulKernel(const __nv_bfloat16* gate, int64_t gate_stride,
                              const __nv_bfloat16* up, int64_t up_stride, __nv_bfloat16* out,
                              int64_t out_stride, int cols) {
  const int64_t r = blockIdx.y;
  const int c = blockIdx.x * kThreads + threadIdx.x;
  if (c >= cols) return;
  const float g = Bf16ToF32(gate[r * gate_stride + c]);
  const float u = Bf16ToF32(up[r * up_stride + c]);
  out[r * out_stride + c] = F32ToBf16(g / (1.0f + expf(-g)) * u);
}

}  // namespace

cudaError_t LaunchSiluMul(const void* gate, int64_t gate_stride, const void* up,
                          int64_t up_stride, void* out, int64_t out_stride, int rows, int cols,
                          cudaStream_t stream) {
  LLMUX_KCHECK(gate != nullptr && up != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && gate_stride >= cols && up_stride >= cols && out_stride >= cols,
               "silu_mul shape");
  LLMUX_KCHECK(rows <= 65535, "silu_mul: at most 65535 rows per launch");
  if (rows == 0) return cudaSuccess;
  const dim3 grid(CeilDiv(cols, kThreads), rows);
  SiluMulKernel<<<grid, kThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(gate), gate_stride,
      static_cast<const __nv_bfloat16*>(up), up_stride, static_cast<__nv_bfloat16*>(out),
      out_stride, cols);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
