// JSON Schema (a documented subset) -> grammar rules. Internal to src/grammar.
#pragma once

#include <chrono>
#include <string>

#include "grammar/grammar.h"
#include "grammar/json_pieces.h"
#include "llmux/grammar.h"

namespace llmux::grammar_internal {

// Adds the rules of `schema_text` to `builder` and returns the rule of its root value.
// InvalidArgument names the keyword and its location ("... at #/properties/a").
StatusOr<int32_t> CompileJsonSchema(std::string_view schema_text, const GrammarLimits& limits,
                                    std::chrono::steady_clock::time_point deadline,
                                    GrammarBuilder& builder, JsonPieces& pieces);

}  // namespace llmux::grammar_internal
