#include "server/tool_constraint.h"

#include <nlohmann/json.hpp>

namespace llmux::server {

std::optional<ToolCallConstraint> ToolChoiceConstraint(const OpenAiRequest& r,
                                                       ToolCallFormat format) {
  if (r.tool_choice != ToolChoiceMode::kRequired && r.tool_choice != ToolChoiceMode::kNamed) {
    return std::nullopt;
  }
  using json = nlohmann::ordered_json;
  const char* args_key = format == ToolCallFormat::kLlama3Json ? "parameters" : "arguments";
  json options = json::array();
  for (const ToolFunction& f : r.tools) {
    if (r.tool_choice == ToolChoiceMode::kNamed && f.name != r.tool_choice_name) continue;
    json params = f.parameters_json.empty() ? json{{"type", "object"}} : json::parse(f.parameters_json);
    options.push_back({{"type", "object"},
                       {"properties", {{"name", {{"const", f.name}}}, {args_key, params}}},
                       {"required", json::array({"name", args_key})},
                       {"additionalProperties", false}});
  }
  ToolCallConstraint c;
  c.json_schema = options.size() == 1 ? options[0].dump() : json{{"anyOf", options}}.dump();
  if (format == ToolCallFormat::kHermes) {
    c.prefix = "<tool_call>\n";
    c.suffix = "\n</tool_call>";
  }
  return c;
}

}  // namespace llmux::server
