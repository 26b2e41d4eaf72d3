#include "server/openai_request.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "server/field_error.h"

namespace llmux::server {
namespace {

// NOTE: ordered, so that tool schemas reach the chat template with the client's key order.
using json = nlohmann::ordered_json;

// Parse failures travel as parse::FieldError inside this file only (server/field_error.h).
using parse::Fail;
using parse::FieldError;
using parse::Unsupported;

double Number(const json& v, const std::string& name, double lo, double hi) {
  if (!v.is_number()) Fail(name, "'" + name + "' must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    Fail(name, "'" + name + "' must be between " + json(lo).dump() + " and " + json(hi).dump() +
                   ", got " + v.dump());
  }
  return d;
}

int64_t Integer(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer() && !v.is_number_unsigned()) {
    // 5.0 is accepted as 5, as Python clients send it.
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && d >= static_cast<double>(lo) &&
          d <= static_cast<double>(hi)) {
        return static_cast<int64_t>(d);
      }
      // 2^64 and beyond arrive as floats: an integer, just out of range.
      if (std::isfinite(d) && d == std::floor(d)) {
        Fail(name, "'" + name + "' is out of range: it must be between " + std::to_string(lo) +
                       " and " + std::to_string(hi) + ", got " + v.dump());
      }
    }
    Fail(name, "'" + name + "' must be an integer");
  }
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
    Fail(name, "'" + name + "' must be between " + std::to_string(lo) + " and " +
                   std::to_string(hi) + ", got " + v.dump());
  }
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) {
    Fail(name, "'" + name + "' must be between " + std::to_string(lo) + " and " +
                   std::to_string(hi) + ", got " + v.dump());
  }
  return i;
}

bool Bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) Fail(name, "'" + name + "' must be a boolean");
  return v.get<bool>();
}

std::string String(const json& v, const std::string& name) {
  if (!v.is_string()) Fail(name, "'" + name + "' must be a string");
  return v.get<std::string>();
}

std::vector<int32_t> TokenIds(const json& v, const std::string& name) {
  if (!v.is_array()) Fail(name, "'" + name + "' must be an array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const json& t : v) ids.push_back(static_cast<int32_t>(Integer(t, name, 0, INT32_MAX)));
  return ids;
}

std::string MessageContent(const json& content, const std::string& name) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) Fail(name, "'" + name + "' must be a string or an array of parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object()) Fail(name, "'" + name + "' parts must be objects");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) Fail(name, "'" + name + "' part needs a 'type'");
    if (*type != "text") Unsupported(name, "content part type '" + type->get<std::string>() + "'");
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) Fail(name, "'" + name + "' text part needs 'text'");
    text += t->get<std::string>();
  }
  return text;
}

std::vector<ChatToolCall> ParseMessageToolCalls(const json& v, const std::string& name) {
  if (!v.is_array()) Fail(name, "'" + name + "' must be an array");
  std::vector<ChatToolCall> calls;
  for (size_t k = 0; k < v.size(); ++k) {
    const json& c = v[k];
    const std::string at = name + "[" + std::to_string(k) + "]";
    if (!c.is_object()) Fail(at, "'" + at + "' must be an object");
    if (auto t = c.find("type"); t != c.end() && *t != "function") {
      Unsupported(at + ".type", "tool call type " + t->dump());
    }
    auto fn = c.find("function");
    if (fn == c.end() || !fn->is_object()) Fail(at + ".function", "'" + at + ".function' must be an object");
    ChatToolCall call;
    if (auto id = c.find("id"); id != c.end() && !id->is_null()) call.id = String(*id, at + ".id");
    auto fname = fn->find("name");
    if (fname == fn->end() || !fname->is_string() || fname->get<std::string>().empty()) {
      Fail(at + ".function.name", "'" + at + ".function.name' must be a non-empty string");
    }
    call.name = fname->get<std::string>();
    auto args = fn->find("arguments");
    if (args == fn->end() || args->is_null()) {
      call.arguments = "{}";
    } else if (args->is_string()) {
      call.arguments = args->get<std::string>();
    } else if (args->is_object()) {
      call.arguments = args->dump();  // tolerated: some clients send the object itself
    } else {
      Fail(at + ".function.arguments", "'" + at + ".function.arguments' must be a JSON string");
    }
    calls.push_back(std::move(call));
  }
  return calls;
}

bool ValidFunctionName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  }
  return true;
}

// tools, tool_choice, parallel_tool_calls.
void ParseTools(const json& body, OpenAiRequest& r) {
  auto it = body.find("tools");
  if (it != body.end() && !it->is_null()) {
    if (!it->is_array()) Fail("tools", "'tools' must be an array");
    if (it->size() > 128) Fail("tools", "'tools' has more than 128 entries");
    json list = json::array();
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const std::string at = "tools[" + std::to_string(i) + "]";
      if (!t.is_object()) Fail(at, "'" + at + "' must be an object");
      auto type = t.find("type");
      if (type == t.end() || !type->is_string()) Fail(at + ".type", "'" + at + ".type' is required");
      if (*type != "function") Unsupported(at + ".type", "tool type " + type->dump());
      auto fn = t.find("function");
      if (fn == t.end() || !fn->is_object()) Fail(at + ".function", "'" + at + ".function' must be an object");
      ToolFunction f;
      auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || !ValidFunctionName(name->get<std::string>())) {
        Fail(at + ".function.name",
             "'" + at + ".function.name' must be 1-64 characters of a-z, A-Z, 0-9, '_', '-' or '.'");
      }
      f.name = name->get<std::string>();
      for (const ToolFunction& other : r.tools) {
        if (other.name == f.name) Fail(at + ".function.name", "duplicate tool name '" + f.name + "'");
      }
      json entry_fn = json::object();
      entry_fn["name"] = f.name;
      if (auto d = fn->find("description"); d != fn->end() && !d->is_null()) {
        f.description = String(*d, at + ".function.description");
        entry_fn["description"] = f.description;
      }
      if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null()) {
        if (!p->is_object()) Fail(at + ".function.parameters", "'" + at + ".function.parameters' must be a JSON Schema object");
        f.parameters_json = p->dump();
        entry_fn["parameters"] = *p;
      }
      list.push_back(json{{"type", "function"}, {"function", entry_fn}});
      r.tools.push_back(std::move(f));
    }
    if (!r.tools.empty()) r.tools_json = list.dump();
  }
  r.tool_choice = r.tools.empty() ? ToolChoiceMode::kNone : ToolChoiceMode::kAuto;
  if (auto c = body.find("tool_choice"); c != body.end() && !c->is_null()) {
    if (c->is_string()) {
      const std::string s = c->get<std::string>();
      if (s == "none") r.tool_choice = ToolChoiceMode::kNone;
      else if (s == "auto") r.tool_choice = ToolChoiceMode::kAuto;
      else if (s == "required") r.tool_choice = ToolChoiceMode::kRequired;
      else Fail("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", ...}");
    } else if (c->is_object()) {
      auto fn = c->find("function");
      if (c->value("type", "") != "function" || fn == c->end() || !fn->is_object() ||
          !fn->contains("name") || !(*fn)["name"].is_string()) {
        Fail("tool_choice", "'tool_choice' object must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
      }
      r.tool_choice = ToolChoiceMode::kNamed;
      r.tool_choice_name = (*fn)["name"].get<std::string>();
      bool known = false;
      for (const ToolFunction& f : r.tools) known |= f.name == r.tool_choice_name;
      if (!known) Fail("tool_choice", "'tool_choice' names '" + r.tool_choice_name + "', which is not in 'tools'");
    } else {
      Fail("tool_choice", "'tool_choice' must be a string or an object");
    }
    if (r.tools.empty() && r.tool_choice != ToolChoiceMode::kNone) {
      Fail("tool_choice", "'tool_choice' needs 'tools'");
    }
  }
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null()) {
    r.parallel_tool_calls = Bool(*p, "parallel_tool_calls");
  }
}

void ParseMessages(const json& body, const RequestLimits& limits, OpenAiRequest& r) {
  auto it = body.find("messages");
  if (it == body.end()) Fail("messages", "'messages' is required");
  if (!it->is_array() || it->empty()) Fail("messages", "'messages' must be a non-empty array");
  if (static_cast<int>(it->size()) > limits.max_messages) {
    Fail("messages", "'messages' has more than " + std::to_string(limits.max_messages) + " entries");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) Fail(name, "'" + name + "' must be an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) Fail(name + ".role", "'" + name + ".role' must be a string");
    const std::string role_s = role->get<std::string>();
    if (role_s != "system" && role_s != "user" && role_s != "assistant" && role_s != "developer" &&
        role_s != "tool") {
      Unsupported(name + ".role", "message role '" + role_s + "'");
    }
    if (m.contains("function_call")) Unsupported(name + ".function_call", "'function_call'");
    auto content = m.find("content");
    ChatMessage msg;
    msg.role = role_s == "developer" ? "system" : role_s;
    msg.content = content == m.end() ? "" : MessageContent(*content, name + ".content");
    if (auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
      if (role_s != "assistant") Fail(name + ".tool_calls", "only assistant messages have 'tool_calls'");
      msg.tool_calls = ParseMessageToolCalls(*calls, name + ".tool_calls");
    }
    if (role_s == "tool") {
      auto id = m.find("tool_call_id");
      if (id == m.end() || !id->is_string()) {
        Fail(name + ".tool_call_id", "'" + name + ".tool_call_id' is required for tool messages");
      }
      msg.tool_call_id = id->get<std::string>();
    }
    r.messages.push_back(std::move(msg));
  }
}

void ParsePrompt(const json& body, const RequestLimits& limits, OpenAiRequest& r) {
  auto it = body.find("prompt");
  if (it == body.end()) Fail("prompt", "'prompt' is required");
  const json& p = *it;
  if (p.is_string()) {
    r.prompts.emplace_back(p.get<std::string>());
  } else if (p.is_array() && !p.empty() && p[0].is_string()) {
    for (const json& s : p) r.prompts.emplace_back(String(s, "prompt"));
  } else if (p.is_array() && !p.empty() && p[0].is_array()) {
    for (const json& ids : p) r.prompts.emplace_back(TokenIds(ids, "prompt"));
  } else if (p.is_array() && !p.empty()) {
    r.prompts.emplace_back(TokenIds(p, "prompt"));
  } else {
    Fail("prompt", "'prompt' must be a string, an array of strings, or token ids");
  }
  if (static_cast<int>(r.prompts.size()) > limits.max_prompts) {
    Fail("prompt", "'prompt' has more than " + std::to_string(limits.max_prompts) + " prompts");
  }
}

void ParseStop(const json& v, const RequestLimits& limits, OpenAiRequest& r) {
  if (v.is_null()) return;
  if (v.is_string()) {
    r.stop.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const json& s : v) r.stop.push_back(String(s, "stop"));
  } else {
    Fail("stop", "'stop' must be a string or an array of strings");
  }
  if (static_cast<int>(r.stop.size()) > limits.max_stop_strings) {
    Fail("stop", "'stop' has " + std::to_string(r.stop.size()) + " strings; at most " +
                     std::to_string(limits.max_stop_strings) + " are allowed");
  }
  for (const std::string& s : r.stop) {
    if (s.empty()) Fail("stop", "'stop' strings must not be empty");
    if (static_cast<int>(s.size()) > limits.max_stop_string_bytes) {
      Fail("stop", "'stop' strings must be at most " + std::to_string(limits.max_stop_string_bytes) +
                       " bytes");
    }
  }
}

void ParseLogitBias(const json& v, const RequestLimits& limits, SamplingParams& s) {
  if (v.is_null()) return;
  if (!v.is_object()) Fail("logit_bias", "'logit_bias' must be an object of token id -> bias");
  if (static_cast<int>(v.size()) > limits.max_logit_bias_entries) {
    Fail("logit_bias", "'logit_bias' has more than " + std::to_string(limits.max_logit_bias_entries) +
                           " entries");
  }
  for (auto it = v.begin(); it != v.end(); ++it) {
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(it.key(), &used);
      if (used != it.key().size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id > INT32_MAX) Fail("logit_bias", "'logit_bias' key '" + it.key() + "' is not a token id");
    s.logit_bias.push_back(
        LogitBias{static_cast<int32_t>(id), static_cast<float>(Number(it.value(), "logit_bias", -100, 100))});
  }
}

OpenAiRequest Parse(ApiKind kind, const json& body, const RequestLimits& limits) {
  if (!body.is_object()) Fail("", "the request body must be a JSON object");
  OpenAiRequest r;
  r.kind = kind;
  SamplingParams& s = r.sampling;
  // Features that change what the client expects: refuse rather than ignore.
  for (const char* f : {"functions", "function_call", "suffix"}) {
    if (auto it = body.find(f); it != body.end() && !it->is_null()) Unsupported(f, std::string("'") + f + "'");
  }
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    auto format = ParseResponseFormat(*it);
    if (auto* e = std::get_if<ApiError>(&format)) throw FieldError{*e};
    r.response_format = std::get<std::optional<GrammarSpec>>(std::move(format));
  }
  if (auto it = body.find("best_of"); it != body.end() && !it->is_null()) {
    if (Integer(*it, "best_of", 1, 1 << 20) > 1) Unsupported("best_of", "'best_of' > 1");
  }
  if (auto it = body.find("echo"); it != body.end() && !it->is_null() && Bool(*it, "echo")) {
    Unsupported("echo", "'echo'");
  }
  if (kind == ApiKind::kChat) {
    ParseMessages(body, limits, r);
    ParseTools(body, r);
    if (auto it = body.find("add_generation_prompt"); it != body.end()) {
      r.add_generation_prompt = Bool(*it, "add_generation_prompt");
    }
  } else {
    for (const char* f : {"tools", "tool_choice"}) {
      if (auto it = body.find(f); it != body.end() && !it->is_null()) {
        Fail(f, std::string("'") + f + "' is a chat completions field");
      }
    }
    ParsePrompt(body, limits, r);
  }
  if (auto it = body.find("model"); it != body.end() && !it->is_null()) r.model = String(*it, "model");
  auto get = [&](const char* name) -> const json* {
    auto it = body.find(name);
    return it == body.end() || it->is_null() ? nullptr : &*it;
  };
  if (const json* v = get("max_tokens")) r.max_tokens = static_cast<int32_t>(Integer(*v, "max_tokens", 1, INT32_MAX));
  if (const json* v = get("max_completion_tokens")) {
    r.max_tokens = static_cast<int32_t>(Integer(*v, "max_completion_tokens", 1, INT32_MAX));
  }
  if (const json* v = get("temperature")) s.temperature = static_cast<float>(Number(*v, "temperature", 0, 100));
  if (const json* v = get("top_p")) s.top_p = static_cast<float>(Number(*v, "top_p", 0, 1));
  if (const json* v = get("top_k")) s.top_k = static_cast<int32_t>(Integer(*v, "top_k", -1, INT32_MAX));
  if (const json* v = get("min_p")) s.min_p = static_cast<float>(Number(*v, "min_p", 0, 1));
  if (const json* v = get("presence_penalty")) s.presence_penalty = static_cast<float>(Number(*v, "presence_penalty", -2, 2));
  if (const json* v = get("frequency_penalty")) s.frequency_penalty = static_cast<float>(Number(*v, "frequency_penalty", -2, 2));
  if (const json* v = get("repetition_penalty")) s.repetition_penalty = static_cast<float>(Number(*v, "repetition_penalty", 1e-6, 100));
  if (const json* v = get("seed")) s.seed = static_cast<uint64_t>(Integer(*v, "seed", INT64_MIN, INT64_MAX));
  if (const json* v = get("n")) r.n = static_cast<int>(Integer(*v, "n", 1, limits.max_n));
  if (const json* v = get("stop")) ParseStop(*v, limits, r);
  if (const json* v = get("stop_token_ids")) s.stop_token_ids = TokenIds(*v, "stop_token_ids");
  if (s.stop_token_ids.size() > 64) Fail("stop_token_ids", "'stop_token_ids' has more than 64 entries");
  if (const json* v = get("logit_bias")) ParseLogitBias(*v, limits, s);
  if (const json* v = get("ignore_eos")) s.ignore_eos = Bool(*v, "ignore_eos");
  if (const json* v = get("min_tokens")) s.min_tokens = static_cast<int32_t>(Integer(*v, "min_tokens", 0, INT32_MAX));
  if (const json* v = get("stream")) r.stream = Bool(*v, "stream");
  if (const json* v = get("stream_options")) {
    if (!v->is_object()) Fail("stream_options", "'stream_options' must be an object");
    if (auto u = v->find("include_usage"); u != v->end() && !u->is_null()) {
      r.include_usage = Bool(*u, "stream_options.include_usage");
    }
  }
  if (const json* v = get("user")) r.user = String(*v, "user");
  if (const json* v = get("service_tier")) {
    r.service_tier = String(*v, "service_tier");
    if (r.service_tier != "auto" && r.service_tier != "default" && r.service_tier != "flex" &&
        r.service_tier != "priority") {
      Fail("service_tier", "'service_tier' must be 'auto', 'default', 'flex' or 'priority'");
    }
  }
  if (kind == ApiKind::kChat) {
    if (const json* v = get("logprobs")) r.want_logprobs = Bool(*v, "logprobs");
    if (const json* v = get("top_logprobs")) {
      const int32_t k = static_cast<int32_t>(Integer(*v, "top_logprobs", 0, 20));
      if (!r.want_logprobs) Fail("top_logprobs", "'top_logprobs' requires 'logprobs': true");
      s.logprobs = k;
    } else if (r.want_logprobs) {
      s.logprobs = 0;
    }
  } else if (const json* v = get("logprobs")) {
    s.logprobs = static_cast<int32_t>(Integer(*v, "logprobs", 0, 20));
    r.want_logprobs = true;
  }
  return r;
}

// The DOM parser, remembering which top-level field's value is being read, so that a syntax
// error or a number out of range (1e999) inside that value names the field as the error's
// `param`. Once the value is complete the field is forgotten: an error between fields (a
// missing comma, a trailing comma, a truncated body) is the body's, with `param` null.
class FieldTrackingSax : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  using Base = nlohmann::detail::json_sax_dom_parser<json>;
  explicit FieldTrackingSax(json& root) : Base(root, /*allow_exceptions_=*/true) {}
  bool start_object(std::size_t n) { ++depth_; return Base::start_object(n); }
  bool end_object() { return Ended(Base::end_object()); }
  bool start_array(std::size_t n) { ++depth_; return Base::start_array(n); }
  bool end_array() { return Ended(Base::end_array()); }
  bool key(json::string_t& k) {
    if (depth_ == 1) field_ = k;
    return Base::key(k);
  }
  bool null() { return Scalar(Base::null()); }
  bool boolean(bool v) { return Scalar(Base::boolean(v)); }
  bool number_integer(json::number_integer_t v) { return Scalar(Base::number_integer(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return Scalar(Base::number_unsigned(v)); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return Scalar(Base::number_float(v, s));
  }
  bool string(json::string_t& v) { return Scalar(Base::string(v)); }
  const std::string& field() const { return field_; }

 private:
  bool Ended(bool ok) {
    if (--depth_ <= 1) field_.clear();
    return ok;
  }
  bool Scalar(bool ok) {
    if (depth_ <= 1) field_.clear();
    return ok;
  }
  int depth_ = 0;
  std::string field_;
};

}  // namespace

std::variant<json, ApiError> ParseRequestJson(std::string_view body) {
  json parsed;
  {
    // NOTE: nlohmann's parser recurses per nesting level; cap depth before parsing so a body
    // of 1,000,000 '[' cannot exhaust the I/O thread's stack.
    int depth = 0, max_depth = 0;
    bool in_string = false, escaped = false;
    for (char c : body) {
      if (in_string) {
        if (escaped) escaped = false;
        else if (c == '\\') escaped = true;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        max_depth = std::max(max_depth, ++depth);
        if (max_depth > 64) return InvalidRequest("the request body nests deeper than 64 levels", "");
      } else if (c == ']' || c == '}') {
        --depth;
      }
    }
  }
  FieldTrackingSax sax(parsed);
  try {
    json::sax_parse(body, &sax);
  } catch (const json::exception& e) {
    return InvalidRequest(std::string("the request body is not valid JSON: ") + e.what(), sax.field());
  }
  return parsed;
}

std::variant<OpenAiRequest, ApiError> ParseOpenAiRequest(ApiKind kind, std::string_view body,
                                                         const RequestLimits& limits) {
  auto json_or = ParseRequestJson(body);
  if (auto* err = std::get_if<ApiError>(&json_or)) return *err;
  const json& parsed = std::get<json>(json_or);
  try {
    OpenAiRequest r = Parse(kind, parsed, limits);
    if (r.response_format) RestoreSchemaOrder(body, *r.response_format);
    return r;
  } catch (const FieldError& e) {
    return e.error;
  } catch (const json::exception& e) {
    return InvalidRequest(std::string("invalid request: ") + e.what(), "");
  }
}

}  // namespace llmux::server
