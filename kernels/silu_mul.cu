#include "common.cuh"
#include "elementwise_plan.h"
#include "silu_mul.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

// Each thread computes kN consecutive values of one row with one access per tensor.
template <int kN>
__global__ void SiluMulKernel(const __nv_bfloat16* gate, int64_t gate_stride,
                              const __nv_bfloat16* up, int64_t up_stride, __nv_bfloat16* out,
                              int64_t out_stride, int cols) {
  const int64_t r = blockIdx.y;
  const int c = (blockIdx.x * kThreads + threadIdx.x) * kN;
  if (c >= cols) return;
  float g[kN], u[kN], o[kN];
  LoadBf16<kN>(gate + r * gate_stride + c, g);
  LoadBf16<kN>(up + r * up_stride + c, u);
#pragma unroll
  for (int e = 0; e < kN; ++e) {
    // As the CPU op: silu(g) = g / (1 + exp(-g)) in f32 (IEEE division), times up.
    o[e] = __fmul_rn(__fdiv_rn(g[e], __fadd_rn(1.0f, expf(-g[e]))), u[e]);
  }
  StoreBf16<kN>(out + r * out_stride + c, o);
}

template <int kN>
void Launch(const void* gate, int64_t gate_stride, const void* up, int64_t up_stride, void* out,
            int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  const dim3 grid(CeilDiv(CeilDiv(cols, kN), kThreads), rows);
  SiluMulKernel<kN><<<grid, kThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(gate), gate_stride, static_cast<const __nv_bfloat16*>(up),
      up_stride, static_cast<__nv_bfloat16*>(out), out_stride, cols);
}

}  // namespace

cudaError_t LaunchSiluMul(const void* gate, int64_t gate_stride, const void* up, int64_t up_stride,
                          void* out, int64_t out_stride, int rows, int cols, cudaStream_t stream) {
  LLMUX_KCHECK(gate != nullptr && up != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && gate_stride >= cols && up_stride >= cols && out_stride >= cols,
               "silu_mul shape");
  LLMUX_KCHECK(rows <= 65535, "silu_mul: at most 65535 rows per launch");
  if (rows == 0) return cudaSuccess;
  const auto addr = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  switch (AccessBytes({addr(gate), addr(up), addr(out)},
                      {gate_stride * 2, up_stride * 2, out_stride * 2}, int64_t{cols} * 2, 2)) {
    case 16:
      Launch<8>(gate, gate_stride, up, up_stride, out, out_stride, rows, cols, stream);
      break;
    case 8:
      Launch<4>(gate, gate_stride, up, up_stride, out, out_stride, rows, cols, stream);
      break;
    case 4:
      Launch<2>(gate, gate_stride, up, up_stride, out, out_stride, rows, cols, stream);
      break;
    default:
      Launch<1>(gate, gate_stride, up, up_stride, out, out_stride, rows, cols, stream);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
