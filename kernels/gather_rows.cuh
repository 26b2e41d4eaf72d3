// Row gather (logits rows): out[i, :] = x[indices[i], :].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// x: [rows_in, cols], out: [num_indices, cols], both of `elem_bytes` (2 or 4) elements with
// row strides in elements. indices: [num_indices] int32, each in [0, rows_in) (checked by the
// caller).
cudaError_t LaunchGatherRows(const void* x, int64_t x_stride, const int32_t* indices, void* out,
                             int64_t out_stride, int num_indices, int cols, int elem_bytes,
                             cudaStream_t stream);

}  // namespace llmux::kernels
