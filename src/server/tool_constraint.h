// The seam between tool_choice and structured outputs: what a grammar engine must enforce so
// that the model's reply is a call of the required / named tool, in the template's format.
// (The grammar engine itself lives elsewhere; until a request can carry a constraint,
// HandleCompletion refuses tool_choice required/named with a documented 400.)
#pragma once

#include <optional>
#include <string>

#include "server/openai_request.h"
#include "server/tool_calls.h"

namespace llmux::server {

// The reply must be `prefix` + a JSON value matching `json_schema` + `suffix`.
struct ToolCallConstraint {
  std::string prefix;       // e.g. "<tool_call>\n" (Hermes)
  std::string json_schema;  // {"name": const, "arguments"/"parameters": the tool's schema}
  std::string suffix;       // e.g. "\n</tool_call>"
};

// nullopt for tool_choice auto / none. For required, the schema is an anyOf over the tools;
// for a named tool, that tool's call only. The key of the arguments follows the format
// ("arguments" for Hermes, "parameters" for Llama 3 JSON).
std::optional<ToolCallConstraint> ToolChoiceConstraint(const OpenAiRequest& request,
                                                       ToolCallFormat format);

}  // namespace llmux::server
