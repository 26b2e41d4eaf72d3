// Decides, after a token is appended, whether a sequence is finished and why.
//
// Token-level only: EOS, stop_token_ids, max_tokens and the model's context length. Stop
// STRINGS need detokenized text (and hold-back of partial matches across tokens), so the
// detokenizing HTTP layer checks them and aborts the sequence through the engine.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "llmux/sampling.h"

namespace llmux {

struct StopDecision {
  FinishReason reason = FinishReason::kStop;
  // The token that stopped the sequence when reason is kStop: the model's EOS id (eos is
  // true) or an entry of stop_token_ids (eos is false; vLLM's `stop_reason`).
  std::optional<int32_t> stop_token;
  bool eos = false;
};

// Stateless; cheap to copy. One per model (its EOS ids and context length).
class StopChecker {
 public:
  // `max_model_len`: the most tokens (prompt + output) a sequence may hold.
  StopChecker(std::vector<int32_t> eos_token_ids, int32_t max_model_len);

  // `output` is the output so far, INCLUDING the token just sampled (non-empty).
  // Returns nullopt when the sequence continues. Rules, in order:
  //  1. at least min_tokens outputs, the last token is an EOS id and !ignore_eos -> kStop;
  //  2. at least min_tokens outputs, the last token is in stop_token_ids -> kStop;
  //  3. output.size() >= max_tokens, or num_prompt_tokens + output.size() >= max_model_len
  //     -> kLength.
  // NOTE: a stop token on the last allowed position reports kStop (the model did finish),
  // as in vLLM's v0 engine.
  std::optional<StopDecision> Check(const SamplingParams& params, int32_t num_prompt_tokens,
                                    std::span<const int32_t> output) const;

 private:
  std::vector<int32_t> eos_token_ids_;
  int32_t max_model_len_;
};

}  // namespace llmux
