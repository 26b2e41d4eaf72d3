// Sources of the built-in chat templates (ChatTemplate::Builtin).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmux {

// The template text of built-in `name`, or nullopt for an unknown name.
std::optional<std::string> BuiltinChatTemplateSource(std::string_view name);
std::vector<std::string> BuiltinChatTemplateNames();

}  // namespace llmux
