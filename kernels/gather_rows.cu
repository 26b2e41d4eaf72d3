#include "common.cuh"
#include "elementwise_plan.h"
#include "gather_rows.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 256;

// One block per output row: a row copy of `row_bytes` with kBytes accesses.
template <int kBytes>
__global__ void GatherRowsKernel(const char* __restrict__ x, int64_t x_stride_bytes,
                                 const int32_t* __restrict__ indices, char* __restrict__ out,
                                 int64_t out_stride_bytes, int64_t row_bytes) {
  CopyRow<kBytes>(out + static_cast<int64_t>(blockIdx.x) * out_stride_bytes,
                  x + static_cast<int64_t>(indices[blockIdx.x]) * x_stride_bytes, row_bytes,
                  threadIdx.x, kThreads);
}

}  // namespace

cudaError_t LaunchGatherRows(const void* x, int64_t x_stride, const int32_t* indices, void* out,
                             int64_t out_stride, int num_indices, int cols, int elem_bytes,
                             cudaStream_t stream) {
  LLMUX_KCHECK(x != nullptr && indices != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && x_stride >= cols && out_stride >= cols, "gather_rows shape");
  LLMUX_KCHECK(elem_bytes == 2 || elem_bytes == 4, "gather_rows element size");
  if (num_indices == 0) return cudaSuccess;
  const auto* xs = static_cast<const char*>(x);
  auto* os = static_cast<char*>(out);
  const int64_t xsb = x_stride * elem_bytes, osb = out_stride * elem_bytes;
  const int64_t row = int64_t{cols} * elem_bytes;
  switch (AccessBytes({reinterpret_cast<uintptr_t>(x), reinterpret_cast<uintptr_t>(out)},
                      {xsb, osb}, row, elem_bytes)) {
    case 16:
      GatherRowsKernel<16><<<num_indices, kThreads, 0, stream>>>(xs, xsb, indices, os, osb, row);
      break;
    case 8:
      GatherRowsKernel<8><<<num_indices, kThreads, 0, stream>>>(xs, xsb, indices, os, osb, row);
      break;
    case 4:
      GatherRowsKernel<4><<<num_indices, kThreads, 0, stream>>>(xs, xsb, indices, os, osb, row);
      break;
    default:
      GatherRowsKernel<2><<<num_indices, kThreads, 0, stream>>>(xs, xsb, indices, os, osb, row);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
