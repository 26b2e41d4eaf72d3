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
//  4. Greedy rows (inv_temperature == 0, argmax +inf, or 3.) take the argmax. Others draw by
//     the integer definition of sampling_select.h: integer weights W_i of the tokens'
//     temperature-scaled probabilities relative to the argmax (2^40 for the argmax; the
//     candidates are the tokens with W_i > 0); top-k keeps the first k candidates of the
//     order; top-p the shortest prefix of that whose weight reaches ceil(top_p * its weight);
//     min-p at most as many as there are candidates with float weight >= min_p; the token is
//     the first candidate whose inclusive prefix weight P has P > uniform * (kept weight),
//     compared exactly. Each cut is found by a radix descent over the order value with
//     integer histograms: the result does not depend on the block size, the batch or the
//     order of any addition. kernels/sampling_select.h and the host emulation
//     (src/backend/cuda/sampling_emulation.h) share every arithmetic step.
//  5. Logprobs (logprobs >= 0): log-softmax of the processed logits (after 2, or of the raw
//     masked logits after 3), the normaliser an integer sum of 2^40-scaled weights; the chosen
//     token's and the `logprobs` best by (logit desc, id asc).
// logits: [rows, vocab] f32 with row stride `stride`, processed in place; vocab at most
// sampling::kMaxVocab. edit_raw: one float per edit (scratch). out: [rows]. threads: the block
// size, 256 or 1024 (the result is the same; tests compare them).
cudaError_t LaunchSampling(float* logits, int64_t stride, int rows, int vocab,
                           const SamplingRowParams* params, const LogitEdit* edits,
                           const float* biases, const uint32_t* masks, float* edit_raw,
                           SampledRow* out, cudaStream_t stream, int threads = 1024);

}  // namespace llmux::kernels
