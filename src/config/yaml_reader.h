// Strict, schema-driven reading of a YAML document for the config loaders.
//
// Every accessor records an error ("SOURCE:LINE:COLUMN: KEY: message") instead of throwing and
// returns the default, so a loader reads top to bottom and reports every problem at once.
// MapReader::Finish() turns every key nobody asked for into an "unknown key" error.
// Used by one loader on one thread.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/config.h"
#include "llmux/status.h"

namespace llmux::config_internal {

class ErrorSink {
 public:
  explicit ErrorSink(std::string source) : source_(std::move(source)) {}

  // `key` is the dotted path ("server.listen", "tenants.acme.api_keys[0].sha256").
  void Add(const YAML::Mark& mark, std::string_view key, std::string_view message);
  bool empty() const { return errors_.empty(); }
  const std::string& source() const { return source_; }
  // OK when no errors; otherwise InvalidArgument listing up to 20 errors in file order, one
  // per line.
  Status ToStatus() const;

 private:
  struct Error {
    int line;
    int column;
    std::string text;
  };
  std::string source_;
  std::vector<Error> errors_;
};

// Parses `text` into a node after checking it is one document nested at most kMaxConfigDepth
// deep (checked on the parser's events, before any node tree is built). A syntax error, a
// second document or excessive depth is recorded in `sink` and returns nullopt. An empty
// document (or only comments) yields a null node.
std::optional<YAML::Node> ParseDocument(std::string_view text, ErrorSink& sink);

// "a map", "a sequence", "a string", "null" (for messages).
std::string_view NodeKindName(const YAML::Node& node);

// One value with its dotted path. Accessors record an error on a wrong type or range and
// return the fallback.
class Value {
 public:
  Value(ErrorSink* sink, YAML::Node node, std::string path)
      : sink_(sink), node_(std::move(node)), path_(std::move(path)), mark_(node_.Mark()) {}
  // `mark` is where errors point (a null value has no position of its own; use its key's).
  Value(ErrorSink* sink, YAML::Node node, std::string path, YAML::Mark mark)
      : sink_(sink), node_(std::move(node)), path_(std::move(path)), mark_(mark) {}

  ErrorSink* sink() const { return sink_; }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  YAML::Mark mark() const { return mark_; }
  // "FILE:LINE:COLUMN" of this value (for messages raised after loading).
  std::string Where() const;
  bool is_null() const { return node_.IsNull(); }
  void Error(std::string_view message) const { sink_->Add(mark_, path_, message); }

  std::int64_t Int(std::int64_t fallback, std::int64_t min, std::int64_t max) const;
  std::string String(std::string fallback) const;
  bool Bool(bool fallback) const;
  Millis Duration(Millis fallback) const;
  std::int64_t DecimalNano(std::int64_t fallback) const;
  KeyHash Sha256Hex() const;  // zero digest (and an error) when malformed
  // Elements of a sequence with paths "path[i]"; an error and {} when not a sequence.
  std::vector<Value> Elements() const;

 private:
  // The scalar text of a plain (unquoted) scalar, or nullopt after recording `expected`.
  std::optional<std::string> PlainScalar(std::string_view expected) const;

  ErrorSink* sink_;
  YAML::Node node_;
  std::string path_;
  YAML::Mark mark_;
};

// A map whose keys are consumed by name. Construct from a Value: a null value reads as an
// empty map; anything else but a map is an error (and reads as empty).
class MapReader {
 public:
  explicit MapReader(const Value& value);

  // The value under `key` (marking the key as known), or nullopt when absent.
  std::optional<Value> Get(std::string_view key);
  // Typed shortcuts: the fallback when absent; explicit null is an error ("has no value").
  std::int64_t Int(std::string_view key, std::int64_t fallback, std::int64_t min, std::int64_t max);
  std::string String(std::string_view key, std::string fallback);
  bool Bool(std::string_view key, bool fallback);
  Millis Duration(std::string_view key, Millis fallback);
  std::int64_t DecimalNano(std::string_view key, std::int64_t fallback);
  // Absent or null -> nullopt.
  std::optional<std::int64_t> OptionalInt(std::string_view key, std::int64_t min, std::int64_t max);
  std::optional<std::int64_t> OptionalDecimalNano(std::string_view key);

  // Every (key, value) in file order, marking all keys known (for maps keyed by name).
  std::vector<std::pair<std::string, Value>> All();
  // Records "unknown key" for each key nobody asked for, with the nearest key that was asked
  // for as a suggestion when one is close ("did you mean \"max_seqs\"?").
  void Finish();

  ErrorSink* sink() const { return sink_; }
  const std::string& path() const { return path_; }
  YAML::Mark mark() const { return mark_; }

 private:
  struct Entry {
    std::string key;
    YAML::Mark key_mark;
    YAML::Node value;
    bool used = false;
  };
  std::string ChildPath(std::string_view key) const;
  std::optional<Value> GetNonNull(std::string_view key);

  ErrorSink* sink_;
  std::string path_;
  YAML::Mark mark_;
  std::vector<Entry> entries_;
  std::vector<std::string> asked_;  // every key asked for: the keys this map knows
};

// Whether `name` is 1-64 of [A-Za-z0-9_-], starting with a letter or digit. Tenant, lane,
// pool and cache-group names use it: they become metric labels and file names.
bool IsValidName(std::string_view name);

}  // namespace llmux::config_internal
