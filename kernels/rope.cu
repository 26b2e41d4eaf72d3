#include "common.cuh"
#include "rope.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ void RotatePair(__nv_bfloat16* head, int i, int half, float c,
                                           float s) {
  const float x1 = Bf16ToF32(head[i]);
  const float x2 = Bf16ToF32(head[i + half]);
  head[i] = F32ToBf16(x1 * c - x2 * s);
  head[i + half] = F32ToBf16(x2 * c + x1 * s);
}

// One block per token; threads walk (head, i) pairs of q then k.
__global__ void RopeKernel(__nv_bfloat16* q, int64_t q_stride, __nv_bfloat16* k,
                           int64_t k_stride, const int32_t* __restrict__ positions,
                           const float* __restrict__ inv_freq, int num_heads, int num_kv_heads,
                           int head_dim) {
  const int t = blockIdx.x;
  const int half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  const int q_pairs = num_heads * half;
  const int total = (num_heads + num_kv_heads) * half;
  for (int p = threadIdx.x; p < total; p += kThreads) {
    const bool is_q = p < q_pairs;
    const int pp = is_q ? p : p - q_pairs;
    const int h = pp / half;
    const int i = pp % half;
    float s, c;
    sincosf(pos * inv_freq[i], &s, &c);
    __nv_bfloat16* head = is_q ? q + t * q_stride + static_cast<int64_t>(h) * head_dim
                               : k + t * k_stride + static_cast<int64_t>(h) * head_dim;
    RotatePair(head, i, half, c, s);
  }
}

}  // namespace

cudaError_t LaunchRope(void* q, int64_t q_stride, void* k, int64_t k_stride,
                       const int32_t* positions, const float* inv_freq, int num_tokens,
                       int num_heads, int num_kv_heads, int head_dim, cudaStream_t stream) {
  LLMUX_KCHECK(q != nullptr && k != nullptr && positions != nullptr && inv_freq != nullptr,
               "null pointer");
  LLMUX_KCHECK(head_dim > 0 && head_dim % 2 == 0, "rope head_dim must be even");
  LLMUX_KCHECK(q_stride >= static_cast<int64_t>(num_heads) * head_dim &&
                   k_stride >= static_cast<int64_t>(num_kv_heads) * head_dim,
               "rope strides");
  if (num_tokens == 0) return cudaSuccess;
  RopeKernel<<<num_tokens, kThreads, 0, stream>>>(
      static_cast<__nv_bfloat16*>(q), q_stride, static_cast<__nv_bfloat16*>(k), k_stride,
      positions, inv_freq, num_heads, num_kv_heads, head_dim);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
