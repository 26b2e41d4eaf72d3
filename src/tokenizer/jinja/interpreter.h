// Tree-walking interpreter of the Jinja-subset engine. One Interpreter renders one template
// once, on one thread; the syntax tree it walks is shared and read-only.
#pragma once

#include <ctime>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "llmux/status.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace llmux::jinja {

// A scope of variables. Lookups fall through to the parent; assignments land here.
// Scopes are created as @huggingface/jinja creates them: one per for loop (the loop body's
// {% set %} persists across its iterations, not after it) and one per macro call.
class Environment {
 public:
  explicit Environment(Environment* parent) : parent_(parent) {}
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  // The variable's value, or undefined.
  Value Lookup(const std::string& name) const;
  void Set(const std::string& name, Value value);

 private:
  Environment* parent_;  // not owned; outlives this scope
  std::unordered_map<std::string, Value> vars_;
};

class Interpreter {
 public:
  // `source` is the template text (for positions in error messages); `local_time` backs
  // strftime_now().
  Interpreter(std::string_view source, std::function<std::tm()> local_time);

  // Installs the globals (true/false/none, range, namespace, raise_exception, strftime_now)
  // into `env`.
  void InstallGlobals(Environment& env);

  // Renders `program` in `env`. InvalidArgument with the template's message for
  // raise_exception, or with position and reason for any other runtime error.
  StatusOr<std::string> Render(const std::vector<StmtPtr>& program, Environment& env);

  StatusOr<Value> Eval(const Expr& e, Environment& env);
  StatusOr<CallArgs> EvalArgs(const std::vector<ExprPtr>& args, Environment& env);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  StatusOr<Flow> Exec(const std::vector<StmtPtr>& block, Environment& env, std::string& out);
  StatusOr<Flow> ExecOne(const Stmt& s, Environment& env, std::string& out);
  Status ExecFor(const Stmt& s, Environment& env, std::string& out);
  Status ExecSet(const Stmt& s, Environment& env);
  void DefineMacro(const Stmt& s, Environment& env);
  StatusOr<Value> EvalInner(const Expr& e, Environment& env);
  StatusOr<Value> EvalBinary(const Expr& e, Environment& env);
  StatusOr<Value> EvalMember(const Expr& e, Environment& env);
  // Adds "line L, column C" to an error unless it came from raise_exception or already has it.
  Status Positioned(const Status& s, size_t offset);

  std::string_view source_;
  std::function<std::tm()> local_time_;
  bool raised_ = false;      // raise_exception was called: its message goes out untouched
  bool positioned_ = false;  // the pending error already names its position
  int macro_depth_ = 0;      // nested macro calls, bounded so recursion cannot overflow
};

}  // namespace llmux::jinja
