#include "llmux/chat_template.h"

#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "llmux/file_util.h"
#include "tokenizer/chat_template_builtins.h"
#include "tokenizer/jinja/template.h"

namespace llmux {
namespace {

std::optional<nlohmann::ordered_json> ParseOrdered(std::string_view text) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

// JSON -> template value, keeping the object key order (tojson writes keys as given).
jinja::Value FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return jinja::Value::None();
    case nlohmann::json::value_t::boolean:
      return jinja::Value::Bool(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return jinja::Value::Int(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return j.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)
                 ? jinja::Value::Int(static_cast<int64_t>(j.get<uint64_t>()))
                 : jinja::Value::Float(static_cast<double>(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float:
      return jinja::Value::Float(j.get<double>());
    case nlohmann::json::value_t::string:
      return jinja::Value::Str(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<jinja::Value> items;
      for (const auto& e : j) items.push_back(FromJson(e));
      return jinja::Value::List(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      jinja::Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.Set(it.key(), FromJson(it.value()));
      return jinja::Value::MakeDict(std::move(d));
    }
    case nlohmann::json::value_t::binary:
      break;
  }
  return jinja::Value::None();
}

jinja::Value MessageValue(const ChatMessage& m) {
  jinja::Dict d;
  d.Set("role", jinja::Value::Str(m.role));
  d.Set("content", jinja::Value::Str(m.content));
  if (!m.tool_calls.empty()) {
    std::vector<jinja::Value> calls;
    for (const ChatToolCall& c : m.tool_calls) {
      jinja::Dict fn;
      fn.Set("name", jinja::Value::Str(c.name));
      // NOTE: like vLLM, a JSON-object arguments string reaches the template as a dict, so
      // templates that write `arguments | tojson` (Llama 3.1) get the object, not a string.
      std::optional<nlohmann::ordered_json> args = ParseOrdered(c.arguments);
      fn.Set("arguments", args && args->is_object() ? FromJson(*args)
                                                    : jinja::Value::Str(c.arguments));
      jinja::Dict call;
      call.Set("id", jinja::Value::Str(c.id));
      call.Set("type", jinja::Value::Str("function"));
      call.Set("function", jinja::Value::MakeDict(std::move(fn)));
      calls.push_back(jinja::Value::MakeDict(std::move(call)));
    }
    d.Set("tool_calls", jinja::Value::List(std::move(calls)));
  }
  if (!m.tool_call_id.empty()) d.Set("tool_call_id", jinja::Value::Str(m.tool_call_id));
  return jinja::Value::MakeDict(std::move(d));
}

class JinjaChatTemplate final : public ChatTemplate {
 public:
  JinjaChatTemplate(std::unique_ptr<jinja::Template> tmpl, ChatTemplateContext context)
      : template_(std::move(tmpl)), context_(std::move(context)) {
    if (!context_.local_time) {
      context_.local_time = [] {
        const std::time_t now = std::time(nullptr);
        std::tm local{};
        localtime_r(&now, &local);
        return local;
      };
    }
  }

  StatusOr<std::string> Render(std::span<const ChatMessage> messages,
                               bool add_generation_prompt) const override {
    return Render(messages, ChatRenderOptions{add_generation_prompt});
  }

  StatusOr<std::string> Render(std::span<const ChatMessage> messages,
                               const ChatRenderOptions& options) const override {
    std::vector<jinja::Value> items;
    items.reserve(messages.size());
    for (const ChatMessage& m : messages) items.push_back(MessageValue(m));
    std::vector<std::pair<std::string, jinja::Value>> vars;
    vars.emplace_back("messages", jinja::Value::List(std::move(items)));
    vars.emplace_back("add_generation_prompt", jinja::Value::Bool(options.add_generation_prompt));
    vars.emplace_back("bos_token", jinja::Value::Str(context_.bos_token));
    vars.emplace_back("eos_token", jinja::Value::Str(context_.eos_token));
    for (const auto& [name, value] : context_.extra_variables) {
      vars.emplace_back(name, jinja::Value::Str(value));
    }
    if (!options.tools_json.empty()) {
      std::optional<nlohmann::ordered_json> tools = ParseOrdered(options.tools_json);
      if (!tools || !tools->is_array()) return InvalidArgument("tools must be a JSON list");
      vars.emplace_back("tools", FromJson(*tools));
    }
    return template_->Render(vars, context_.local_time);
  }

  const std::string& source() const override { return template_->source(); }

 private:
  std::unique_ptr<jinja::Template> template_;
  ChatTemplateContext context_;
};


StatusOr<nlohmann::json> ReadJson(const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(path.string() + " is not valid JSON: " + e.what());
  }
}

// bos_token / eos_token: a string, an AddedToken object {content: ...}, or null/absent.
std::string SpecialToken(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return "";
}

ChatTemplateContext ContextFromConfig(const nlohmann::json& config) {
  ChatTemplateContext ctx;
  if (!config.is_object()) return ctx;
  ctx.bos_token = SpecialToken(config, "bos_token");
  ctx.eos_token = SpecialToken(config, "eos_token");
  for (const char* key : {"unk_token", "pad_token"}) {
    if (config.contains(key)) ctx.extra_variables.emplace_back(key, SpecialToken(config, key));
  }
  return ctx;
}

StatusOr<std::string> TemplateFromConfig(const nlohmann::json& config,
                                         const std::filesystem::path& path) {
  auto it = config.is_object() ? config.find("chat_template") : config.end();
  if (!config.is_object() || it == config.end() || it->is_null()) {
    return NotFound(path.string() +
                    " has no chat_template; set model.chat_template to builtin:NAME or file:PATH");
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string names;
    for (const auto& entry : *it) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string()) continue;
      const std::string name = entry["name"].get<std::string>();
      if (name == "default" && entry.contains("template") && entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
      names += (names.empty() ? "" : ", ") + name;
    }
    return NotFound(path.string() + ": chat_template lists no \"default\" template (has: " + names +
                    "); select one with model.chat_template");
  }
  return InvalidArgument(path.string() + ": chat_template must be a string or a list");
}

}  // namespace

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(std::string template_source,
                                                             ChatTemplateContext context) {
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<jinja::Template> tmpl,
                         jinja::Template::Parse(std::move(template_source)));
  return std::unique_ptr<ChatTemplate>(new JinjaChatTemplate(std::move(tmpl), std::move(context)));
}

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfig(
    const std::filesystem::path& tokenizer_config_path) {
  LLMUX_ASSIGN_OR_RETURN(nlohmann::json config, ReadJson(tokenizer_config_path));
  LLMUX_ASSIGN_OR_RETURN(std::string source, TemplateFromConfig(config, tokenizer_config_path));
  auto created = Create(std::move(source), ContextFromConfig(config));
  if (!created.ok()) return created.status().WithContext(tokenizer_config_path.string());
  return created;
}

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Builtin(std::string_view name,
                                                              ChatTemplateContext context) {
  std::optional<std::string> source = BuiltinChatTemplateSource(name);
  if (!source) {
    std::string known;
    for (const auto& n : BuiltinNames()) known += (known.empty() ? "" : ", ") + n;
    return NotFound("unknown built-in chat template '" + std::string(name) + "' (known: " + known +
                    ")");
  }
  return Create(std::move(*source), std::move(context));
}

std::vector<std::string> ChatTemplate::BuiltinNames() { return BuiltinChatTemplateNames(); }

StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromSpec(
    std::string_view spec, const std::filesystem::path& tokenizer_config_path) {
  if (spec.empty()) return FromTokenizerConfig(tokenizer_config_path);
  ChatTemplateContext context;
  if (std::filesystem::exists(tokenizer_config_path)) {
    LLMUX_ASSIGN_OR_RETURN(nlohmann::json config, ReadJson(tokenizer_config_path));
    context = ContextFromConfig(config);
  }
  if (spec.starts_with("builtin:")) return Builtin(spec.substr(8), std::move(context));
  if (spec.starts_with("file:")) {
    const std::filesystem::path path(std::string(spec.substr(5)));
    LLMUX_ASSIGN_OR_RETURN(std::string source, ReadFileToString(path));
    auto created = Create(std::move(source), std::move(context));
    if (!created.ok()) return created.status().WithContext(path.string());
    return created;
  }
  return InvalidArgument("model.chat_template must be empty, builtin:NAME or file:PATH; got '" +
                         std::string(spec) + "'");
}

}  // namespace llmux
