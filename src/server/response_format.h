// `response_format` of /v1/chat/completions and /v1/completions: the OpenAI shapes
// {type: "text"}, {type: "json_object"} and {type: "json_schema", json_schema: {name, schema,
// strict, description}}, parsed into a GrammarSpec; and the server side of structured outputs
// (a per-tenant compiled-grammar cache on the I/O threads).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <variant>

#include "llmux/grammar.h"
#include "llmux/thread_annotations.h"
#include "server/api_error.h"

namespace llmux {
class Engine;
class Tokenizer;
}  // namespace llmux

namespace llmux::server {

// nullopt for {type: "text"}; the spec for the JSON types; an ApiError (400 naming the field,
// e.g. "response_format.json_schema.schema") for a malformed value. The schema itself is only
// checked by CompileResponseFormat.
std::variant<std::optional<GrammarSpec>, ApiError> ParseResponseFormat(const nlohmann::json& v);

// The request body was parsed into sorted maps; properties are generated in the schema's own
// order, so re-read the schema text from `body` preserving key order (no-op for json_object).
void RestoreSchemaOrder(std::string_view body, GrammarSpec& spec);

// The `param` of a compile error of `spec` ("response_format.json_schema.schema").
std::string ResponseFormatParam(const GrammarSpec& spec);

// Compiles response formats on the I/O threads, cached per (tenant, schema, model vocabulary)
// under a memory cap. Thread-safe.
class StructuredOutputs {
 public:
  explicit StructuredOutputs(size_t cache_bytes = 256u << 20);
  // The grammar for `spec` on the model served by `engine` with `tokenizer`; an ApiError
  // (400, the message names the schema keyword) when the schema is refused.
  std::variant<std::shared_ptr<const CompiledGrammar>, ApiError> Compile(
      const std::string& tenant, const GrammarSpec& spec, const Tokenizer& tokenizer,
      const Engine& engine);

 private:
  std::shared_ptr<const TokenVocabulary> VocabularyFor(const Tokenizer& tokenizer,
                                                       const Engine& engine);
  GrammarCache cache_;
  Mutex mutex_;
  // Built once per served engine (a pass over the vocabulary).
  std::map<const Engine*, std::shared_ptr<const TokenVocabulary>> vocabularies_ GUARDED_BY(mutex_);
};

}  // namespace llmux::server
