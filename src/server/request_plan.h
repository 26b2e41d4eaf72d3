// Request planning: one completion call's prompts as the engine will see them (chat template
// rendered, text tokenized, token ids checked against the vocabulary), each prompt's max new
// tokens under the tenant's caps and the model's context, and what admission charges for it.
// Pure work on the request's values: no admission, no engine, no I/O.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include "llmux/chat_template.h"
#include "llmux/tenant_policy.h"
#include "llmux/tokenizer.h"
#include "server/api_error.h"
#include "server/openai_request.h"

namespace llmux::server {

// What planning needs of the model serving the call.
struct PlanModel {
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // for kChat
  int32_t max_model_len = 0;
};

struct RequestPlan {
  std::vector<std::vector<int32_t>> prompts;  // [prompt][token]
  std::vector<int32_t> prompt_lengths;        // [prompt]
  std::vector<int32_t> max_tokens;            // [prompt]: max new tokens, capped and defaulted
  int64_t charged_tokens = 0;                 // (prompt + max new tokens) x n, over the prompts
  int64_t charged_cost_nano = 0;              // their cost at the tenant's prices
};

// Plans `r` (of `kind`; `responses`: POST /v1/responses, whose fields are named differently)
// for `tenant` on `model`. Sets r.sampling.max_tokens to the first prompt's max new tokens.
// On failure, the 400 naming the field (prompt/messages/input, max_tokens, a sampling field).
std::variant<RequestPlan, ApiError> PlanRequest(OpenAiRequest& r, ApiKind kind, bool responses,
                                                const PlanModel& model, const TenantConfig& tenant);

}  // namespace llmux::server
