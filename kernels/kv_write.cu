#include "common.cuh"
#include "elementwise_plan.h"
#include "kv_write.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 128;

// One block per token: its K row and V row (all kv heads, contiguous in a slot) copied with
// kBytes accesses.
template <int kBytes>
__global__ void KvWriteKernel(const __nv_bfloat16* __restrict__ k, int64_t k_stride,
                              const __nv_bfloat16* __restrict__ v, int64_t v_stride,
                              const int64_t* __restrict__ slot_mapping,
                              __nv_bfloat16* __restrict__ k_cache,
                              __nv_bfloat16* __restrict__ v_cache, int row) {
  const int t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0) return;
  CopyRow<kBytes>(k_cache + slot * row, k + t * k_stride, int64_t{row} * 2, threadIdx.x, kThreads);
  CopyRow<kBytes>(v_cache + slot * row, v + t * v_stride, int64_t{row} * 2, threadIdx.x, kThreads);
}

template <int kBytes>
void Launch(const void* k, int64_t k_stride, const void* v, int64_t v_stride,
            const int64_t* slot_mapping, void* k_cache, void* v_cache, int num_tokens, int row,
            cudaStream_t stream) {
  KvWriteKernel<kBytes><<<num_tokens, kThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(k), k_stride, static_cast<const __nv_bfloat16*>(v),
      v_stride, slot_mapping, static_cast<__nv_bfloat16*>(k_cache),
      static_cast<__nv_bfloat16*>(v_cache), row);
}

}  // namespace

cudaError_t LaunchKvWrite(const void* k, int64_t k_stride, const void* v, int64_t v_stride,
                          const int64_t* slot_mapping, void* k_cache, void* v_cache, int num_tokens,
                          int num_kv_heads, int head_dim, cudaStream_t stream) {
  LLMUX_KCHECK(k != nullptr && v != nullptr && slot_mapping != nullptr && k_cache != nullptr &&
                   v_cache != nullptr,
               "null pointer");
  const int row = num_kv_heads * head_dim;
  LLMUX_KCHECK(row > 0 && k_stride >= row && v_stride >= row, "kv_write shape");
  if (num_tokens == 0) return cudaSuccess;
  const auto addr = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  // Slot s of a layer's cache starts s * row values in, so `row` bytes' alignment covers it.
  switch (AccessBytes({addr(k), addr(v), addr(k_cache), addr(v_cache)},
                      {k_stride * 2, v_stride * 2}, int64_t{row} * 2, 2)) {
    case 16:
      Launch<16>(k, k_stride, v, v_stride, slot_mapping, k_cache, v_cache, num_tokens, row, stream);
      break;
    case 8:
      Launch<8>(k, k_stride, v, v_stride, slot_mapping, k_cache, v_cache, num_tokens, row, stream);
      break;
    case 4:
      Launch<4>(k, k_stride, v, v_stride, slot_mapping, k_cache, v_cache, num_tokens, row, stream);
      break;
    default:
      Launch<2>(k, k_stride, v, v_stride, slot_mapping, k_cache, v_cache, num_tokens, row, stream);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
