#include "tokenizer/jinja/interpreter.h"

#include <cmath>
#include <utility>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/lexer.h"

namespace llmux::jinja {
namespace {
constexpr int kMaxMacroDepth = 100;
}  // namespace

Value Environment::Lookup(const std::string& name) const {
  for (const Environment* e = this; e != nullptr; e = e->parent_) {
    auto it = e->vars_.find(name);
    if (it != e->vars_.end()) return it->second;
  }
  return Value::Undefined();
}

void Environment::Set(const std::string& name, Value value) { vars_[name] = std::move(value); }

Interpreter::Interpreter(std::string_view source, std::function<std::tm()> local_time)
    : source_(source), local_time_(std::move(local_time)) {}

void Interpreter::InstallGlobals(Environment& env) {
  env.Set("true", Value::Bool(true));
  env.Set("false", Value::Bool(false));
  env.Set("none", Value::None());
  env.Set("True", Value::Bool(true));
  env.Set("False", Value::Bool(false));
  env.Set("None", Value::None());
  InstallGlobalFunctions(env, local_time_, &raised_);
}

Status Interpreter::Positioned(const Status& s, size_t offset) {
  if (s.ok() || raised_ || positioned_) return s;
  positioned_ = true;
  return InvalidArgument("chat template error at " + DescribePosition(source_, offset) + ": " +
                         s.message());
}

StatusOr<std::string> Interpreter::Render(const std::vector<StmtPtr>& program, Environment& env) {
  std::string out;
  LLMUX_ASSIGN_OR_RETURN(Flow flow, Exec(program, env, out));
  if (flow != Flow::kNormal) {
    return InvalidArgument("chat template error: {% break %} or {% continue %} outside a loop");
  }
  return out;
}

StatusOr<Interpreter::Flow> Interpreter::Exec(const std::vector<StmtPtr>& block, Environment& env,
                                              std::string& out) {
  for (const auto& s : block) {
    LLMUX_ASSIGN_OR_RETURN(Flow flow, ExecOne(*s, env, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

StatusOr<Interpreter::Flow> Interpreter::ExecOne(const Stmt& s, Environment& env,
                                                 std::string& out) {
  switch (s.kind) {
    case StmtKind::kText:
      out += s.text;
      return Flow::kNormal;
    case StmtKind::kComment:
      return Flow::kNormal;
    case StmtKind::kOutput: {
      LLMUX_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, env));
      auto text = ToOutputString(v);
      if (!text.ok()) return Positioned(text.status(), s.expr->offset);
      out += *text;
      return Flow::kNormal;
    }
    case StmtKind::kIf: {
      LLMUX_ASSIGN_OR_RETURN(Value test, Eval(*s.expr, env));
      return Exec(test.Truthy() ? s.body : s.alternate, env, out);
    }
    case StmtKind::kFor:
      LLMUX_RETURN_IF_ERROR(ExecFor(s, env, out));
      return Flow::kNormal;
    case StmtKind::kSet:
      LLMUX_RETURN_IF_ERROR(ExecSet(s, env));
      return Flow::kNormal;
    case StmtKind::kMacro:
      DefineMacro(s, env);
      return Flow::kNormal;
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kFilterBlock: {
      std::string body;
      LLMUX_ASSIGN_OR_RETURN(Flow flow, Exec(s.body, env, body));
      if (flow != Flow::kNormal) return flow;
      auto filtered = ApplyFilter(*this, Value::Str(std::move(body)), *s.filter, env);
      if (!filtered.ok()) return Positioned(filtered.status(), s.filter->offset);
      auto text = ToOutputString(*filtered);
      if (!text.ok()) return Positioned(text.status(), s.offset);
      out += *text;
      return Flow::kNormal;
    }
  }
  return Flow::kNormal;
}

namespace {

Status BindTarget(const Expr& target, const Value& value, Environment& env) {
  if (target.kind == ExprKind::kIdentifier) {
    env.Set(target.name, value);
    return Status::Ok();
  }
  if (value.kind != Kind::kList) {
    return InvalidArgument("cannot unpack non-iterable type: " + std::string(KindName(value.kind)));
  }
  if (value.list->size() != target.items.size()) {
    return InvalidArgument(std::string("too ") +
                           (target.items.size() > value.list->size() ? "few" : "many") +
                           " items to unpack");
  }
  for (size_t k = 0; k < target.items.size(); ++k) {
    if (target.items[k]->kind != ExprKind::kIdentifier) {
      return InvalidArgument("cannot unpack into something that is not a name");
    }
    env.Set(target.items[k]->name, (*value.list)[k]);
  }
  return Status::Ok();
}

}  // namespace

Status Interpreter::ExecFor(const Stmt& s, Environment& env, std::string& out) {
  Environment scope(&env);
  LLMUX_ASSIGN_OR_RETURN(Value iterable, Eval(*s.expr, scope));
  if (iterable.kind == Kind::kDict) {
    std::vector<Value> keys;
    for (const auto& [k, v] : iterable.dict->entries) keys.push_back(Value::Str(k));
    iterable = Value::List(std::move(keys));
  }
  if (iterable.kind != Kind::kList) {
    return Positioned(InvalidArgument("expected iterable or object type in for loop: got " +
                                      std::string(KindName(iterable.kind))),
                      s.expr->offset);
  }
  std::vector<Value> items;
  for (const Value& item : *iterable.list) {
    if (s.filter) {
      Environment loop_scope(&scope);
      Status bound = BindTarget(*s.target, item, loop_scope);
      if (!bound.ok()) return Positioned(bound, s.target->offset);
      LLMUX_ASSIGN_OR_RETURN(Value keep, Eval(*s.filter, loop_scope));
      if (!keep.Truthy()) continue;
    }
    items.push_back(item);
  }
  bool no_iteration = true;
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    Dict loop;
    loop.Set("index", Value::Int(i + 1));
    loop.Set("index0", Value::Int(i));
    loop.Set("revindex", Value::Int(n - i));
    loop.Set("revindex0", Value::Int(n - i - 1));
    loop.Set("first", Value::Bool(i == 0));
    loop.Set("last", Value::Bool(i == n - 1));
    loop.Set("length", Value::Int(n));
    loop.Set("previtem", i > 0 ? items[i - 1] : Value::Undefined());
    loop.Set("nextitem", i < n - 1 ? items[i + 1] : Value::Undefined());
    scope.Set("loop", Value::MakeDict(std::move(loop)));
    Status bound = BindTarget(*s.target, items[i], scope);
    if (!bound.ok()) return Positioned(bound, s.target->offset);
    // NOTE: an iteration ended by {% break %}/{% continue %} contributes no output, as in
    // @huggingface/jinja (its control-flow exception discards the iteration's text).
    std::string iteration;
    LLMUX_ASSIGN_OR_RETURN(Flow flow, Exec(s.body, scope, iteration));
    if (flow == Flow::kBreak) break;
    if (flow == Flow::kContinue) continue;
    out += iteration;
    no_iteration = false;
  }
  if (no_iteration) {
    LLMUX_ASSIGN_OR_RETURN(Flow flow, Exec(s.alternate, scope, out));
    (void)flow;
  }
  return Status::Ok();
}

Status Interpreter::ExecSet(const Stmt& s, Environment& env) {
  Value rhs;
  if (s.expr) {
    LLMUX_ASSIGN_OR_RETURN(rhs, Eval(*s.expr, env));
  } else {
    std::string body;
    LLMUX_ASSIGN_OR_RETURN(Flow flow, Exec(s.body, env, body));
    (void)flow;
    rhs = Value::Str(std::move(body));
  }
  const Expr& target = *s.target;
  if (target.kind == ExprKind::kMember) {
    LLMUX_ASSIGN_OR_RETURN(Value object, Eval(*target.a, env));
    if (object.kind != Kind::kNamespace || target.name.empty()) {
      return Positioned(InvalidArgument("cannot assign an attribute of a non-namespace object"),
                        target.offset);
    }
    object.dict->Set(target.name, std::move(rhs));
    return Status::Ok();
  }
  return Positioned(BindTarget(target, rhs, env), target.offset);
}

void Interpreter::DefineMacro(const Stmt& s, Environment& env) {
  const Stmt* macro = &s;
  env.Set(s.text,
          Value::Function([this, macro](CallArgs args, Environment& caller) -> StatusOr<Value> {
            if (macro_depth_ >= kMaxMacroDepth) {
              return InvalidArgument("macro calls nested deeper than " +
                                     std::to_string(kMaxMacroDepth));
            }
            ++macro_depth_;
            struct DepthGuard {
              int& depth;
              ~DepthGuard() { --depth; }
            } guard{macro_depth_};
            Environment scope(&caller);
            std::vector<std::pair<std::string, const Expr*>> pending_defaults;
            for (size_t k = 0; k < macro->params.size(); ++k) {
              const Expr& param = *macro->params[k];
              std::optional<Value> value;
              if (k < args.positional.size()) {
                value = args.positional[k];
              } else {
                for (auto it = args.keyword.begin(); it != args.keyword.end(); ++it) {
                  if (it->first == param.name) {
                    value = it->second;
                    args.keyword.erase(it);
                    break;
                  }
                }
              }
              if (!value && param.kind == ExprKind::kKeywordArg) {
                pending_defaults.emplace_back(param.name, param.a.get());
              }
              scope.Set(param.name, value ? *value : Value::Undefined());
            }
            Dict extra_kw;
            for (auto& [k, v] : args.keyword) extra_kw.Set(k, v);
            scope.Set("kwargs", Value::MakeDict(std::move(extra_kw)));
            std::vector<Value> varargs;
            for (size_t k = macro->params.size(); k < args.positional.size(); ++k) {
              varargs.push_back(args.positional[k]);
            }
            scope.Set("varargs", Value::List(std::move(varargs)));
            for (const auto& [name, expr] : pending_defaults) {
              LLMUX_ASSIGN_OR_RETURN(Value v, Eval(*expr, scope));
              scope.Set(name, std::move(v));
            }
            std::string out;
            LLMUX_ASSIGN_OR_RETURN(Flow flow, Exec(macro->body, scope, out));
            if (flow != Flow::kNormal)
              return InvalidArgument("{% break %} outside a loop in a macro");
            return Value::Str(std::move(out));
          }));
}

StatusOr<CallArgs> Interpreter::EvalArgs(const std::vector<ExprPtr>& args, Environment& env) {
  CallArgs out;
  for (const auto& a : args) {
    if (a->kind == ExprKind::kKeywordArg) {
      LLMUX_ASSIGN_OR_RETURN(Value v, Eval(*a->a, env));
      if (out.Keyword(a->name)) {
        return InvalidArgument("got multiple values for keyword argument '" + a->name + "'");
      }
      out.keyword.emplace_back(a->name, std::move(v));
    } else {
      LLMUX_ASSIGN_OR_RETURN(Value v, Eval(*a, env));
      out.positional.push_back(std::move(v));
    }
  }
  return out;
}

StatusOr<Value> Interpreter::Eval(const Expr& e, Environment& env) {
  auto v = EvalInner(e, env);
  if (!v.ok()) return Positioned(v.status(), e.offset);
  return v;
}

StatusOr<Value> Interpreter::EvalInner(const Expr& e, Environment& env) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kIdentifier:
      return env.Lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      for (const auto& item : e.items) {
        LLMUX_ASSIGN_OR_RETURN(Value v, Eval(*item, env));
        items.push_back(std::move(v));
      }
      Value list = Value::List(std::move(items));
      list.tuple = e.kind == ExprKind::kTuple;
      return list;
    }
    case ExprKind::kDict: {
      Dict d;
      for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
        LLMUX_ASSIGN_OR_RETURN(Value key, Eval(*e.items[k], env));
        if (key.kind != Kind::kString) {
          return InvalidArgument("object keys must be strings: got " +
                                 std::string(KindName(key.kind)));
        }
        LLMUX_ASSIGN_OR_RETURN(Value value, Eval(*e.items[k + 1], env));
        d.Set(key.s, std::move(value));
      }
      return Value::MakeDict(std::move(d));
    }
    case ExprKind::kMember:
      return EvalMember(e, env);
    case ExprKind::kCall: {
      LLMUX_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e.items, env));
      LLMUX_ASSIGN_OR_RETURN(Value fn, Eval(*e.a, env));
      if (fn.kind != Kind::kFunction) {
        return InvalidArgument("cannot call something that is not a function: got " +
                               std::string(KindName(fn.kind)));
      }
      return (*fn.fn)(std::move(args), env);
    }
    case ExprKind::kKeywordArg:
      return InvalidArgument("a keyword argument outside a call");
    case ExprKind::kUnary: {
      LLMUX_ASSIGN_OR_RETURN(Value v, Eval(*e.a, env));
      if (e.name == "not") return Value::Bool(!v.Truthy());
      const double sign = e.name == "-" ? -1 : 1;
      if (v.kind == Kind::kFloat) return Value::Float(sign * v.f);
      if (v.kind == Kind::kInt || v.kind == Kind::kBool) {
        return Value::Int(static_cast<int64_t>(sign) * static_cast<int64_t>(v.number()));
      }
      return InvalidArgument("unknown operator \"" + e.name + "\" for " +
                             std::string(KindName(v.kind)));
    }
    case ExprKind::kBinary:
      return EvalBinary(e, env);
    case ExprKind::kFilter: {
      LLMUX_ASSIGN_OR_RETURN(Value operand, Eval(*e.a, env));
      return ApplyFilter(*this, operand, e, env);
    }
    case ExprKind::kTest: {
      LLMUX_ASSIGN_OR_RETURN(Value operand, Eval(*e.a, env));
      LLMUX_ASSIGN_OR_RETURN(bool result, ApplyTest(e.name, operand));
      return Value::Bool(e.negate ? !result : result);
    }
    case ExprKind::kSelect: {
      LLMUX_ASSIGN_OR_RETURN(Value test, Eval(*e.b, env));
      if (!test.Truthy()) return Value::Undefined();
      return Eval(*e.a, env);
    }
    case ExprKind::kTernary: {
      LLMUX_ASSIGN_OR_RETURN(Value cond, Eval(*e.a, env));
      return Eval(cond.Truthy() ? *e.b : *e.c, env);
    }
  }
  return Value::Undefined();
}

StatusOr<Value> Interpreter::EvalMember(const Expr& e, Environment& env) {
  LLMUX_ASSIGN_OR_RETURN(Value object, Eval(*e.a, env));
  if (e.is_slice) {
    Value parts[3];
    for (int k = 0; k < 3; ++k) {
      if (e.items[k]) {
        LLMUX_ASSIGN_OR_RETURN(parts[k], Eval(*e.items[k], env));
      }
    }
    return Slice(object, parts[0], parts[1], parts[2]);
  }
  Value property;
  if (e.computed || e.b) {
    LLMUX_ASSIGN_OR_RETURN(property, Eval(*e.b, env));
  } else {
    property = Value::Str(e.name);
  }
  return GetMember(object, property);
}

StatusOr<Value> Interpreter::EvalBinary(const Expr& e, Environment& env) {
  const std::string& op = e.name;
  LLMUX_ASSIGN_OR_RETURN(Value left, Eval(*e.a, env));
  if (op == "and") return left.Truthy() ? Eval(*e.b, env) : StatusOr<Value>(left);
  if (op == "or") return left.Truthy() ? StatusOr<Value>(left) : Eval(*e.b, env);
  LLMUX_ASSIGN_OR_RETURN(Value right, Eval(*e.b, env));
  if (op == "==") return Value::Bool(LooseEquals(left, right));
  if (op == "!=") return Value::Bool(!LooseEquals(left, right));
  const bool is_in = op == "in" || op == "not in";
  if (left.is_undefined() || right.is_undefined()) {
    if (right.is_undefined() && is_in) return Value::Bool(op == "not in");
    return InvalidArgument("cannot perform operation " + op + " on undefined values");
  }
  if (left.is_none() || right.is_none()) {
    return InvalidArgument("cannot perform operation " + op + " on null values");
  }
  if (op == "~") {
    LLMUX_ASSIGN_OR_RETURN(std::string a, JsPrimitiveString(left));
    LLMUX_ASSIGN_OR_RETURN(std::string b, JsPrimitiveString(right));
    return Value::Str(a + b);
  }
  const bool numeric_like = (left.is_number() || left.kind == Kind::kBool) &&
                            (right.is_number() || right.kind == Kind::kBool);
  if (op == "**" && numeric_like) {
    const double a = left.number(), b = right.number();
    if (a == 0 && b < 0) return InvalidArgument("0.0 cannot be raised to a negative power");
    const double r = std::pow(a, b);
    if (!std::isfinite(r)) return InvalidArgument("exponentiation result is not finite");
    if (left.kind == Kind::kFloat || right.kind == Kind::kFloat || b < 0) return Value::Float(r);
    return Value::Int(static_cast<int64_t>(r));
  }
  if (left.is_number() && right.is_number()) {
    const bool is_float = left.kind == Kind::kFloat || right.kind == Kind::kFloat;
    const double a = left.number(), b = right.number();
    if (op == "+" || op == "-" || op == "*") {
      if (is_float) return Value::Float(op == "+" ? a + b : op == "-" ? a - b : a * b);
      const int64_t x = left.i, y = right.i;
      return Value::Int(op == "+" ? x + y : op == "-" ? x - y : x * y);
    }
    if (op == "/") return Value::Float(a / b);
    if (op == "//" || op == "%") {
      if (!is_float && right.i == 0) return InvalidArgument("integer division or modulo by zero");
      if (op == "//") {
        const double r = std::floor(a / b);
        return is_float ? Value::Float(r) : Value::Int(static_cast<int64_t>(r));
      }
      // NOTE: JavaScript's remainder takes the dividend's sign (-1 % 3 == -1), unlike Python.
      return is_float ? Value::Float(std::fmod(a, b)) : Value::Int(left.i % right.i);
    }
    if (op == "<") return Value::Bool(a < b);
    if (op == ">") return Value::Bool(a > b);
    if (op == "<=") return Value::Bool(a <= b);
    if (op == ">=") return Value::Bool(a >= b);
  } else if (left.kind == Kind::kList && right.kind == Kind::kList) {
    if (op == "+") {
      std::vector<Value> items = *left.list;
      items.insert(items.end(), right.list->begin(), right.list->end());
      return Value::List(std::move(items));
    }
  } else if (right.kind == Kind::kList && is_in) {
    bool member = false;
    for (const Value& x : *right.list) member = member || StrictEquals(x, left);
    return Value::Bool(op == "in" ? member : !member);
  }
  if (op == "+" && (left.is_string() || right.is_string())) {
    LLMUX_ASSIGN_OR_RETURN(std::string a, JsPrimitiveString(left));
    LLMUX_ASSIGN_OR_RETURN(std::string b, JsPrimitiveString(right));
    return Value::Str(a + b);
  }
  if (is_in && left.is_string() && right.is_string()) {
    const bool found = right.s.find(left.s) != std::string::npos;
    return Value::Bool(op == "in" ? found : !found);
  }
  if (is_in && left.is_string() && right.kind == Kind::kDict) {
    const bool found = right.dict->Find(left.s) != nullptr;
    return Value::Bool(op == "in" ? found : !found);
  }
  return InvalidArgument("unknown operator \"" + op + "\" between " +
                         std::string(KindName(left.kind)) + " and " +
                         std::string(KindName(right.kind)));
}

}  // namespace llmux::jinja
