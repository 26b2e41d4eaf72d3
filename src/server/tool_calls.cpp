#include "server/tool_calls.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <random>

namespace llmux::server {
namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

bool IsWs(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

size_t SkipWs(std::string_view s, size_t p) {
  while (p < s.size() && IsWs(s[p])) ++p;
  return p;
}

enum class Scan { kOk, kIncomplete, kError };

struct Step {
  Scan state;
  size_t end = 0;  // kOk: one past the scanned item
};

// A JSON string starting at s[p] == '"'.
Step ScanString(std::string_view s, size_t p) {
  for (size_t i = p + 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return {Scan::kOk, i + 1};
    } else if (static_cast<unsigned char>(s[i]) < 0x20) {
      return {Scan::kError};
    }
  }
  return {Scan::kIncomplete};
}

// Any JSON value starting at s[p] (not whitespace). Containers are matched by nesting depth
// only; their full validity is checked once the call is complete.
Step ScanValue(std::string_view s, size_t p) {
  const char c = s[p];
  if (c == '"') return ScanString(s, p);
  if (c == '{' || c == '[') {
    int depth = 0;
    for (size_t i = p; i < s.size(); ++i) {
      const char d = s[i];
      if (d == '"') {
        const Step str = ScanString(s, i);
        if (str.state != Scan::kOk) return str;
        i = str.end - 1;
      } else if (d == '{' || d == '[') {
        ++depth;
      } else if (d == '}' || d == ']') {
        if (--depth == 0) return {Scan::kOk, i + 1};
      }
    }
    return {Scan::kIncomplete};
  }
  size_t i = p;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-' ||
                          s[i] == '+' || s[i] == '.')) {
    ++i;
  }
  if (i == p) return {Scan::kError};
  if (i == s.size()) return {Scan::kIncomplete};  // "12" may continue as "123"
  return {Scan::kOk, i};
}

std::optional<std::string> DecodeString(std::string_view token) {
  try {
    const nlohmann::json j = nlohmann::json::parse(token);
    if (j.is_string()) return j.get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

// What is known so far of a call object `{"name": ..., "arguments": ...}` that starts at s[0].
struct CallScan {
  Scan state = Scan::kIncomplete;  // kOk: the object is closed at `end`
  std::optional<std::string> name;
  std::optional<size_t> args_begin, args_end;
  size_t end = 0;
};

CallScan ScanCall(std::string_view s) {
  CallScan r;
  auto fail = [&r] {
    r.state = Scan::kError;
    return r;
  };
  size_t p = SkipWs(s, 0);
  if (p == s.size()) return r;
  if (s[p] != '{') return fail();
  ++p;
  for (bool first = true;; first = false) {
    p = SkipWs(s, p);
    if (p == s.size()) return r;
    if (first && s[p] == '}') {
      r.state = Scan::kOk;
      r.end = p + 1;
      return r;
    }
    if (s[p] != '"') return fail();
    const Step key = ScanString(s, p);
    if (key.state != Scan::kOk) return key.state == Scan::kError ? fail() : r;
    const std::optional<std::string> name = DecodeString(s.substr(p, key.end - p));
    if (!name) return fail();
    p = SkipWs(s, key.end);
    if (p == s.size()) return r;
    if (s[p] != ':') return fail();
    p = SkipWs(s, p + 1);
    if (p == s.size()) return r;
    const bool is_args = *name == "arguments" || *name == "parameters";
    if (is_args) {
      if (r.args_begin) return fail();  // both keys: ambiguous
      r.args_begin = p;
    }
    if (*name == "name" && s[p] != '"') return fail();
    const Step value = ScanValue(s, p);
    if (value.state == Scan::kError) return fail();
    if (value.state == Scan::kIncomplete) return r;
    if (is_args) r.args_end = value.end;
    if (*name == "name") {
      r.name = DecodeString(s.substr(p, value.end - p));
      if (!r.name || r.name->empty()) return fail();
    }
    p = SkipWs(s, value.end);
    if (p == s.size()) return r;
    if (s[p] == '}') {
      r.state = Scan::kOk;
      r.end = p + 1;
      return r;
    }
    if (s[p] != ',') return fail();
    ++p;
  }
}

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n) {
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

ToolCallDelta& DeltaFor(ToolStreamDelta& out, int index) {
  if (out.calls.empty() || out.calls.back().index != index) {
    out.calls.push_back(ToolCallDelta{index, false, "", ""});
  }
  return out.calls.back();
}

}  // namespace

ToolCallFormat ToolCallFormatForTemplate(std::string_view source) {
  if (source.find(kHermesOpen) != std::string_view::npos) return ToolCallFormat::kHermes;
  if (source.find("<|start_header_id|>") != std::string_view::npos &&
      source.find("\"parameters\"") != std::string_view::npos) {
    return ToolCallFormat::kLlama3Json;
  }
  return ToolCallFormat::kNone;
}

const char* ToolCallFormatName(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::kNone:
      return "none";
    case ToolCallFormat::kHermes:
      return "hermes";
    case ToolCallFormat::kLlama3Json:
      return "llama3_json";
  }
  return "none";
}

std::string NewToolCallId() {
  static constexpr char kAlnum[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[rng() % (sizeof(kAlnum) - 1)];
  return id;
}

ToolStreamDelta ToolCallStreamParser::Push(std::string_view text) {
  ToolStreamDelta out;
  pending_.append(text);
  Run(out, /*at_end=*/false);
  return out;
}

ToolStreamDelta ToolCallStreamParser::Finish() {
  ToolStreamDelta out;
  Run(out, /*at_end=*/true);
  if (mode_ == Mode::kContent || mode_ == Mode::kPlain || mode_ == Mode::kStart) {
    EmitContent(out, pending_);
    pending_.clear();
  }
  if (num_calls_ == 0) out.content += held_ws_;
  held_ws_.clear();
  return out;
}

void ToolCallStreamParser::EmitContent(ToolStreamDelta& out, std::string_view text) {
  size_t keep = text.size();
  while (keep > 0 && IsWs(text[keep - 1])) --keep;
  if (keep == 0) {
    held_ws_.append(text);
    return;
  }
  out.content += held_ws_;
  out.content.append(text.substr(0, keep));
  held_ws_.assign(text.substr(keep));
}

void ToolCallStreamParser::Run(ToolStreamDelta& out, bool at_end) {
  // Each pass consumes pending_ or changes mode; stop when a mode waits for more text.
  for (int guard = 0; guard < 1 << 20; ++guard) {
    const Mode before = mode_;
    const size_t size_before = pending_.size();
    switch (mode_) {
      case Mode::kStart: {
        if (format_ == ToolCallFormat::kHermes) {
          mode_ = Mode::kContent;
          break;
        }
        if (format_ == ToolCallFormat::kNone) {
          mode_ = Mode::kPlain;
          break;
        }
        // Llama 3 JSON: the reply is a call when it opens with '{' (after an optional
        // <|python_tag|>, and ';' between calls).
        size_t p = SkipWs(pending_, 0);
        if (num_calls_ > 0 && p < pending_.size() && pending_[p] == ';') p = SkipWs(pending_, p + 1);
        std::string_view rest = std::string_view(pending_).substr(p);
        if (rest.starts_with(kPythonTag)) {
          p = SkipWs(pending_, p + kPythonTag.size());
          rest = std::string_view(pending_).substr(p);
        } else if (!at_end && !rest.empty() && kPythonTag.starts_with(rest)) {
          return;  // maybe <|python_tag|>
        }
        if (rest.empty()) {
          if (at_end) mode_ = Mode::kPlain;
          else return;
          break;
        }
        if (rest[0] == '{') {
          block_prefix_ = pending_.substr(0, p);
          pending_.erase(0, p);
          mode_ = Mode::kBlock;
        } else {
          mode_ = Mode::kPlain;
        }
        break;
      }
      case Mode::kPlain:
        EmitContent(out, pending_);
        pending_.clear();
        return;
      case Mode::kContent:
        RunContent(out, at_end);
        break;
      case Mode::kBlock:
        RunBlock(out, at_end);
        break;
    }
    if (mode_ == before && pending_.size() == size_before) return;
  }
}

void ToolCallStreamParser::RunContent(ToolStreamDelta& out, bool at_end) {
  const size_t tag = pending_.find(kHermesOpen);
  if (tag != std::string::npos) {
    EmitContent(out, std::string_view(pending_).substr(0, tag));
    held_ws_.clear();  // whitespace before a call is not content
    pending_.erase(0, tag + kHermesOpen.size());
    mode_ = Mode::kBlock;
    return;
  }
  const size_t hold = at_end ? 0 : PartialTagSuffix(pending_, kHermesOpen);
  EmitContent(out, std::string_view(pending_).substr(0, pending_.size() - hold));
  pending_.erase(0, pending_.size() - hold);
}

void ToolCallStreamParser::RunBlock(ToolStreamDelta& out, bool at_end) {
  const bool hermes = format_ == ToolCallFormat::kHermes;
  const CallScan scan = ScanCall(pending_);
  auto fall_back = [&] {
    // Not a tool call after all: the block's text is content.
    EmitContent(out, (hermes ? std::string(kHermesOpen) : block_prefix_) + pending_);
    pending_.clear();
    mode_ = hermes ? Mode::kContent : Mode::kPlain;
  };
  if (scan.state == Scan::kError) {
    if (!block_started_) return fall_back();
    // NOTE: a call already streamed cannot be taken back; the rest of the block is dropped.
    pending_.clear();
    block_started_ = false;
    args_sent_ = 0;
    mode_ = hermes ? Mode::kContent : Mode::kPlain;
    return;
  }
  if (scan.name && !block_started_) {
    block_started_ = true;
    ToolCallDelta& d = DeltaFor(out, num_calls_++);
    d.first = true;
    d.name = *scan.name;
  }
  if (block_started_ && scan.args_begin) {
    size_t avail = scan.args_end.value_or(pending_.size());
    if (!scan.args_end) {
      while (avail > *scan.args_begin && IsWs(pending_[avail - 1])) --avail;
    }
    if (avail > *scan.args_begin + args_sent_) {
      DeltaFor(out, num_calls_ - 1).arguments +=
          pending_.substr(*scan.args_begin + args_sent_, avail - *scan.args_begin - args_sent_);
      args_sent_ = avail - *scan.args_begin;
    }
  }
  if (scan.state == Scan::kIncomplete) {
    if (at_end && !block_started_) fall_back();
    return;  // at the end with a started call: the call is truncated (finish_reason says why)
  }
  // The object is closed. Hermes wants its closing tag (an unclosed block at the end counts).
  size_t rest = scan.end;
  if (hermes) {
    const size_t p = SkipWs(pending_, scan.end);
    const std::string_view after = std::string_view(pending_).substr(p);
    if (after.starts_with(kHermesClose)) {
      rest = p + kHermesClose.size();
    } else if (kHermesClose.starts_with(after)) {
      if (!at_end) return;      // the tag may still come
      rest = pending_.size();  // cut inside the tag (max_tokens): it is still the tag
    }
  }
  if (!block_started_) return fall_back();  // no "name": not a call
  if (!scan.args_begin) DeltaFor(out, num_calls_ - 1).arguments += "{}";
  pending_.erase(0, rest);
  block_started_ = false;
  args_sent_ = 0;
  mode_ = hermes ? Mode::kContent : Mode::kStart;
}

ParsedToolOutput ParseToolCalls(ToolCallFormat format, std::string_view text) {
  ToolCallStreamParser parser(format);
  ParsedToolOutput r;
  std::string content;
  auto take = [&](const ToolStreamDelta& d) {
    content += d.content;
    for (const ToolCallDelta& c : d.calls) {
      if (c.first) r.calls.push_back({c.name, ""});
      r.calls[c.index].arguments += c.arguments;
    }
  };
  take(parser.Push(text));
  take(parser.Finish());
  for (const ParsedToolCall& c : r.calls) {
    if (!nlohmann::json::accept(c.arguments)) {
      r.calls.clear();
      break;
    }
  }
  if (r.calls.empty()) {
    r.content = std::string(text);
  } else if (!content.empty()) {
    r.content = std::move(content);
  }
  return r;
}

}  // namespace llmux::server
