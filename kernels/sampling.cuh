// Token sampling on the device: the host sampler's definition (src/sampling/sampler.h) for
// one logits row per block, with the packed inputs of kernels/sampling_layout.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "sampling_layout.h"

namespace llmux::kernels {

// What the kernel computes for row r (block r), in the host sampler's order:
//  1. NaN logits -> -inf; tokens whose mask bit is clear -> -inf (rows with a mask).
//  2. The row's LogitEdits (biases, min_tokens suppression, penalties), each token in
//     parallel with the same IEEE operations as the host (explicit roundings; the frequency
//     penalty is one fma, as in the host sampler).
//  3. argmax = the first token in the order (logit desc, id asc). If it is -inf, the edits are
//     undone (their raw values were kept in `edit_raw`) and the row is greedy.
//  4. Greedy rows (inv_temperature == 0, argmax +inf, or 3.) take the argmax. Others draw with
//     weights w_i = expf((l_i - l_max) * inv_temperature): top-k keeps the first k tokens of
//     the order; top-p the shortest prefix of that whose weight is >= top_p * its total;
//     min-p the tokens with w_i >= min_p; the token is the first, in the order, whose
//     inclusive prefix weight exceeds uniform * (kept weight). Prefixes of the order are found
//     by bisection over the 64-bit order value (DescendingKey(l) << id_bits | id), so there is
//     no sort and no scratch; every sum is in double with a fixed reduction order
//     (deterministic).
//  5. Logprobs (logprobs >= 0): log-softmax of the processed logits (after 2, or of the raw
//     masked logits after 3), the chosen token's and the `logprobs` best by (logit desc, id asc).
// logits: [rows, vocab] f32 with row stride `stride`, processed in place. edit_raw: one float
// per edit (scratch). out: [rows].
cudaError_t LaunchSampling(float* logits, int64_t stride, int rows, int vocab,
                           const SamplingRowParams* params, const LogitEdit* edits,
                           const float* biases, const uint32_t* masks, float* edit_raw,
                           SampledRow* out, cudaStream_t stream);

}  // namespace llmux::kernels
