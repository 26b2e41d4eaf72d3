#include "server/response_format.h"

#include <nlohmann/json.hpp>

#include "llmux/engine.h"
#include "llmux/tokenizer.h"

namespace llmux::server {

using json = nlohmann::json;

std::variant<std::optional<GrammarSpec>, ApiError> ParseResponseFormat(const json& v) {
  if (!v.is_object()) return InvalidRequest("'response_format' must be an object", "response_format");
  auto type_it = v.find("type");
  if (type_it == v.end() || !type_it->is_string()) {
    return InvalidRequest("'response_format.type' must be one of 'text', 'json_object', 'json_schema'",
                          "response_format.type");
  }
  const std::string type = type_it->get<std::string>();
  if (type == "text") return std::optional<GrammarSpec>();
  GrammarSpec spec;
  if (type == "json_object") {
    spec.kind = GrammarSpec::Kind::kJsonObject;
    return std::optional<GrammarSpec>(std::move(spec));
  }
  if (type != "json_schema") {
    return InvalidRequest("'response_format.type' '" + type +
                              "' is not one of 'text', 'json_object', 'json_schema'",
                          "response_format.type");
  }
  auto js = v.find("json_schema");
  if (js == v.end() || !js->is_object()) {
    return InvalidRequest("'response_format.json_schema' must be an object with a 'name' and a 'schema'",
                          "response_format.json_schema");
  }
  auto name = js->find("name");
  if (name == js->end() || !name->is_string() || name->get<std::string>().empty() ||
      name->get<std::string>().size() > 64) {
    return InvalidRequest("'response_format.json_schema.name' must be a string of 1 to 64 characters",
                          "response_format.json_schema.name");
  }
  for (const char* f : {"strict"}) {
    if (auto it = js->find(f); it != js->end() && !it->is_null() && !it->is_boolean()) {
      return InvalidRequest(std::string("'response_format.json_schema.") + f + "' must be a boolean",
                            std::string("response_format.json_schema.") + f);
    }
  }
  if (auto it = js->find("description"); it != js->end() && !it->is_null() && !it->is_string()) {
    return InvalidRequest("'response_format.json_schema.description' must be a string",
                          "response_format.json_schema.description");
  }
  auto schema = js->find("schema");
  if (schema == js->end() || schema->is_null()) {
    // OpenAI makes `schema` optional: then any JSON object.
    spec.kind = GrammarSpec::Kind::kJsonObject;
    return std::optional<GrammarSpec>(std::move(spec));
  }
  if (!schema->is_object() && !schema->is_boolean()) {
    return InvalidRequest("'response_format.json_schema.schema' must be a JSON Schema object",
                          "response_format.json_schema.schema");
  }
  spec.kind = GrammarSpec::Kind::kJsonSchema;
  spec.schema = schema->dump();  // sorted keys; RestoreSchemaOrder brings back the order
  return std::optional<GrammarSpec>(std::move(spec));
}

void RestoreSchemaOrder(std::string_view body, GrammarSpec& spec) {
  if (spec.kind != GrammarSpec::Kind::kJsonSchema) return;
  try {
    const auto ordered = nlohmann::ordered_json::parse(body);
    spec.schema = ordered.at("response_format").at("json_schema").at("schema").dump();
  } catch (const std::exception&) {
    // Unreachable for a body that parsed before; the sorted text stays (same schema).
  }
}

std::string ResponseFormatParam(const GrammarSpec& spec) {
  return spec.kind == GrammarSpec::Kind::kJsonSchema ? "response_format.json_schema.schema"
                                                     : "response_format";
}

StructuredOutputs::StructuredOutputs(size_t cache_bytes) : cache_(cache_bytes) {}

std::shared_ptr<const TokenVocabulary> StructuredOutputs::VocabularyFor(const Tokenizer& tokenizer,
                                                                        const Engine& engine) {
  MutexLock lock(mutex_);
  auto& v = vocabularies_[&engine];
  if (!v) {
    v = TokenVocabulary::FromTokenizer(tokenizer, engine.model_config().vocab_size,
                                       engine.model_config().eos_token_ids);
  }
  return v;
}

std::variant<std::shared_ptr<const CompiledGrammar>, ApiError> StructuredOutputs::Compile(
    const std::string& tenant, const GrammarSpec& spec, const Tokenizer& tokenizer,
    const Engine& engine) {
  auto compiled = cache_.GetOrCompile(tenant, spec, VocabularyFor(tokenizer, engine));
  if (!compiled.ok()) {
    return InvalidRequest("Invalid schema for response_format: " + compiled.status().message(),
                          ResponseFormatParam(spec), "invalid_json_schema");
  }
  return *compiled;
}

}  // namespace llmux::server
