#include "common.cuh"
#include "elementwise_plan.h"
#include "embedding.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

// One block per token: a row copy with kBytes accesses.
template <int kBytes>
__global__ void EmbeddingKernel(const __nv_bfloat16* __restrict__ table, int64_t table_stride,
                                const int32_t* __restrict__ token_ids,
                                __nv_bfloat16* __restrict__ out, int64_t out_stride, int dim) {
  const int t = blockIdx.x;
  CopyRow<kBytes>(out + static_cast<int64_t>(t) * out_stride,
                  table + static_cast<int64_t>(token_ids[t]) * table_stride, int64_t{dim} * 2,
                  threadIdx.x, kThreads);
}

template <int kBytes>
void Launch(const void* table, int64_t table_stride, const int32_t* token_ids, void* out,
            int64_t out_stride, int num_tokens, int dim, cudaStream_t stream) {
  EmbeddingKernel<kBytes><<<num_tokens, kThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(table), table_stride, token_ids,
      static_cast<__nv_bfloat16*>(out), out_stride, dim);
}

}  // namespace

cudaError_t LaunchEmbedding(const void* table, int64_t table_stride, const int32_t* token_ids,
                            void* out, int64_t out_stride, int num_tokens, int dim,
                            cudaStream_t stream) {
  LLMUX_KCHECK(table != nullptr && out != nullptr && token_ids != nullptr, "null pointer");
  LLMUX_KCHECK(dim > 0 && table_stride >= dim && out_stride >= dim, "embedding shape");
  if (num_tokens == 0) return cudaSuccess;
  const auto addr = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  switch (AccessBytes({addr(table), addr(out)}, {table_stride * 2, out_stride * 2},
                      int64_t{dim} * 2, 2)) {
    case 16:
      Launch<16>(table, table_stride, token_ids, out, out_stride, num_tokens, dim, stream);
      break;
    case 8:
      Launch<8>(table, table_stride, token_ids, out, out_stride, num_tokens, dim, stream);
      break;
    case 4:
      Launch<4>(table, table_stride, token_ids, out, out_stride, num_tokens, dim, stream);
      break;
    default:
      Launch<2>(table, table_stride, token_ids, out, out_stride, num_tokens, dim, stream);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
