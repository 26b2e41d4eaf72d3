// Weight fusion at load: checkpoint tensors that always multiply the same
// activations (q/k/v projections, gate/up projections, and their biases) are
// stacked into one weight so a layer runs one GEMM per input instead of three
// (or two). Every backend gets the fused layout.
//
// The concatenation is of whole rows, byte for byte: it never looks inside a
// row, so it holds for any row encoding (f32, f16, bf16, or a block-quantised
// row whose blocks never cross a row). A fused GEMM computes each output
// element exactly as the separate GEMM would (same weight row, same input row,
// same reduction), so outputs are unchanged bit for bit.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "llmux/host_tensor.h"
#include "llmux/status.h"

namespace llmux {

// A host tensor that owns its bytes. `tensor.data` points into `bytes` (stable
// across moves).
struct OwnedHostTensor {
  HostTensor tensor;
  std::unique_ptr<std::byte[]> bytes;
};

// Stacks `parts` (in order) into `name`: 2-D parts [r_i, cols] give [sum r_i,
// cols], 1-D parts [n_i] give [sum n_i]. InvalidArgument (naming the parts)
// when the parts differ in dtype, rank or column count, when a part has no
// data, or when a part's bytes are not whole rows.
StatusOr<OwnedHostTensor> ConcatRows(std::string name, std::span<const HostTensor* const> parts);

}  // namespace llmux
