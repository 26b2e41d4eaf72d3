#include "engine/stop_checker.h"

#include <algorithm>
#include <utility>

#include "llmux/status.h"

namespace llmux {

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
  }
  return "unknown";
}

StopChecker::StopChecker(std::vector<int32_t> eos_token_ids, int32_t max_model_len)
    : eos_token_ids_(std::move(eos_token_ids)), max_model_len_(max_model_len) {
  LLMUX_CHECK(max_model_len > 0) << "max_model_len " << max_model_len;
}

std::optional<StopDecision> StopChecker::Check(const SamplingParams& params,
                                               int32_t num_prompt_tokens,
                                               std::span<const int32_t> output) const {
  LLMUX_CHECK(!output.empty()) << "Check needs the token just sampled";
  const int64_t num_output = static_cast<int64_t>(output.size());
  const int32_t last = output.back();
  auto contains = [last](const std::vector<int32_t>& ids) {
    return std::find(ids.begin(), ids.end(), last) != ids.end();
  };
  if (num_output >= params.min_tokens) {
    if (!params.ignore_eos && contains(eos_token_ids_)) {
      return StopDecision{FinishReason::kStop, last, /*eos=*/true};
    }
    if (contains(params.stop_token_ids)) {
      return StopDecision{FinishReason::kStop, last, /*eos=*/false};
    }
  }
  if (num_output >= params.max_tokens ||
      static_cast<int64_t>(num_prompt_tokens) + num_output >= max_model_len_) {
    return StopDecision{FinishReason::kLength, std::nullopt, /*eos=*/false};
  }
  return std::nullopt;
}

}  // namespace llmux
