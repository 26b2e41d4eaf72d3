#include "common.cuh"
#include "embedding.cuh"

namespace llmux::kernels {
namespace {

__global__ void EmbeddingKernel(const __nv_bfloat16* __restrict__ table, int64_t table_stride,
                                const int32_t* __restrict__ token_ids,
                                __nv_bfloat16* __restrict__ out, int64_t out_stride, int dim) {
  const int t = blockIdx.x;
  const __nv_bfloat16* src = table + static_cast<int64_t>(token_ids[t]) * table_stride;
  __nv_bfloat16* dst = out + static_cast<int64_t>(t) * out_stride;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

cudaError_t LaunchEmbedding(const void* table, int64_t table_stride, const int32_t* token_ids,
                            void* out, int64_t out_stride, int num_tokens, int dim,
                            cudaStream_t stream) {
  LLMUX_KCHECK(table != nullptr && out != nullptr && token_ids != nullptr, "null pointer");
  LLMUX_KCHECK(dim > 0 && table_stride >= dim && out_stride >= dim, "embedding shape");
  if (num_tokens == 0) return cudaSuccess;
  EmbeddingKernel<<<num_tokens, 256, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(table), table_stride, token_ids,
      static_cast<__nv_bfloat16*>(out), out_stride, dim);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
