// Parsing and validation of OpenAI /v1/chat/completions and /v1/completions bodies into plain
// values. Every rejection names the offending field (`param` of the OpenAI error).
#pragma once

#include <nlohmann/json.hpp>
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

// `tool_choice` (docs/api.md "Tool calling").
enum class ToolChoiceMode { kAuto, kNone, kRequired, kNamed };

// One `tools[]` entry of type "function".
struct ToolFunction {
  std::string name;
  std::string description;      // "" when absent
  std::string parameters_json;  // JSON Schema text; "" when absent
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
  // Chat tools. `tools_json` is what the chat template sees as `tools` ("" without tools):
  // [{type: "function", function: {name, description?, parameters?}}], keys in that order and
  // the schema's own key order kept.
  std::vector<ToolFunction> tools;
  std::string tools_json;
  ToolChoiceMode tool_choice = ToolChoiceMode::kAuto;  // kNone when there are no tools
  std::string tool_choice_name;                        // kNamed only
  bool parallel_tool_calls = true;
  // OpenAI `service_tier` as sent ("auto" | "default" | "flex" | "priority"; "" = not sent).
  std::string service_tier;
  // POST /v1/responses: set by ParseResponsesRequest; `responses_echo` is the JSON object of
  // request fields every Response object repeats (instructions, tools, temperature, ...).
  bool responses_api = false;
  std::string responses_echo;
  // `response_format` json_object / json_schema (nullopt: text). Compiled by the caller.
  std::optional<GrammarSpec> response_format;
};

// The JSON of a request body (nesting capped at 64 levels), or the 400 to send: a syntax error
// inside a top-level field's value names that field as `param`, any other one has param null.
std::variant<nlohmann::ordered_json, ApiError> ParseRequestJson(std::string_view body);

// Parses `body`. Returns the request, or the ApiError to send (400 naming the field; features
// llmux does not implement -> 400 with code "unsupported_feature").
std::variant<OpenAiRequest, ApiError> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                         const RequestLimits& limits);

}  // namespace llmux::server
