#include "common.cuh"
#include "kv_write.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 128;

__global__ void KvWriteKernel(const __nv_bfloat16* __restrict__ k, int64_t k_stride,
                              const __nv_bfloat16* __restrict__ v, int64_t v_stride,
                              const int64_t* __restrict__ slot_mapping,
                              __nv_bfloat16* __restrict__ k_cache,
                              __nv_bfloat16* __restrict__ v_cache, int row) {
  const int t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0) return;
  // A slot's K (or V) row of all kv heads is contiguous: [num_kv_heads, head_dim].
  __nv_bfloat16* kd = k_cache + slot * row;
  __nv_bfloat16* vd = v_cache + slot * row;
  const __nv_bfloat16* ks = k + t * k_stride;
  const __nv_bfloat16* vs = v + t * v_stride;
  for (int i = threadIdx.x; i < row; i += kThreads) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

}  // namespace

cudaError_t LaunchKvWrite(const void* k, int64_t k_stride, const void* v, int64_t v_stride,
                          const int64_t* slot_mapping, void* k_cache, void* v_cache,
                          int num_tokens, int num_kv_heads, int head_dim, cudaStream_t stream) {
  LLMUX_KCHECK(k != nullptr && v != nullptr && slot_mapping != nullptr && k_cache != nullptr &&
                   v_cache != nullptr,
               "null pointer");
  const int row = num_kv_heads * head_dim;
  LLMUX_KCHECK(row > 0 && k_stride >= row && v_stride >= row, "kv_write shape");
  if (num_tokens == 0) return cudaSuccess;
  KvWriteKernel<<<num_tokens, kThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(k), k_stride, static_cast<const __nv_bfloat16*>(v),
      v_stride, slot_mapping, static_cast<__nv_bfloat16*>(k_cache),
      static_cast<__nv_bfloat16*>(v_cache), row);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
