#include "server/request_plan.h"

#include <algorithm>
#include <string>

#include "llmux/usage_ledger.h"

namespace llmux::server {
namespace {

// Token ids of every prompt, or the 400 naming the prompt field.
std::variant<std::vector<std::vector<int32_t>>, ApiError> Tokenize(const OpenAiRequest& r,
                                                                   ApiKind kind,
                                                                   const PlanModel& model,
                                                                   const char* prompt_param) {
  std::vector<std::vector<int32_t>> prompts;
  if (kind == ApiKind::kChat) {
    auto text = model.chat_template->Render(
        r.messages, ChatRenderOptions{r.add_generation_prompt, r.tools_json});
    if (!text.ok()) return ApiErrorFromStatus(text.status(), prompt_param);
    // The template writes BOS and other specials itself.
    prompts.push_back(
        model.tokenizer->Encode(*text, /*add_special_tokens=*/false, /*parse_special=*/true));
    return prompts;
  }
  const int32_t vocab = model.tokenizer->vocab_size();
  for (const PromptInput& p : r.prompts) {
    if (const auto* s = std::get_if<std::string>(&p)) {
      prompts.push_back(model.tokenizer->Encode(*s, /*add_special_tokens=*/true));
      continue;
    }
    const auto& ids = std::get<std::vector<int32_t>>(p);
    for (int32_t id : ids) {
      if (id >= vocab) {
        return InvalidRequest("token id " + std::to_string(id) +
                                  " is outside the vocabulary (size " + std::to_string(vocab) + ")",
                              "prompt");
      }
    }
    prompts.push_back(ids);
  }
  return prompts;
}

}  // namespace

std::variant<RequestPlan, ApiError> PlanRequest(OpenAiRequest& r, ApiKind kind, bool responses,
                                                const PlanModel& model,
                                                const TenantConfig& tenant) {
  const char* prompt_param = responses ? "input" : kind == ApiKind::kChat ? "messages" : "prompt";
  const char* max_tokens_param = responses ? "max_output_tokens" : "max_tokens";
  auto tokenized = Tokenize(r, kind, model, prompt_param);
  if (auto* err = std::get_if<ApiError>(&tokenized)) return std::move(*err);
  RequestPlan plan;
  plan.prompts = std::get<std::vector<std::vector<int32_t>>>(std::move(tokenized));

  for (const auto& p : plan.prompts) {
    const int32_t len = static_cast<int32_t>(p.size());
    if (len == 0) return InvalidRequest("the prompt is empty", prompt_param);
    if (tenant.max_prompt_tokens && len > *tenant.max_prompt_tokens) {
      return InvalidRequest("the prompt has " + std::to_string(len) +
                                " tokens; this tenant allows at most " +
                                std::to_string(*tenant.max_prompt_tokens),
                            prompt_param, "prompt_too_long");
    }
    // NOTE: as vLLM, an explicit max_tokens above the tenant's cap is refused, not clamped
    // (a clamped reply would look like the model stopping early); a default is capped.
    if (tenant.max_tokens_per_request && r.max_tokens &&
        *r.max_tokens > *tenant.max_tokens_per_request) {
      // NOTE: built by appending: GCC 12 misreads `"'" + std::string(...)` (-Wrestrict).
      std::string message = "'";
      message += max_tokens_param;
      message += "' is " + std::to_string(*r.max_tokens) + "; this tenant allows at most " +
                 std::to_string(*tenant.max_tokens_per_request) + " tokens per request";
      return InvalidRequest(std::move(message), max_tokens_param, "max_tokens_exceeded");
    }
    int64_t mt = r.max_tokens ? *r.max_tokens
                              : (kind == ApiKind::kCompletion ? 16 : model.max_model_len - len);
    if (tenant.max_tokens_per_request) mt = std::min<int64_t>(mt, *tenant.max_tokens_per_request);
    if (mt < 1 || len + mt > model.max_model_len) {
      const int64_t asked = len + std::max<int64_t>(mt, 1);
      return InvalidRequest(
          "This model's maximum context length is " + std::to_string(model.max_model_len) +
              " tokens. However, you requested " + std::to_string(asked) + " tokens (" +
              std::to_string(len) + " in the " + prompt_param + ", " +
              std::to_string(std::max<int64_t>(mt, 1)) +
              " in the completion). Please reduce the length of the " + prompt_param +
              " or completion.",
          prompt_param, "context_length_exceeded");
    }
    plan.prompt_lengths.push_back(len);
    plan.max_tokens.push_back(static_cast<int32_t>(mt));
    plan.charged_tokens += (len + mt) * r.n;
    plan.charged_cost_nano += CostNano(tenant.prices, len, 0, mt) * r.n;
  }
  r.sampling.max_tokens = plan.max_tokens[0];
  if (auto bad = FindInvalidSamplingParam(r.sampling, model.tokenizer->vocab_size())) {
    return InvalidRequest(bad->message, bad->field);
  }
  return plan;
}

}  // namespace llmux::server
