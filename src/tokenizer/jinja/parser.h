// Parser of the Jinja-subset engine: tokens -> statements. Grammar and operator precedence
// follow @huggingface/jinja (filters bind tighter than `is`, which binds tighter than `**`;
// comparisons chain left to right).
#pragma once

#include <string_view>
#include <vector>

#include "llmux/status.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace llmux::jinja {

// Parses `tokens` of `source`. InvalidArgument naming line and column on a syntax error or a
// statement llmux does not support ({% include %}, {% extends %}, {% call %}, ...).
StatusOr<std::vector<StmtPtr>> Parse(std::string_view source, const std::vector<Token>& tokens);

// Load-time check of what the interpreter can run: every filter, test, global function and
// method named in the template must be one llmux implements. InvalidArgument with the
// position of the first one that is not.
Status CheckSupported(std::string_view source, const std::vector<StmtPtr>& program);

}  // namespace llmux::jinja
