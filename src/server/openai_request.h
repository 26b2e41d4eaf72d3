// Parsing and validation of OpenAI /v1/chat/completions and /v1/completions bodies into plain
// values. Every rejection names the offending field (`param` of the OpenAI error).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "llmux/chat_template.h"
#include "llmux/grammar.h"
#include "llmux/sampling.h"
#include "server/api_error.h"
#include "server/response_format.h"

namespace llmux::server {

enum class ApiKind { kChat, kCompletion };

struct RequestLimits {
  int max_n = 8;
  int max_stop_strings = 8;
  int max_stop_string_bytes = 256;
  int max_logit_bias_entries = 300;
  int max_messages = 4096;
  int max_prompts = 64;  // completions: prompts in one request
};

// A completion prompt: text, or token ids given by the client.
using PromptInput = std::variant<std::string, std::vector<int32_t>>;

struct OpenAiRequest {
  ApiKind kind = ApiKind::kChat;
  std::string model;  // "" when the client sent none
  // Chat.
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;
  // Completions: one choice set per prompt.
  std::vector<PromptInput> prompts;
  // Sampling; max_tokens is filled in later from `max_tokens` below and the context.
  SamplingParams sampling;
  std::optional<int32_t> max_tokens;  // max_tokens / max_completion_tokens as sent
  int n = 1;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;
  // Chat: logprobs (bool) + top_logprobs; completions: logprobs (int). Either way the number
  // of alternatives is in sampling.logprobs.
  bool want_logprobs = false;
  std::string user;
  // `response_format` json_object / json_schema (nullopt: text). Compiled by the caller.
  std::optional<GrammarSpec> response_format;
};

// Parses `body`. Returns the request, or the ApiError to send (400 naming the field; features
// llmux does not implement -> 400 with code "unsupported_feature").
std::variant<OpenAiRequest, ApiError> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                         const RequestLimits& limits);

}  // namespace llmux::server
