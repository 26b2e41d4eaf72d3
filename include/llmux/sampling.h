// Sampling parameters of one request, what the sampler returns per step, and why a sequence
// finished. Plain values shared by the engine, the HTTP layer and the CLI.
//
// Semantics follow vLLM (and OpenAI for the fields OpenAI defines); docs/sampling.md gives the
// order in which the parameters are applied and the determinism guarantee.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux {

// One `logit_bias` entry: `bias` is added to the raw logit of `token` before anything else.
struct LogitBias {
  int32_t token = 0;
  float bias = 0.0f;
};

struct SamplingParams {
  // Divides the logits before top-k/top-p/min-p and the draw. 0 (or anything below 1e-5)
  // selects greedy decoding: argmax, ties to the lowest token id.
  float temperature = 1.0f;
  // Nucleus: keep the smallest set of most likely tokens whose probability sums to >= top_p.
  // 1 disables it. Must be in (0, 1].
  float top_p = 1.0f;
  // Keep the k most likely tokens. 0 or -1 disables it (as does k >= vocab size).
  int32_t top_k = 0;
  // Keep tokens whose probability is >= min_p * (probability of the most likely token).
  // 0 disables it. Must be in [0, 1].
  float min_p = 0.0f;
  // HF/vLLM: every token present in the prompt OR the output so far has its logit divided by
  // the penalty when positive and multiplied by it when negative. 1 disables it; must be > 0.
  float repetition_penalty = 1.0f;
  // OpenAI: over the OUTPUT tokens only, logit -= presence_penalty * (count > 0)
  // and logit -= frequency_penalty * count. Each in [-2, 2].
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Added to the raw logits before everything else. Ids in [0, vocab), values in [-100, 100].
  std::vector<LogitBias> logit_bias;
  // Seed of the sequence's random draws. When absent the engine assigns one at submit
  // (engine/rng.h: RandomSeed()); the sampler only ever sees the effective seed.
  std::optional<uint64_t> seed;
  // Most output tokens to generate (>= 1). The HTTP layer replaces the default with what the
  // request and the context allow.
  int32_t max_tokens = 16;
  // EOS and stop_token_ids cannot be sampled (their logits are -inf) and do not stop the
  // sequence until this many output tokens exist. In [0, max_tokens].
  int32_t min_tokens = 0;
  // Extra token ids that end the sequence with FinishReason::kStop (checked even with
  // ignore_eos). Ids in [0, vocab).
  std::vector<int32_t> stop_token_ids;
  // When true the model's EOS token(s) neither stop the sequence nor are suppressed by
  // min_tokens; it can still be sampled like any other token.
  bool ignore_eos = false;
  // Absent: no logprobs. n >= 0: the chosen token's logprob plus the n most likely
  // alternatives (n == 0: the chosen token's only). At most 20.
  std::optional<int32_t> logprobs;
};

// The first out-of-range field of a SamplingParams. `field` is the OpenAI/vLLM request field
// name ("temperature", "top_p", "logit_bias", ...), for the `param` of an OpenAI error.
struct SamplingParamError {
  std::string field;
  std::string message;  // one line, starts with the field name
};

// Checks every field against the ranges documented above for a model with `vocab_size`
// tokens. Returns nullopt when all are valid, else the first invalid field.
std::optional<SamplingParamError> FindInvalidSamplingParam(const SamplingParams& params,
                                                           int32_t vocab_size);

// OK when the params are valid, else InvalidArgument whose message is
// FindInvalidSamplingParam's (it starts with the field name).
Status Validate(const SamplingParams& params, int32_t vocab_size);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// What the sampler returns for one sequence and one step.
//
// NOTE: logprobs are the log-softmax of the PROCESSED logits: after logit_bias, min_tokens
// suppression and the repetition/presence/frequency penalties, but before temperature,
// top-k, top-p and min-p. They therefore do not depend on the sampling knobs that only
// shape the draw, and a suppressed token has logprob -inf.
struct SampledToken {
  int32_t token = 0;
  // log P(token) as described above when SamplingParams::logprobs is set; 0 otherwise
  // (NOTE: computing it costs a pass over the vocabulary, so it is only done when asked).
  float logprob = 0.0f;
  // The SamplingParams::logprobs most likely tokens, by logprob descending, ties by lower
  // id. Independent of the chosen token, which may or may not be among them.
  std::vector<TokenLogprob> top;
};

// Why a sequence finished. kAbort is set by the engine (client gone, request cancelled);
// the stop checker only ever returns kStop or kLength.
enum class FinishReason {
  kStop,    // an EOS token of the model or one of stop_token_ids (or, in the HTTP layer,
            // a stop string)
  kLength,  // max_tokens reached, or the model's context is full
  kAbort,   // aborted before finishing
};

// The OpenAI `finish_reason` string: "stop", "length", "abort".
std::string_view FinishReasonName(FinishReason reason);

}  // namespace llmux
