// Load-time check that a parsed template only names what the interpreter implements.
#include <set>
#include <string>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/parser.h"

namespace llmux::jinja {
namespace {

class Checker {
 public:
  explicit Checker(std::string_view source) : source_(source) {}

  void CollectMacros(const std::vector<StmtPtr>& block) {
    for (const auto& s : block) {
      if (s->kind == StmtKind::kMacro) macros_.insert(s->text);
      CollectMacros(s->body);
      CollectMacros(s->alternate);
    }
  }

  Status Block(const std::vector<StmtPtr>& block) {
    for (const auto& s : block) {
      for (const Expr* e : {s->expr.get(), s->target.get(), s->filter.get()}) {
        if (e) LLMUX_RETURN_IF_ERROR(Check(*e));
      }
      for (const auto& p : s->params) LLMUX_RETURN_IF_ERROR(Check(*p));
      LLMUX_RETURN_IF_ERROR(Block(s->body));
      LLMUX_RETURN_IF_ERROR(Block(s->alternate));
    }
    return Status::Ok();
  }

 private:
  Status Unsupported(size_t offset, const std::string& what) const {
    return InvalidArgument("chat template uses an unsupported construct at " +
                           DescribePosition(source_, offset) + ": " + what);
  }

  // The literal test name of selectattr/rejectattr (2nd argument) or select/reject (1st).
  static const Expr* TestNameArgument(const Expr& filter) {
    size_t index = 0;
    if (filter.name == "selectattr" || filter.name == "rejectattr") {
      index = 1;
    } else if (filter.name != "select" && filter.name != "reject") {
      return nullptr;
    }
    if (filter.items.size() <= index) return nullptr;
    const Expr* arg = filter.items[index].get();
    return arg->kind == ExprKind::kLiteral && arg->literal.is_string() ? arg : nullptr;
  }

  Status Check(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kFilter:
        if (!IsSupportedFilter(e.name)) {
          return Unsupported(e.offset, "filter '" + e.name + "' is not supported");
        }
        if (const Expr* test = TestNameArgument(e);
            test && !IsSupportedTest(test->literal.s) && test->literal.s != "==") {
          return Unsupported(test->offset, "test '" + test->literal.s + "' is not supported");
        }
        break;
      case ExprKind::kTest:
        if (!IsSupportedTest(e.name) || e.name == "eq" || e.name == "equalto") {
          return Unsupported(e.offset, "test 'is " + e.name + "' is not supported");
        }
        break;
      case ExprKind::kCall:
        if (e.a->kind == ExprKind::kIdentifier) {
          if (!IsSupportedGlobalFunction(e.a->name) && !macros_.count(e.a->name)) {
            return Unsupported(e.a->offset, "function '" + e.a->name + "()' is not supported");
          }
        } else if (e.a->kind == ExprKind::kMember && !e.a->computed && !e.a->name.empty()) {
          if (!IsSupportedMethod(e.a->name)) {
            return Unsupported(e.a->offset, "method '." + e.a->name + "()' is not supported");
          }
        } else {
          return Unsupported(e.offset, "calling the result of an expression is not supported");
        }
        break;
      default:
        break;
    }
    for (const Expr* child : {e.a.get(), e.b.get(), e.c.get()}) {
      if (child) LLMUX_RETURN_IF_ERROR(Check(*child));
    }
    for (const auto& item : e.items) {
      if (item) LLMUX_RETURN_IF_ERROR(Check(*item));
    }
    return Status::Ok();
  }

  std::string_view source_;
  std::set<std::string> macros_;
};

}  // namespace

Status CheckSupported(std::string_view source, const std::vector<StmtPtr>& program) {
  Checker checker(source);
  checker.CollectMacros(program);
  return checker.Block(program);
}

}  // namespace llmux::jinja
