// CompileGrammar: spec -> automaton (+ precomputed token masks), and the tool-call spec.
#include <chrono>
#include <nlohmann/json.hpp>

#include "grammar/grammar.h"
#include "grammar/json_pieces.h"
#include "grammar/json_schema_compiler.h"
#include "grammar/mask_cache.h"
#include "llmux/grammar.h"

namespace llmux {

using grammar_internal::Frag;
using grammar_internal::GrammarBuilder;
using grammar_internal::JsonPieces;

std::string GrammarSpec::Fingerprint() const {
  // Length-prefixed fields: no two specs share a fingerprint.
  std::string f;
  f += kind == Kind::kJsonSchema ? "S" : "O";
  for (const std::string* s : {&schema, &prefix, &suffix}) {
    f += std::to_string(s->size());
    f += ':';
    f += *s;
  }
  return f;
}

CompiledGrammar::~CompiledGrammar() = default;

size_t CompiledGrammar::MemoryBytes() const {
  return sizeof(*this) + grammar_->MemoryBytes() + cache_->MemoryBytes();
}

int32_t CompiledGrammar::num_states() const {
  return static_cast<int32_t>(grammar_->states.size());
}

StatusOr<std::shared_ptr<const CompiledGrammar>> CompileGrammar(
    const GrammarSpec& spec, std::shared_ptr<const TokenVocabulary> vocab,
    const GrammarLimits& limits) {
  if (!vocab) return InvalidArgument("no vocabulary");
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(limits.compile_deadline_ms);
  GrammarBuilder builder(limits.max_states);
  JsonPieces pieces(builder);
  int32_t value_rule = -1;
  switch (spec.kind) {
    case GrammarSpec::Kind::kJsonSchema: {
      LLMUX_ASSIGN_OR_RETURN(value_rule, grammar_internal::CompileJsonSchema(
                                             spec.schema, limits, deadline, builder, pieces));
      break;
    }
    case GrammarSpec::Kind::kJsonObject:
      value_rule = pieces.ObjectRule();
      break;
  }
  const int32_t root = builder.NewRule("root");
  builder.Define(root, builder.Seq(root, {builder.Literal(root, spec.prefix),
                                          builder.Call(root, value_rule),
                                          builder.Literal(root, spec.suffix)}));
  LLMUX_ASSIGN_OR_RETURN(grammar_internal::Grammar g, builder.Build(root));
  auto compiled = std::shared_ptr<CompiledGrammar>(new CompiledGrammar());
  compiled->vocab_ = vocab;
  compiled->grammar_ = std::make_unique<grammar_internal::Grammar>(std::move(g));
  compiled->cache_ =
      std::make_unique<grammar_internal::MaskCache>(*compiled->grammar_, compiled->vocab_);
  // NOTE: masks not computed by the deadline fill lazily on the engine thread at first use.
  compiled->cache_->Precompute(deadline);
  return std::shared_ptr<const CompiledGrammar>(std::move(compiled));
}

StatusOr<GrammarSpec> ToolCallGrammarSpec(
    const std::vector<std::pair<std::string, std::string>>& tools, std::string prefix,
    std::string suffix) {
  if (tools.empty()) return InvalidArgument("no tools to build a tool-call grammar from");
  nlohmann::ordered_json any_of = nlohmann::ordered_json::array();
  for (const auto& [name, params] : tools) {
    nlohmann::ordered_json arguments = nlohmann::ordered_json({{"type", "object"}});
    if (!params.empty()) {
      try {
        arguments = nlohmann::ordered_json::parse(params);
      } catch (const std::exception& e) {
        return InvalidArgument("parameters of tool '" + name + "' are not valid JSON: " + e.what());
      }
    }
    nlohmann::ordered_json call = {
        {"type", "object"},
        {"properties", {{"name", {{"const", name}}}, {"arguments", arguments}}},
        {"required", {"name", "arguments"}},
        {"additionalProperties", false}};
    any_of.push_back(std::move(call));
  }
  GrammarSpec spec;
  spec.kind = GrammarSpec::Kind::kJsonSchema;
  nlohmann::ordered_json schema = any_of.size() == 1 ? any_of[0]
                                                     : nlohmann::ordered_json({{"anyOf", any_of}});
  spec.schema = schema.dump();
  spec.prefix = std::move(prefix);
  spec.suffix = std::move(suffix);
  return spec;
}

}  // namespace llmux
