#include "server/responses_api.h"

#include <random>

#include "server/field_error.h"

namespace llmux::server {
namespace {

using json = nlohmann::ordered_json;

// Parse failures travel as parse::FieldError inside this file only (server/field_error.h).
using parse::Fail;
using parse::FieldError;
using parse::Unsupported;

std::string RandomHex(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Message content: a string, or input_text / output_text parts.
std::string ItemText(const json& content, const std::string& name) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) Fail(name, "'" + name + "' must be a string or an array of parts");
  std::string text;
  for (size_t k = 0; k < content.size(); ++k) {
    const json& part = content[k];
    const std::string at = name + "[" + std::to_string(k) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      Fail(at, "'" + at + "' must be an object with a 'type'");
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "input_text" && type != "output_text") Unsupported(at + ".type", "content part type '" + type + "'");
    if (!part.contains("text") || !part["text"].is_string()) Fail(at + ".text", "'" + at + ".text' must be a string");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::string RequiredString(const json& item, const char* key, const std::string& at) {
  auto it = item.find(key);
  if (it == item.end() || !it->is_string()) {
    Fail(at + "." + key, "'" + at + "." + key + "' must be a string");
  }
  return it->get<std::string>();
}

// `input` -> chat messages (function_call items become an assistant turn's tool_calls).
json InputMessages(const json& body) {
  json messages = json::array();
  if (auto it = body.find("instructions"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) Fail("instructions", "'instructions' must be a string");
    messages.push_back({{"role", "system"}, {"content", it->get<std::string>()}});
  }
  auto input = body.find("input");
  if (input == body.end() || input->is_null()) Fail("input", "'input' is required");
  if (input->is_string()) {
    messages.push_back({{"role", "user"}, {"content", input->get<std::string>()}});
    return messages;
  }
  if (!input->is_array() || input->empty()) {
    Fail("input", "'input' must be a string or a non-empty array of items");
  }
  for (size_t i = 0; i < input->size(); ++i) {
    const json& item = (*input)[i];
    const std::string at = "input[" + std::to_string(i) + "]";
    if (!item.is_object()) Fail(at, "'" + at + "' must be an object");
    const std::string type = item.contains("type") && item["type"].is_string()
                                 ? item["type"].get<std::string>()
                                 : (item.contains("role") ? "message" : "");
    if (type == "message") {
      const std::string role = RequiredString(item, "role", at);
      if (role != "user" && role != "assistant" && role != "system" && role != "developer") {
        Fail(at + ".role", "'" + at + ".role' must be user, assistant, system or developer");
      }
      if (!item.contains("content")) Fail(at + ".content", "'" + at + ".content' is required");
      messages.push_back({{"role", role}, {"content", ItemText(item["content"], at + ".content")}});
    } else if (type == "function_call") {
      json call = {{"id", RequiredString(item, "call_id", at)},
                   {"type", "function"},
                   {"function",
                    {{"name", RequiredString(item, "name", at)},
                     {"arguments", RequiredString(item, "arguments", at)}}}};
      // Consecutive calls belong to one assistant turn.
      if (!messages.empty() && messages.back()["role"] == "assistant" &&
          messages.back().contains("tool_calls")) {
        messages.back()["tool_calls"].push_back(std::move(call));
      } else {
        messages.push_back({{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({call})}});
      }
    } else if (type == "function_call_output") {
      auto output = item.find("output");
      if (output == item.end()) Fail(at + ".output", "'" + at + ".output' is required");
      messages.push_back({{"role", "tool"},
                          {"tool_call_id", RequiredString(item, "call_id", at)},
                          {"content", ItemText(*output, at + ".output")}});
    } else if (type.empty()) {
      Fail(at + ".type", "'" + at + ".type' is required");
    } else {
      Unsupported(at + ".type", "input item type '" + type + "'");
    }
  }
  return messages;
}

// Responses tools are flat ({type, name, description, parameters, strict}); chat nests them.
json ChatTools(const json& tools) {
  if (!tools.is_array()) Fail("tools", "'tools' must be an array");
  json out = json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string at = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) Fail(at, "'" + at + "' must be an object");
    if (!t.contains("type") || t["type"] != "function") {
      Unsupported(at + ".type", "tool type " + (t.contains("type") ? t["type"].dump() : "(none)"));
    }
    json fn = json::object();
    for (const char* key : {"name", "description", "parameters"}) {
      if (t.contains(key)) fn[key] = t[key];
    }
    out.push_back({{"type", "function"}, {"function", fn}});
  }
  return out;
}

// A chat-parser error names chat fields; name the Responses field instead.
ApiError RenameParam(ApiError e) {
  std::string& p = e.param;
  if (p == "max_tokens") p = "max_output_tokens";
  else if (p == "response_format") p = "text.format";
  else if (p.starts_with("messages")) p = "input";
  else if (p.starts_with("tools[")) {
    if (const size_t f = p.find(".function"); f != std::string::npos) p.erase(f, 9);
  }
  return e;
}

OpenAiRequest Translate(const json& body, const RequestLimits& limits, json& echo) {
  if (!body.is_object()) Fail("", "the request body must be a JSON object");
  if (auto it = body.find("store"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) Fail("store", "'store' must be a boolean");
    if (it->get<bool>()) {
      Fail("store", "'store': true is not supported: llmux keeps no responses; send 'store': false",
           "unsupported_feature");
    }
  }
  if (auto it = body.find("previous_response_id"); it != body.end() && !it->is_null()) {
    Fail("previous_response_id",
         "'previous_response_id' is not supported: llmux keeps no responses; send the earlier "
         "turns in 'input'",
         "unsupported_feature");
  }
  for (const char* f : {"background", "conversation", "prompt", "reasoning"}) {
    if (auto it = body.find(f); it != body.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>())) {
      Unsupported(f, std::string("'") + f + "'");
    }
  }
  json chat = json::object();
  chat["messages"] = InputMessages(body);
  for (const char* key : {"model", "temperature", "top_p", "stream", "user", "service_tier",
                          "parallel_tool_calls", "tool_choice"}) {
    if (auto it = body.find(key); it != body.end()) chat[key] = *it;
  }
  if (auto it = body.find("max_output_tokens"); it != body.end()) chat["max_tokens"] = *it;
  if (auto it = body.find("tools"); it != body.end() && !it->is_null()) chat["tools"] = ChatTools(*it);
  // tool_choice {type: function, name} (flat) -> chat's {type: function, function: {name}}.
  if (auto it = body.find("tool_choice"); it != body.end() && it->is_object() &&
                                          it->contains("name") && !it->contains("function")) {
    chat["tool_choice"] = {{"type", (*it).value("type", "")}, {"function", {{"name", (*it)["name"]}}}};
  }
  json text_format = {{"type", "text"}};
  if (auto it = body.find("text"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) Fail("text", "'text' must be an object");
    if (auto f = it->find("format"); f != it->end() && !f->is_null()) {
      if (!f->is_object() || !f->contains("type") || !(*f)["type"].is_string()) {
        Fail("text.format", "'text.format' must be an object with a 'type'");
      }
      text_format = *f;
      const std::string type = (*f)["type"].get<std::string>();
      if (type == "json_schema") {
        // The chat form of the same constraint (response_format), for the grammar engine.
        json js = {{"name", f->value("name", "response")}};
        if (f->contains("schema")) js["schema"] = (*f)["schema"];
        if (f->contains("strict")) js["strict"] = (*f)["strict"];
        chat["response_format"] = {{"type", "json_schema"}, {"json_schema", js}};
      } else if (type == "json_object") {
        chat["response_format"] = {{"type", "json_object"}};
      } else if (type != "text") {
        Fail("text.format.type", "'text.format.type' must be text, json_schema or json_object");
      }
    }
  }
  auto parsed = ParseOpenAiRequest(ApiKind::kChat, chat.dump(), limits);
  if (auto* err = std::get_if<ApiError>(&parsed)) throw FieldError{RenameParam(*err)};
  OpenAiRequest r = std::move(std::get<OpenAiRequest>(parsed));
  r.responses_api = true;

  echo = json::object();
  echo["instructions"] = body.contains("instructions") ? body["instructions"] : json(nullptr);
  echo["max_output_tokens"] = r.max_tokens ? json(*r.max_tokens) : json(nullptr);
  echo["parallel_tool_calls"] = r.parallel_tool_calls;
  echo["temperature"] = r.sampling.temperature;
  echo["top_p"] = r.sampling.top_p;
  switch (r.tool_choice) {
    case ToolChoiceMode::kAuto:
      echo["tool_choice"] = "auto";
      break;
    case ToolChoiceMode::kNone:
      echo["tool_choice"] = "none";
      break;
    case ToolChoiceMode::kRequired:
      echo["tool_choice"] = "required";
      break;
    case ToolChoiceMode::kNamed:
      echo["tool_choice"] = {{"type", "function"}, {"name", r.tool_choice_name}};
      break;
  }
  echo["tools"] = body.contains("tools") && body["tools"].is_array() ? body["tools"] : json::array();
  echo["text"] = {{"format", text_format}};
  echo["user"] = body.contains("user") ? body["user"] : json(nullptr);
  echo["metadata"] = body.contains("metadata") && body["metadata"].is_object() ? body["metadata"]
                                                                                : json::object();
  return r;
}

}  // namespace

std::variant<OpenAiRequest, ApiError> ParseResponsesRequest(std::string_view body,
                                                            const RequestLimits& limits) {
  auto parsed_or = ParseRequestJson(body);
  if (auto* err = std::get_if<ApiError>(&parsed_or)) return *err;
  const json& parsed = std::get<json>(parsed_or);
  try {
    json echo;
    OpenAiRequest r = Translate(parsed, limits, echo);
    r.responses_echo = echo.dump();
    return r;
  } catch (const FieldError& e) {
    return e.error;
  } catch (const json::exception& e) {
    return InvalidRequest(std::string("invalid request: ") + e.what(), "");
  }
}

ResponsesEvents::ResponsesEvents(const OpenAiRequest& request, std::string id, std::string model,
                                 int64_t created, std::string service_tier)
    : id_(std::move(id)),
      model_(std::move(model)),
      created_(created),
      service_tier_(std::move(service_tier)) {
  try {
    echo_ = json::parse(request.responses_echo.empty() ? "{}" : request.responses_echo);
  } catch (const json::exception&) {
    echo_ = json::object();
  }
}

std::string ResponsesEvents::Event(const char* type, json payload) {
  json e = {{"type", type}, {"sequence_number", sequence_++}};
  for (auto it = payload.begin(); it != payload.end(); ++it) e[it.key()] = it.value();
  return std::string("event: ") + type + "\ndata: " + Dump(e) + "\n\n";
}

ResponsesEvents::json ResponsesEvents::ItemJson(const Item& item, bool done) const {
  const char* status = done ? "completed" : "in_progress";
  if (item.is_call) {
    return {{"type", "function_call"}, {"id", item.id},          {"call_id", item.call_id},
            {"name", item.name},       {"arguments", item.text}, {"status", status}};
  }
  json content = json::array();
  if (done) content.push_back({{"type", "output_text"}, {"text", item.text}, {"annotations", json::array()}});
  return {{"type", "message"}, {"id", item.id}, {"status", status}, {"role", "assistant"},
          {"content", content}};
}

ResponsesEvents::json ResponsesEvents::ResponseJson(const char* status, const ResponsesUsage* usage,
                                                    const std::string& finish_reason) const {
  json output = json::array();
  if (usage != nullptr) {
    for (const Item& item : items_) output.push_back(ItemJson(item, true));
  }
  json r = {{"id", id_}, {"object", "response"}, {"created_at", created_}, {"status", status},
            {"error", nullptr}};
  r["incomplete_details"] = finish_reason == "length" ? json{{"reason", "max_output_tokens"}}
                                                      : json(nullptr);
  r["model"] = model_;
  r["output"] = output;
  for (auto it = echo_.begin(); it != echo_.end(); ++it) r[it.key()] = it.value();
  r["previous_response_id"] = nullptr;
  r["store"] = false;
  r["truncation"] = "disabled";
  if (!service_tier_.empty()) r["service_tier"] = service_tier_;
  if (usage != nullptr) {
    r["usage"] = {{"input_tokens", usage->input_tokens},
                  {"input_tokens_details", {{"cached_tokens", usage->cached_tokens}}},
                  {"output_tokens", usage->output_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", usage->input_tokens + usage->output_tokens}};
  } else {
    r["usage"] = nullptr;
  }
  return r;
}

std::string ResponsesEvents::Start() {
  const json r = ResponseJson("in_progress", nullptr, "");
  std::string out = Event("response.created", {{"response", r}});
  out += Event("response.in_progress", {{"response", r}});
  return out;
}

ResponsesEvents::Item& ResponsesEvents::OpenMessage(std::string& out) {
  if (message_index_ < 0 || !items_[message_index_].open) {
    items_.push_back(Item{false, RandomHex("msg_"), "", "", "", true});
    message_index_ = static_cast<int>(items_.size()) - 1;
    out += Event("response.output_item.added",
                 {{"output_index", message_index_}, {"item", ItemJson(items_.back(), false)}});
    out += Event("response.content_part.added",
                 {{"item_id", items_.back().id},
                  {"output_index", message_index_},
                  {"content_index", 0},
                  {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
  }
  return items_[message_index_];
}

std::string ResponsesEvents::Delta(const ToolStreamDelta& delta,
                                   const std::vector<std::string>& call_ids) {
  std::string out;
  if (!delta.content.empty()) {
    Item& m = OpenMessage(out);
    m.text += delta.content;
    out += Event("response.output_text.delta", {{"item_id", m.id},
                                                {"output_index", message_index_},
                                                {"content_index", 0},
                                                {"delta", delta.content}});
  }
  for (const ToolCallDelta& d : delta.calls) {
    if (d.first) {
      Item call{true, RandomHex("fc_"), call_ids.at(d.index), d.name, "", true};
      items_.push_back(std::move(call));
      out += Event("response.output_item.added",
                   {{"output_index", items_.size() - 1}, {"item", ItemJson(items_.back(), false)}});
    }
    // The d.index-th call item.
    int seen = -1;
    for (size_t k = 0; k < items_.size(); ++k) {
      if (!items_[k].is_call || ++seen != d.index) continue;
      if (!d.arguments.empty()) {
        items_[k].text += d.arguments;
        out += Event("response.function_call_arguments.delta",
                     {{"item_id", items_[k].id}, {"output_index", k}, {"delta", d.arguments}});
      }
      break;
    }
  }
  return out;
}

std::string ResponsesEvents::CloseItems() {
  std::string out;
  for (size_t k = 0; k < items_.size(); ++k) {
    Item& item = items_[k];
    if (!item.open) continue;
    item.open = false;
    if (item.is_call) {
      out += Event("response.function_call_arguments.done",
                   {{"item_id", item.id}, {"output_index", k}, {"arguments", item.text}});
    } else {
      out += Event("response.output_text.done", {{"item_id", item.id},
                                                 {"output_index", k},
                                                 {"content_index", 0},
                                                 {"text", item.text}});
      out += Event("response.content_part.done",
                   {{"item_id", item.id},
                    {"output_index", k},
                    {"content_index", 0},
                    {"part", {{"type", "output_text"}, {"text", item.text}, {"annotations", json::array()}}}});
    }
    out += Event("response.output_item.done", {{"output_index", k}, {"item", ItemJson(item, true)}});
  }
  return out;
}

std::string ResponsesEvents::Completed(const ResponsesUsage& usage, const std::string& finish_reason) {
  std::string out = CloseItems();
  const bool incomplete = finish_reason == "length";
  out += Event(incomplete ? "response.incomplete" : "response.completed",
               {{"response", ResponseJson(incomplete ? "incomplete" : "completed", &usage, finish_reason)}});
  return out;
}

std::string ResponsesEvents::Body(const ParsedToolOutput& output,
                                  const std::vector<std::string>& call_ids,
                                  const ResponsesUsage& usage, const std::string& finish_reason) {
  items_.clear();
  if (output.content) items_.push_back(Item{false, RandomHex("msg_"), "", "", *output.content, false});
  for (size_t k = 0; k < output.calls.size(); ++k) {
    items_.push_back(Item{true, RandomHex("fc_"), call_ids.at(k), output.calls[k].name,
                          output.calls[k].arguments, false});
  }
  const bool incomplete = finish_reason == "length";
  return Dump(ResponseJson(incomplete ? "incomplete" : "completed", &usage, finish_reason));
}

}  // namespace llmux::server
