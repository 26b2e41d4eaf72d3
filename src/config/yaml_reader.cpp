#include "config/yaml_reader.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <sstream>
#include <stdexcept>

#include "config/quote.h"

namespace llmux::config_internal {
namespace {

constexpr size_t kMaxReportedErrors = 20;

// Counts nesting on the parser's events and throws (caught in ParseDocument) once it passes
// kMaxConfigDepth or a second document starts.
// NOTE: this pass runs before YAML::Load so that a hostile file never reaches the node builder
// or our recursive walk; yaml-cpp's own guard only stops at depth 2000.
class DepthChecker : public YAML::EventHandler {
 public:
  struct TooDeep {
    YAML::Mark mark;
  };
  struct SecondDocument {
    YAML::Mark mark;
  };

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1) throw SecondDocument{mark};
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Push(mark);
  }
  void OnSequenceEnd() override { --depth_; }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Push(mark);
  }
  void OnMapEnd() override { --depth_; }

 private:
  void Push(const YAML::Mark& mark) {
    if (++depth_ > kMaxConfigDepth) throw TooDeep{mark};
  }
  int depth_ = 0;
  int documents_ = 0;
};

bool ParseInt64(std::string_view s, std::int64_t* out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

bool LooksLikeInteger(std::string_view s) {
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

void ErrorSink::Add(const YAML::Mark& mark, std::string_view key, std::string_view message) {
  std::ostringstream os;
  const int line = mark.line < 0 ? 0 : mark.line + 1;
  const int column = mark.column < 0 ? 0 : mark.column + 1;
  os << source_ << ":" << line << ":" << column << ": " << (key.empty() ? "(document)" : key)
     << ": " << message;
  errors_.push_back(Error{line, column, os.str()});
}

Status ErrorSink::ToStatus() const {
  if (errors_.empty()) return Status::Ok();
  std::vector<Error> sorted = errors_;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Error& a, const Error& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  std::string message;
  for (size_t i = 0; i < sorted.size() && i < kMaxReportedErrors; ++i) {
    if (i > 0) message += "\n";
    message += sorted[i].text;
  }
  if (sorted.size() > kMaxReportedErrors) {
    message += "\n(" + std::to_string(sorted.size() - kMaxReportedErrors) + " more errors)";
  }
  return InvalidArgument(std::move(message));
}

std::optional<YAML::Node> ParseDocument(std::string_view text, ErrorSink& sink) {
  const std::string buffer(text);
  try {
    std::istringstream in(buffer);
    YAML::Parser parser(in);
    DepthChecker checker;
    while (parser.HandleNextDocument(checker)) {
    }
  } catch (const DepthChecker::TooDeep& e) {
    sink.Add(e.mark, "(document)",
             "nested deeper than " + std::to_string(kMaxConfigDepth) + " levels");
    return std::nullopt;
  } catch (const DepthChecker::SecondDocument& e) {
    sink.Add(e.mark, "(document)", "more than one YAML document in the file");
    return std::nullopt;
  } catch (const YAML::Exception& e) {
    sink.Add(e.mark, "(syntax)", e.msg);
    return std::nullopt;
  } catch (const std::exception& e) {
    sink.Add(YAML::Mark::null_mark(), "(syntax)", e.what());
    return std::nullopt;
  }
  try {
    YAML::Node root = YAML::Load(buffer);
    if (!root.IsDefined()) return YAML::Node(YAML::NodeType::Null);
    return root;
  } catch (const YAML::Exception& e) {
    sink.Add(e.mark, "(syntax)", e.msg);
  } catch (const std::exception& e) {
    sink.Add(YAML::Mark::null_mark(), "(syntax)", e.what());
  }
  return std::nullopt;
}

std::string_view NodeKindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a map";
  }
  return "an unknown node";
}

// ---- Value -------------------------------------------------------------------------------

std::optional<std::string> Value::PlainScalar(std::string_view expected) const {
  if (!node_.IsScalar()) {
    Error("expected " + std::string(expected) + ", got " + std::string(NodeKindName(node_)));
    return std::nullopt;
  }
  // NOTE: yaml-cpp tags quoted scalars "!" and plain ones "?": a quoted "64" is a string, and
  // accepting it where a number goes would hide a mistake.
  if (node_.Tag() == "!") {
    Error("expected " + std::string(expected) + ", got a quoted string " +
          QuoteValue(node_.Scalar()));
    return std::nullopt;
  }
  return node_.Scalar();
}

std::int64_t Value::Int(std::int64_t fallback, std::int64_t min, std::int64_t max) const {
  auto s = PlainScalar("an integer");
  if (!s) return fallback;
  std::int64_t v = 0;
  if (!ParseInt64(*s, &v)) {
    Error(LooksLikeInteger(*s) ? "integer " + QuoteValue(*s) + " is out of range"
                               : "expected an integer, got " + QuoteValue(*s));
    return fallback;
  }
  if (v < min) {
    Error("must be >= " + std::to_string(min) + ", got " + std::to_string(v));
    return fallback;
  }
  if (v > max) {
    Error("must be <= " + std::to_string(max) + ", got " + std::to_string(v));
    return fallback;
  }
  return v;
}

std::string Value::Where() const {
  return sink_->source() + ":" + std::to_string(mark_.line < 0 ? 0 : mark_.line + 1) + ":" +
         std::to_string(mark_.column < 0 ? 0 : mark_.column + 1);
}

std::string Value::String(std::string fallback) const {
  if (!node_.IsScalar()) {
    Error("expected a string, got " + std::string(NodeKindName(node_)));
    return fallback;
  }
  return node_.Scalar();
}

bool Value::Bool(bool fallback) const {
  auto s = PlainScalar("true or false");
  if (!s) return fallback;
  if (*s == "true" || *s == "True" || *s == "TRUE") return true;
  if (*s == "false" || *s == "False" || *s == "FALSE") return false;
  Error("expected true or false, got " + QuoteValue(*s));
  return fallback;
}

Millis Value::Duration(Millis fallback) const {
  if (!node_.IsScalar()) {
    Error("expected a duration such as \"30s\", got " + std::string(NodeKindName(node_)));
    return fallback;
  }
  auto d = ParseDuration(node_.Scalar());
  if (!d.ok()) {
    Error(d.status().message());
    return fallback;
  }
  return *d;
}

std::int64_t Value::DecimalNano(std::int64_t fallback) const {
  if (!node_.IsScalar()) {
    Error("expected a decimal number, got " + std::string(NodeKindName(node_)));
    return fallback;
  }
  auto v = ParseDecimalNano(node_.Scalar());
  if (!v.ok()) {
    Error(v.status().message());
    return fallback;
  }
  return *v;
}

KeyHash Value::Sha256Hex() const {
  if (!node_.IsScalar()) {
    Error("expected 64 hex digits, got " + std::string(NodeKindName(node_)));
    return KeyHash{};
  }
  auto h = ParseKeyHashHex(node_.Scalar());
  if (!h.ok()) {
    Error(h.status().message());
    return KeyHash{};
  }
  return *h;
}

std::vector<Value> Value::Elements() const {
  std::vector<Value> out;
  if (!node_.IsSequence()) {
    Error("expected a sequence, got " + std::string(NodeKindName(node_)));
    return out;
  }
  for (size_t i = 0; i < node_.size(); ++i) {
    out.emplace_back(sink_, node_[i], path_ + "[" + std::to_string(i) + "]");
  }
  return out;
}

// ---- MapReader ---------------------------------------------------------------------------

MapReader::MapReader(const Value& value)
    : sink_(value.sink()), path_(value.path()), mark_(value.mark()) {
  const YAML::Node& node = value.node();
  if (node.IsNull()) return;
  if (!node.IsMap()) {
    value.Error("expected a map, got " + std::string(NodeKindName(node)));
    return;
  }
  for (const auto& kv : node) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      sink_->Add(key.Mark(), path_.empty() ? "(key)" : path_,
                 "map keys must be strings, got " + std::string(NodeKindName(key)));
      continue;
    }
    const std::string name = key.Scalar();
    bool duplicate = false;
    for (const Entry& e : entries_) duplicate = duplicate || e.key == name;
    if (duplicate) {
      sink_->Add(key.Mark(), ChildPath(name), "duplicate key");
      continue;
    }
    entries_.push_back(Entry{name, key.Mark(), kv.second, false});
  }
}

std::string MapReader::ChildPath(std::string_view key) const {
  // A key that is not a plain word is quoted, so the path stays readable and unambiguous
  // (`tenants."bad:name"`).
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  const std::string shown = plain ? std::string(key) : QuoteValue(key);
  return path_.empty() ? shown : path_ + "." + shown;
}

std::optional<Value> MapReader::Get(std::string_view key) {
  if (std::find(asked_.begin(), asked_.end(), key) == asked_.end()) asked_.emplace_back(key);
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.used = true;
      return Value(sink_, e.value, ChildPath(key), e.value.IsNull() ? e.key_mark : e.value.Mark());
    }
  }
  return std::nullopt;
}

std::optional<Value> MapReader::GetNonNull(std::string_view key) {
  auto v = Get(key);
  if (v && v->is_null()) {
    v->Error("has no value");
    return std::nullopt;
  }
  return v;
}

std::int64_t MapReader::Int(std::string_view key, std::int64_t fallback, std::int64_t min,
                            std::int64_t max) {
  auto v = GetNonNull(key);
  return v ? v->Int(fallback, min, max) : fallback;
}

std::string MapReader::String(std::string_view key, std::string fallback) {
  auto v = GetNonNull(key);
  return v ? v->String(std::move(fallback)) : fallback;
}

bool MapReader::Bool(std::string_view key, bool fallback) {
  auto v = GetNonNull(key);
  return v ? v->Bool(fallback) : fallback;
}

Millis MapReader::Duration(std::string_view key, Millis fallback) {
  auto v = GetNonNull(key);
  return v ? v->Duration(fallback) : fallback;
}

std::int64_t MapReader::DecimalNano(std::string_view key, std::int64_t fallback) {
  auto v = GetNonNull(key);
  return v ? v->DecimalNano(fallback) : fallback;
}

std::optional<std::int64_t> MapReader::OptionalInt(std::string_view key, std::int64_t min,
                                                   std::int64_t max) {
  auto v = Get(key);
  if (!v || v->is_null()) return std::nullopt;
  return v->Int(min, min, max);
}

std::optional<std::int64_t> MapReader::OptionalDecimalNano(std::string_view key) {
  auto v = Get(key);
  if (!v || v->is_null()) return std::nullopt;
  return v->DecimalNano(0);
}

std::vector<std::pair<std::string, Value>> MapReader::All() {
  std::vector<std::pair<std::string, Value>> out;
  for (Entry& e : entries_) {
    e.used = true;
    out.emplace_back(e.key, Value(sink_, e.value, ChildPath(e.key),
                                  e.value.IsNull() ? e.key_mark : e.value.Mark()));
  }
  return out;
}

namespace {

// Levenshtein distance with adjacent transpositions counted as one edit.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

void MapReader::Finish() {
  for (const Entry& e : entries_) {
    if (e.used) continue;
    // Suggest the nearest known key within a third of its length (at least one edit), or a
    // known key that differs only in case or '-' for '_'.
    std::string best;
    size_t best_distance = std::max<size_t>(1, e.key.size() / 3) + 1;
    if (e.key.size() <= 64) {
      for (const std::string& known : asked_) {
        const size_t distance = EditDistance(e.key, known);
        if (distance < best_distance) {
          best = known;
          best_distance = distance;
        }
      }
    }
    sink_->Add(e.key_mark, ChildPath(e.key),
               best.empty() ? "unknown key" : "unknown key (did you mean \"" + best + "\"?)");
  }
}

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '_' || c == '-'; });
}

}  // namespace llmux::config_internal
