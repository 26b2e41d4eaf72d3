#include "common.cuh"
#include "gather_rows.cuh"

namespace llmux::kernels {
namespace {

template <typename T>
__global__ void GatherRowsKernel(const T* __restrict__ x, int64_t x_stride,
                                 const int32_t* __restrict__ indices, T* __restrict__ out,
                                 int64_t out_stride, int cols) {
  const T* src = x + static_cast<int64_t>(indices[blockIdx.x]) * x_stride;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * out_stride;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

cudaError_t LaunchGatherRows(const void* x, int64_t x_stride, const int32_t* indices, void* out,
                             int64_t out_stride, int num_indices, int cols, int elem_bytes,
                             cudaStream_t stream) {
  LLMUX_KCHECK(x != nullptr && indices != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(cols > 0 && x_stride >= cols && out_stride >= cols, "gather_rows shape");
  LLMUX_KCHECK(elem_bytes == 2 || elem_bytes == 4, "gather_rows element size");
  if (num_indices == 0) return cudaSuccess;
  if (elem_bytes == 2) {
    GatherRowsKernel<uint16_t><<<num_indices, 256, 0, stream>>>(
        static_cast<const uint16_t*>(x), x_stride, indices, static_cast<uint16_t*>(out),
        out_stride, cols);
  } else {
    GatherRowsKernel<uint32_t><<<num_indices, 256, 0, stream>>>(
        static_cast<const uint32_t*>(x), x_stride, indices, static_cast<uint32_t*>(out),
        out_stride, cols);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
