#include "common.cuh"
#include "elementwise_plan.h"
#include "rope.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 128;

// One block per token. The token's cos/sin (head_dim / 2 of them) are computed once into
// shared memory, then threads walk (head, group of kN pairs) of q then k, each moving kN
// consecutive values of both halves with one access per half.
template <int kN>
__global__ void RopeKernel(__nv_bfloat16* q, int64_t q_stride, __nv_bfloat16* k, int64_t k_stride,
                           const int32_t* __restrict__ positions,
                           const float* __restrict__ inv_freq, int num_heads, int num_kv_heads,
                           int head_dim) {
  __shared__ float cos_s[kRopeMaxHeadDim / 2];
  __shared__ float sin_s[kRopeMaxHeadDim / 2];
  const int t = blockIdx.x;
  const int half = head_dim / 2;
  // As the CPU op (and HF): angle = float(position) * inv_freq[i], one f32 product.
  const float pos = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += kThreads) {
    sincosf(__fmul_rn(pos, inv_freq[i]), &sin_s[i], &cos_s[i]);
  }
  __syncthreads();
  const int groups = half / kN;
  const int q_units = num_heads * groups;
  const int total = (num_heads + num_kv_heads) * groups;
  for (int u = threadIdx.x; u < total; u += kThreads) {
    const bool is_q = u < q_units;
    const int uu = is_q ? u : u - q_units;
    const int h = uu / groups;
    const int i = (uu % groups) * kN;
    __nv_bfloat16* head = is_q ? q + t * q_stride + static_cast<int64_t>(h) * head_dim
                               : k + t * k_stride + static_cast<int64_t>(h) * head_dim;
    float x1[kN], x2[kN], y1[kN], y2[kN];
    LoadBf16<kN>(head + i, x1);
    LoadBf16<kN>(head + i + half, x2);
#pragma unroll
    for (int e = 0; e < kN; ++e) {
      const float c = cos_s[i + e], s = sin_s[i + e];
      // x1 * cos - x2 * sin and x2 * cos + x1 * sin, each product rounded (no FMA), as the
      // CPU op.
      y1[e] = __fsub_rn(__fmul_rn(x1[e], c), __fmul_rn(x2[e], s));
      y2[e] = __fadd_rn(__fmul_rn(x2[e], c), __fmul_rn(x1[e], s));
    }
    StoreBf16<kN>(head + i, y1);
    StoreBf16<kN>(head + i + half, y2);
  }
}

}  // namespace

cudaError_t LaunchRope(void* q, int64_t q_stride, void* k, int64_t k_stride,
                       const int32_t* positions, const float* inv_freq, int num_tokens,
                       int num_heads, int num_kv_heads, int head_dim, cudaStream_t stream) {
  LLMUX_KCHECK(q != nullptr && k != nullptr && positions != nullptr && inv_freq != nullptr,
               "null pointer");
  LLMUX_KCHECK(head_dim > 0 && head_dim % 2 == 0 && head_dim <= kRopeMaxHeadDim,
               "rope head_dim must be even and at most kRopeMaxHeadDim");
  LLMUX_KCHECK(q_stride >= static_cast<int64_t>(num_heads) * head_dim &&
                   k_stride >= static_cast<int64_t>(num_kv_heads) * head_dim,
               "rope strides");
  if (num_tokens == 0) return cudaSuccess;
  const int access = RopeAccessBytes(reinterpret_cast<uintptr_t>(q), q_stride,
                                     reinterpret_cast<uintptr_t>(k), k_stride, head_dim);
  auto* qb = static_cast<__nv_bfloat16*>(q);
  auto* kb = static_cast<__nv_bfloat16*>(k);
  switch (access) {
    case 16:
      RopeKernel<8><<<num_tokens, kThreads, 0, stream>>>(
          qb, q_stride, kb, k_stride, positions, inv_freq, num_heads, num_kv_heads, head_dim);
      break;
    case 8:
      RopeKernel<4><<<num_tokens, kThreads, 0, stream>>>(
          qb, q_stride, kb, k_stride, positions, inv_freq, num_heads, num_kv_heads, head_dim);
      break;
    case 4:
      RopeKernel<2><<<num_tokens, kThreads, 0, stream>>>(
          qb, q_stride, kb, k_stride, positions, inv_freq, num_heads, num_kv_heads, head_dim);
      break;
    default:
      RopeKernel<1><<<num_tokens, kThreads, 0, stream>>>(
          qb, q_stride, kb, k_stride, positions, inv_freq, num_heads, num_kv_heads, head_dim);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
