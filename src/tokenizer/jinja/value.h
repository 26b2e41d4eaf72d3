// Runtime values of the Jinja-subset engine used for chat templates.
//
// Semantics follow @huggingface/jinja (the reference renderer transformers.js and the Hub
// use), not Python Jinja, wherever they differ: `{{ none }}` renders "", booleans render
// "true"/"false", lists and dicts render as JSON, equality is JavaScript's loose `==`.
// Lists and dicts are immutable once built and shared by pointer (copying a Value is cheap);
// a namespace() is the one mutable container (`{% set ns.x = ... %}`).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmux/status.h"

namespace llmux::jinja {

class Environment;
struct Value;

enum class Kind {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kDict,
  kNamespace,
  kFunction
};

// Insertion-ordered string-keyed map. NOTE: linear lookup; template dicts hold a handful of
// keys (role, content, ...), where this beats hashing.
struct Dict {
  std::vector<std::pair<std::string, Value>> entries;

  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value value);  // replaces in place or appends
};

// Arguments of a call: positional ones, then keyword ones in source order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  const Value* Keyword(std::string_view name) const;
};

// A callable: a global (range, namespace, raise_exception, ...), a macro, or a method bound
// to its receiver. `caller` is the environment of the call site (macros see it, as in
// @huggingface/jinja).
using NativeFunction = std::function<StatusOr<Value>(CallArgs args, Environment& caller)>;

struct Value {
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<const std::vector<Value>> list;
  std::shared_ptr<Dict> dict;  // kDict (never mutated after construction) and kNamespace
  std::shared_ptr<const NativeFunction> fn;
  // kList built by a tuple literal `(a, b)`: the reference neither serializes tuples to JSON
  // nor counts them `iterable`; everything else treats them as lists.
  bool tuple = false;

  static Value Undefined() { return {}; }
  static Value None();
  static Value Bool(bool v);
  static Value Int(int64_t v);
  static Value Float(double v);
  static Value Str(std::string v);
  static Value List(std::vector<Value> items);
  static Value MakeDict(Dict d);
  static Value Namespace(Dict d);
  static Value Function(NativeFunction f);

  bool is_undefined() const { return kind == Kind::kUndefined; }
  bool is_none() const { return kind == Kind::kNone; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_list() const { return kind == Kind::kList; }
  bool is_dict() const { return kind == Kind::kDict; }
  // Dict or namespace: has attributes looked up by name.
  bool is_attribute_container() const { return kind == Kind::kDict || kind == Kind::kNamespace; }
  double number() const { return kind == Kind::kFloat ? f : kind == Kind::kBool ? b : double(i); }

  // Python truthiness: empty string/list/dict, 0, none and undefined are false.
  bool Truthy() const;
};

// "StringValue", "ArrayValue", ...: the reference renderer's type names, for messages.
std::string_view KindName(Kind kind);

// What `{{ value }}` writes. none and undefined write nothing. Fails for functions.
StatusOr<std::string> ToOutputString(const Value& value);

// JavaScript's Number.prototype.toString for a double ("1", "0.1", "1e+21", "NaN").
std::string JsNumberToString(double v);

struct JsonOptions {
  std::optional<int64_t> indent;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::optional<std::pair<std::string, std::string>> separators;  // item, key
};

// JSON text as @huggingface/jinja's toJSON writes it (Python json.dumps separators). With
// `undefined_to_null` false, undefined writes `undefined` (the form used by `{{ list }}`).
StatusOr<std::string> ToJson(const Value& value, const JsonOptions& options,
                             bool undefined_to_null);

// JSON.stringify of a string.
std::string JsonQuote(std::string_view s, bool ensure_ascii);

// JavaScript `a == b` on the values' payloads (undefined == none, 1 == true, "1" == 1; lists
// and dicts equal only when they are the same object).
bool LooseEquals(const Value& a, const Value& b);
// JavaScript `a === b` on payloads (used by `in` on lists).
bool StrictEquals(const Value& a, const Value& b);

// JavaScript `String(payload)` for primitives, as `~` and string `+` use it. Fails for
// containers and functions.
StatusOr<std::string> JsPrimitiveString(const Value& value);

}  // namespace llmux::jinja
