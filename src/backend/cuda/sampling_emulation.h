// The sampling kernel (kernels/sampling.cu) computed sequentially on the host: the same packed
// inputs, the same processing, the same integer selection and draw (kernels/sampling_select.h)
// by the same radix descent (kDigitBits-bit digits, integer histograms per level). Used by the
// tests: against the host sampler without a device, against the kernel on one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/cuda/sampling_pack.h"
#include "sampling_layout.h"

namespace llmux::cuda {

// What the kernel returns for every row of `packer`'s last Pack on these raw logits
// ([rows, vocab], row stride `stride`).
std::vector<kernels::SampledRow> EmulateSampling(const SamplingPacker& packer,
                                                 std::span<const float> logits, int64_t stride,
                                                 int32_t vocab);

// The candidates' radix descent on its own: among the tokens with weights[i] > 0, in the order
// of `order` (unique values, ascending first), the first whose inclusive prefix of the metric
// (weight, or count with `by_count`) reaches `target` (>= 1, at most the metric's total).
struct Crossing {
  uint64_t order = 0;    // the token's order value
  uint64_t count = 0;    // candidates up to and including it
  uint64_t weight = 0;   // their weight
};
Crossing DescendOnHost(std::span<const uint64_t> order, std::span<const uint64_t> weights,
                       int total_bits, bool by_count, uint64_t target);

}  // namespace llmux::cuda
