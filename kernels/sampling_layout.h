// The packed inputs of device sampling (kernels/sampling.cu), shared by the kernel and the
// host code that fills them (src/backend/cuda/sampling_pack.h). Plain C++: no CUDA headers,
// so the packing is tested without a device.
//
// One step's sampling is uploaded as four arrays:
//   rows   [num_rows]   SamplingRowParams, one per logits row
//   edits  [num_edits]  LogitEdit: per row a contiguous range, one entry per token whose logit
//                       the processing changes (logit_bias, min_tokens suppression, penalties)
//   biases [num_biases] float: per edit a contiguous range, in the order of the request's
//                       logit_bias list
//   masks  [rows with a grammar mask, mask_words] uint32: bit id % 32 of word id / 32 is set
//                       when token id may be sampled (GrammarMatcher's layout)
#pragma once

#include <cstdint>

namespace llmux::kernels {

struct SamplingRowParams {
  // 1 / temperature as the host sampler computes it (float division); 0 for greedy
  // (temperature < 1e-5 or top_k == 1).
  float inv_temperature = 0.0f;
  int32_t top_k = 0;  // 0: no top-k cut (also for k >= vocab)
  float top_p = 1.0f;  // 1: no nucleus cut
  float min_p = 0.0f;  // 0: no min-p cut
  // UniformAt(seed, output index) (src/sampling/rng.h): the draw's number in [0, 1).
  double uniform = 0.0;
  int32_t mask_offset = -1;  // first word of this row's mask in `masks`; -1: no mask
  int32_t edit_begin = 0;    // [edit_begin, edit_end) in `edits`
  int32_t edit_end = 0;
  int32_t logprobs = -1;  // -1: none; n >= 0: the chosen token's logprob and the n best
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int32_t reserved = 0;
};
static_assert(sizeof(SamplingRowParams) == 56, "SamplingRowParams layout is shared with nvcc");

enum LogitEditFlags : int32_t {
  kEditSuppress = 1,  // min_tokens: the token becomes -inf after its biases
  kEditRepeat = 2,    // in the prompt or output: the repetition penalty applies (once)
};

// The host sampler's processing of one token, in its order: x += each bias; suppress;
// repetition penalty; x = fma(-frequency_penalty, output_count, x); x -= presence_penalty (when the
// row has a frequency or presence penalty and output_count > 0). Every step reads only this
// token's logit, so entries are applied in parallel.
struct LogitEdit {
  int32_t token = 0;
  int32_t flags = 0;
  int32_t output_count = 0;  // occurrences in the output so far
  int32_t bias_begin = 0;    // [bias_begin, bias_end) in `biases`
  int32_t bias_end = 0;
};
static_assert(sizeof(LogitEdit) == 20, "LogitEdit layout is shared with nvcc");

// The most top logprobs a row may ask for (SamplingParams::logprobs is at most 20).
constexpr int kMaxTopLogprobs = 20;

// What the kernel writes per row (then copied to pinned host memory in one transfer).
struct SampledRow {
  int32_t token = 0;
  float logprob = 0.0f;
  int32_t num_top = 0;
  int32_t top_tokens[kMaxTopLogprobs] = {};
  float top_logprobs[kMaxTopLogprobs] = {};
};
static_assert(sizeof(SampledRow) == 12 + 8 * kMaxTopLogprobs, "SampledRow layout");

}  // namespace llmux::kernels
