// Tool calls in model output: which format a chat template asks the model to write, and the
// parser that turns generated text into OpenAI `tool_calls` (whole responses and SSE deltas).
//
// Formats (docs/api.md "Tool calling"):
//   kHermes     Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>`,
//               any number of blocks, optionally after some content.
//   kLlama3Json Llama 3.1/3.2 JSON tool calling (Meta's documented prompt format): the whole
//               reply is `{"name": N, "parameters": {...}}` (several separated by ';').
//
// `arguments` of a call is the JSON text of the arguments value exactly as the model wrote it
// (validated as JSON), so that streamed fragments concatenate to the non-streamed value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmux::server {

enum class ToolCallFormat { kNone, kHermes, kLlama3Json };

// The format the template's tool instructions ask for: kHermes when it mentions <tool_call>,
// kLlama3Json when it is a Llama-3 header template that describes `"parameters"`, else kNone.
ToolCallFormat ToolCallFormatForTemplate(std::string_view template_source);
const char* ToolCallFormatName(ToolCallFormat format);

// "call_" + 24 random alphanumerics (OpenAI's shape).
std::string NewToolCallId();

// One streamed piece of a tool call. The first delta of a call has `first` set and carries
// its name (arguments may be empty); later ones carry argument text only.
struct ToolCallDelta {
  int index = 0;
  bool first = false;
  std::string name;
  std::string arguments;
};

struct ToolStreamDelta {
  std::string content;
  std::vector<ToolCallDelta> calls;
  bool empty() const { return content.empty() && calls.empty(); }
};

// Incremental parser of one choice's text. Content outside tool calls passes through (text
// that may start a tool call is held back until it is decided); whitespace after or between
// calls is dropped. A block that turns out not to be a tool call before anything of it was
// emitted falls back to content. Not thread-safe; one per choice.
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolCallFormat format) : format_(format) {}

  // Feeds the next piece of generated text; returns what can be emitted now.
  ToolStreamDelta Push(std::string_view text);
  // End of the output: emits whatever was held back (an unclosed but complete call counts).
  ToolStreamDelta Finish();
  // Calls begun so far.
  int num_calls() const { return num_calls_; }

 private:
  enum class Mode { kStart, kContent, kBlock, kPlain };
  void Run(ToolStreamDelta& out, bool at_end);
  void RunContent(ToolStreamDelta& out, bool at_end);
  void RunBlock(ToolStreamDelta& out, bool at_end);
  void EmitContent(ToolStreamDelta& out, std::string_view text);

  const ToolCallFormat format_;
  Mode mode_ = Mode::kStart;
  std::string pending_;    // text not yet decided (content mode) or the current block
  std::string block_prefix_;  // Llama 3: what preceded the block's '{' (for a fall-back)
  std::string held_ws_;    // trailing whitespace of the content so far, emitted before more text
  int num_calls_ = 0;
  // Current block (mode kBlock).
  bool block_started_ = false;  // its first delta went out
  size_t args_sent_ = 0;        // bytes of its arguments sent
};

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // JSON text
};

struct ParsedToolOutput {
  std::optional<std::string> content;  // nullopt when the reply is only tool calls
  std::vector<ParsedToolCall> calls;
};

// Parses a whole reply with the streaming parser. When any call's arguments are not valid JSON
// the whole text is returned as content (no calls).
ParsedToolOutput ParseToolCalls(ToolCallFormat format, std::string_view text);

}  // namespace llmux::server
