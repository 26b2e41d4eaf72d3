// Filters, tests, methods and global functions of the Jinja-subset engine, with the
// behaviour of @huggingface/jinja (see docs/chat_templates.md for the list).
#pragma once

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "llmux/status.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace llmux::jinja {

class Environment;
class Interpreter;

// Names the interpreter implements; CheckSupported rejects a template naming anything else.
bool IsSupportedFilter(std::string_view name);
bool IsSupportedTest(std::string_view name);
bool IsSupportedMethod(std::string_view name);
bool IsSupportedGlobalFunction(std::string_view name);

// Applies the kFilter node `filter` (its arguments evaluated in `env`) to `operand`.
StatusOr<Value> ApplyFilter(Interpreter& interp, const Value& operand, const Expr& filter,
                            Environment& env);

// `operand is name`.
StatusOr<bool> ApplyTest(std::string_view name, const Value& operand);

// `object.name` / `object[property]`: a dict entry, a list or string element (negative
// indices count from the end), or a method bound to `object`. Undefined when absent.
StatusOr<Value> GetMember(const Value& object, const Value& property);

// `object[start:stop:step]` on a list or a string (strings slice by code point).
StatusOr<Value> Slice(const Value& object, const Value& start, const Value& stop,
                      const Value& step);

// Shared by the filter and method implementations.
Value DictItems(const Dict& d);  // [[key, value], ...]
StatusOr<Value> CallDictMethod(const std::shared_ptr<Dict>& dict, const std::string& name,
                               const CallArgs& args);  // get/items/keys/values/dictsort
// Ordering used by sort/dictsort: -1, 0, 1; fails across types and for none/undefined.
StatusOr<int> CompareValues(const Value& a, const Value& b, bool case_sensitive);

// Globals: range, namespace, strftime_now (from `local_time`), and raise_exception, which
// fails with InvalidArgument(message) after setting *raised.
void InstallGlobalFunctions(Environment& env, std::function<std::tm()> local_time, bool* raised);

}  // namespace llmux::jinja
