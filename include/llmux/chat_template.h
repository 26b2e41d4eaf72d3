// Chat templates: turn a conversation into the prompt text a model was trained on.
//
// A ChatTemplate is the model's own `chat_template` (a Jinja template from
// tokenizer_config.json) compiled once at start-up by llmux's Jinja-subset engine, or one of
// a few built-in templates. Rendering matches the reference renderer @huggingface/jinja
// character for character (see docs/chat_templates.md for the supported subset).
#pragma once

#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmux/status.h"

namespace llmux {

// A tool call made by the assistant in an earlier turn (OpenAI `tool_calls[]`).
struct ChatToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON text as the client sent it
};

// One turn of a conversation. `content` is plain text: the HTTP layer flattens OpenAI
// content-part lists ({type: text, text}) before calling Render; a null content is "" (as
// vLLM renders it).
struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant" | "tool" | anything the template accepts
  std::string content;
  // Assistant turns: the template sees `tool_calls` as [{id, type: "function", function:
  // {name, arguments}}] with `arguments` a dict when it is a JSON object (as vLLM and HF
  // pass it), else the string. Absent from the message when empty.
  std::vector<ChatToolCall> tool_calls = {};
  std::string tool_call_id = {};  // tool turns: the call answered ("" = absent)
};

// What a template may see besides the messages (HF's apply_chat_template arguments).
struct ChatRenderOptions {
  bool add_generation_prompt = true;
  // JSON text of the `tools` variable: a list of {type: "function", function: {name,
  // description, parameters}}. "" leaves `tools` undefined.
  std::string tools_json = {};
};

// Variables a template sees besides `messages` and `add_generation_prompt`.
struct ChatTemplateContext {
  std::string bos_token;
  std::string eos_token;
  // Further string variables (e.g. {"pad_token", "<pad>"}), in the order given.
  std::vector<std::pair<std::string, std::string>> extra_variables;
  // Local wall-clock time for strftime_now(); empty means the system clock. Tests inject a
  // fixed time here so renders are deterministic.
  std::function<std::tm()> local_time;
};

// A compiled chat template. Immutable after creation: Render is const and may be called
// from any number of threads at once.
class ChatTemplate {
 public:
  // Compiles `template_source`. Fails with InvalidArgument naming the line and column (1-based)
  // and the construct on a syntax error or on a construct llmux does not support (e.g.
  // {% include %}, {% call %}, an unknown filter, test or method), so a bad template is found
  // at start-up rather than at the first request.
  static StatusOr<std::unique_ptr<ChatTemplate>> Create(std::string template_source,
                                                        ChatTemplateContext context);

  // Reads a tokenizer_config.json: its `chat_template` (a string, or a list of
  // {name, template} from which "default" is taken) and its bos_token / eos_token (strings or
  // {content: ...} objects). NotFound when the file has no chat_template; DataLoss when the
  // file is not valid JSON; InvalidArgument as Create for a bad template.
  static StatusOr<std::unique_ptr<ChatTemplate>> FromTokenizerConfig(
      const std::filesystem::path& tokenizer_config_path);

  // A built-in template: "chatml", "llama3", "llama2" or "plain". NotFound for another name.
  static StatusOr<std::unique_ptr<ChatTemplate>> Builtin(std::string_view name,
                                                         ChatTemplateContext context = {});

  // The value of the `model.chat_template` config key: "" (use the model's own template from
  // tokenizer_config.json), "builtin:NAME" or "file:PATH" (a Jinja file). bos/eos tokens come
  // from `tokenizer_config_path` in every case (empty when that file is absent and a template
  // is given by the key). Errors as the functions above; InvalidArgument for another prefix.
  static StatusOr<std::unique_ptr<ChatTemplate>> FromSpec(
      std::string_view spec, const std::filesystem::path& tokenizer_config_path);

  // Names accepted by Builtin().
  static std::vector<std::string> BuiltinNames();

  virtual ~ChatTemplate() = default;

  // Renders `messages` (in order). With add_generation_prompt the template appends the
  // header that opens the assistant's reply (when the template supports it). Returns the
  // prompt text, or InvalidArgument with the template's message when it calls
  // raise_exception (e.g. "System role not supported") or a runtime error's position and
  // reason; callers report it to the user as a bad request.
  virtual StatusOr<std::string> Render(std::span<const ChatMessage> messages,
                                       bool add_generation_prompt) const = 0;
  // Same, with tools. InvalidArgument when options.tools_json is not a JSON list.
  virtual StatusOr<std::string> Render(std::span<const ChatMessage> messages,
                                       const ChatRenderOptions& options) const = 0;

  // The template text this object was compiled from.
  virtual const std::string& source() const = 0;
};

}  // namespace llmux
