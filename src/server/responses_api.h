// POST /v1/responses (OpenAI Responses API, stateless subset): the request becomes the chat
// request it runs as (same engine path, accounting and limits as chat), and the output is
// written as a Response object or its typed SSE events. See docs/api.md "Responses API".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/tool_calls.h"

namespace llmux::server {

// Parses a /v1/responses body into the equivalent chat request (kind kChat, responses_api set).
// `store: true`, `previous_response_id`, `background` and non-function tools are refused with
// 400 naming the field; errors of shared fields name the Responses field (max_output_tokens,
// text.format, tools[i].name, ...).
std::variant<OpenAiRequest, ApiError> ParseResponsesRequest(std::string_view body,
                                                            const RequestLimits& limits);

struct ResponsesUsage {
  int64_t input_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t output_tokens = 0;
};

// The output of one Responses call (one choice). Not thread-safe; lives on the call's strand.
class ResponsesEvents {
 public:
  // `id` is the response id ("resp_...").
  ResponsesEvents(const OpenAiRequest& request, std::string id, std::string model,
                  int64_t created, std::string service_tier);

  const std::string& id() const { return id_; }

  // Streaming. Each returns SSE frames ("event: TYPE\ndata: {...}\n\n"), possibly "".
  // response.created + response.in_progress.
  std::string Start();
  // Output text and tool-call pieces; `call_ids` gives the ids of calls by index.
  std::string Delta(const ToolStreamDelta& delta, const std::vector<std::string>& call_ids);
  // The *.done events of every open output item.
  std::string CloseItems();
  // response.completed (or response.incomplete when cut by max_output_tokens).
  std::string Completed(const ResponsesUsage& usage, const std::string& finish_reason);

  // Non-streaming: the Response object.
  std::string Body(const ParsedToolOutput& output, const std::vector<std::string>& call_ids,
                   const ResponsesUsage& usage, const std::string& finish_reason);

 private:
  struct Item {
    bool is_call = false;
    std::string id;       // msg_... / fc_...
    std::string call_id;  // function calls
    std::string name;
    std::string text;     // message text / call arguments so far
    bool open = true;
  };
  using json = nlohmann::ordered_json;
  std::string Event(const char* type, json payload);
  json ItemJson(const Item& item, bool done) const;
  json ResponseJson(const char* status, const ResponsesUsage* usage,
                    const std::string& finish_reason) const;
  Item& OpenMessage(std::string& out);

  const std::string id_;
  const std::string model_;
  const int64_t created_;
  const std::string service_tier_;
  json echo_;  // request fields echoed in every Response object
  std::vector<Item> items_;
  int sequence_ = 0;
  int message_index_ = -1;  // output index of the open message item
};

}  // namespace llmux::server
