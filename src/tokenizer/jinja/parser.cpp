#include "tokenizer/jinja/parser.h"

#include <cstdlib>
#include <initializer_list>
#include <set>
#include <utility>

namespace llmux::jinja {
namespace {

class Parser {
 public:
  Parser(std::string_view source, const std::vector<Token>& tokens) : source_(source), t_(tokens) {}

  StatusOr<std::vector<StmtPtr>> Program() {
    std::vector<StmtPtr> body;
    while (cur_ < t_.size()) {
      if (IsEndTag()) return Error(cur_ + 1, "unexpected {% " + t_[cur_ + 1].value + " %}");
      LLMUX_ASSIGN_OR_RETURN(StmtPtr s, Any());
      body.push_back(std::move(s));
    }
    return body;
  }

 private:
  // ---- token helpers ----
  bool Is(TokenType type, size_t ahead = 0) const {
    return cur_ + ahead < t_.size() && t_[cur_ + ahead].type == type;
  }
  bool IsIdent(std::string_view name, size_t ahead = 0) const {
    return Is(TokenType::kIdentifier, ahead) && t_[cur_ + ahead].value == name;
  }
  bool IsStatement(std::initializer_list<std::string_view> names) const {
    if (!Is(TokenType::kOpenStatement) || !Is(TokenType::kIdentifier, 1)) return false;
    for (auto n : names) {
      if (t_[cur_ + 1].value == n) return true;
    }
    return false;
  }
  bool IsEndTag() const {
    return IsStatement({"endif", "endfor", "endset", "endmacro", "endfilter", "elif", "else"});
  }
  size_t Offset(size_t index) const {
    return index < t_.size() ? t_[index].offset : source_.size();
  }
  Status Error(size_t index, const std::string& what) const {
    return InvalidArgument("chat template syntax error at " +
                           DescribePosition(source_, Offset(index)) + ": " + what);
  }
  Status Expect(TokenType type, std::string_view what) {
    if (!Is(type)) {
      return Error(cur_, cur_ < t_.size()
                             ? "expected " + std::string(what) + ", got '" + t_[cur_].value + "'"
                             : "expected " + std::string(what) + " before the end of the template");
    }
    ++cur_;
    return Status::Ok();
  }
  Status ExpectEnd(std::string_view name) {
    LLMUX_RETURN_IF_ERROR(Expect(TokenType::kOpenStatement, "{% " + std::string(name) + " %}"));
    if (!IsIdent(name)) return Error(cur_, "expected '" + std::string(name) + "'");
    ++cur_;
    return Expect(TokenType::kCloseStatement, "'%}'");
  }
  // Parses statements until one of `names` opens the next tag (`names` ends with the
  // closing tag, e.g. endif).
  Status Block(std::initializer_list<std::string_view> names, std::vector<StmtPtr>& out,
               size_t opener, std::string_view what) {
    while (!IsStatement(names)) {
      if (cur_ >= t_.size()) {
        return Error(opener, "{% " + std::string(what) + " %} is never closed (missing {% " +
                                 std::string(*(names.end() - 1)) + " %})");
      }
      if (IsEndTag()) return Error(cur_ + 1, "unexpected {% " + t_[cur_ + 1].value + " %}");
      LLMUX_ASSIGN_OR_RETURN(StmtPtr s, Any());
      out.push_back(std::move(s));
    }
    return Status::Ok();
  }

  static StmtPtr NewStmt(StmtKind kind, size_t offset) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->offset = offset;
    return s;
  }
  static ExprPtr NewExpr(ExprKind kind, size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    return e;
  }

  // ---- statements ----
  StatusOr<StmtPtr> Any() {
    const Token& tok = t_[cur_];
    switch (tok.type) {
      case TokenType::kComment: {
        ++cur_;
        auto s = NewStmt(StmtKind::kComment, tok.offset);
        s->text = tok.value;
        return s;
      }
      case TokenType::kText: {
        ++cur_;
        auto s = NewStmt(StmtKind::kText, tok.offset);
        s->text = tok.value;
        return s;
      }
      case TokenType::kOpenStatement:
        return Statement();
      case TokenType::kOpenExpression: {
        ++cur_;
        auto s = NewStmt(StmtKind::kOutput, tok.offset);
        LLMUX_ASSIGN_OR_RETURN(s->expr, Expression());
        LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseExpression, "'}}'"));
        return s;
      }
      default:
        return Error(cur_, "unexpected '" + tok.value + "'");
    }
  }

  StatusOr<StmtPtr> Statement() {
    const size_t opener = cur_;
    ++cur_;  // {%
    if (!Is(TokenType::kIdentifier)) return Error(cur_, "expected a statement name");
    const std::string name = t_[cur_].value;
    static const std::set<std::string_view> kUnsupported = {
        "call", "include", "extends",    "block", "import", "from",
        "raw",  "with",    "autoescape", "do",    "trans",  "pluralize"};
    if (kUnsupported.count(name)) {
      return InvalidArgument("chat template uses an unsupported construct at " +
                             DescribePosition(source_, Offset(cur_)) + ": {% " + name +
                             " %} is not supported by llmux's Jinja subset");
    }
    ++cur_;
    StmtPtr s;
    if (name == "set") {
      LLMUX_ASSIGN_OR_RETURN(s, Set(opener));
    } else if (name == "if") {
      LLMUX_ASSIGN_OR_RETURN(s, If(opener));
      LLMUX_RETURN_IF_ERROR(ExpectEnd("endif"));
    } else if (name == "for") {
      LLMUX_ASSIGN_OR_RETURN(s, For(opener));
      LLMUX_RETURN_IF_ERROR(ExpectEnd("endfor"));
    } else if (name == "macro") {
      LLMUX_ASSIGN_OR_RETURN(s, Macro(opener));
      LLMUX_RETURN_IF_ERROR(ExpectEnd("endmacro"));
    } else if (name == "break" || name == "continue") {
      s = NewStmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, Offset(opener));
      LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    } else if (name == "filter") {
      s = NewStmt(StmtKind::kFilterBlock, Offset(opener));
      LLMUX_ASSIGN_OR_RETURN(s->filter, FilterSpec(nullptr));
      LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
      LLMUX_RETURN_IF_ERROR(Block({"endfilter"}, s->body, opener, "filter"));
      LLMUX_RETURN_IF_ERROR(ExpectEnd("endfilter"));
    } else {
      return Error(cur_ - 1, "unknown statement '" + name + "'");
    }
    return s;
  }

  StatusOr<StmtPtr> Set(size_t opener) {
    auto s = NewStmt(StmtKind::kSet, Offset(opener));
    LLMUX_ASSIGN_OR_RETURN(s->target, Sequence(false));
    if (Is(TokenType::kEquals)) {
      ++cur_;
      LLMUX_ASSIGN_OR_RETURN(s->expr, Sequence(false));
    } else {
      LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'=' or '%}'"));
      LLMUX_RETURN_IF_ERROR(Block({"endset"}, s->body, opener, "set"));
      LLMUX_RETURN_IF_ERROR(Expect(TokenType::kOpenStatement, "{% endset %}"));
      ++cur_;  // endset
    }
    LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    const ExprKind k = s->target->kind;
    if (k != ExprKind::kIdentifier && k != ExprKind::kTuple &&
        !(k == ExprKind::kMember && !s->target->computed)) {
      return Error(opener + 2, "cannot assign to this expression");
    }
    return s;
  }

  StatusOr<StmtPtr> If(size_t opener) {
    auto s = NewStmt(StmtKind::kIf, Offset(opener));
    LLMUX_ASSIGN_OR_RETURN(s->expr, Expression());
    LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    LLMUX_RETURN_IF_ERROR(Block({"elif", "else", "endif"}, s->body, opener, "if"));
    if (IsStatement({"elif"})) {
      const size_t elif = cur_;
      cur_ += 2;
      LLMUX_ASSIGN_OR_RETURN(StmtPtr nested, If(elif));
      s->alternate.push_back(std::move(nested));
    } else if (IsStatement({"else"})) {
      cur_ += 2;
      LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
      LLMUX_RETURN_IF_ERROR(Block({"endif"}, s->alternate, opener, "if"));
    }
    return s;
  }

  StatusOr<StmtPtr> For(size_t opener) {
    auto s = NewStmt(StmtKind::kFor, Offset(opener));
    LLMUX_ASSIGN_OR_RETURN(s->target, Sequence(true));
    if (s->target->kind != ExprKind::kIdentifier && s->target->kind != ExprKind::kTuple) {
      return Error(opener + 2, "expected a name or names for the loop variable");
    }
    if (!IsIdent("in")) return Error(cur_, "expected 'in' after the loop variable");
    ++cur_;
    LLMUX_ASSIGN_OR_RETURN(ExprPtr iterable, Expression());
    if (iterable->kind == ExprKind::kSelect) {  // for x in xs if cond
      s->expr = std::move(iterable->a);
      s->filter = std::move(iterable->b);
    } else {
      s->expr = std::move(iterable);
    }
    LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    LLMUX_RETURN_IF_ERROR(Block({"else", "endfor"}, s->body, opener, "for"));
    if (IsStatement({"else"})) {
      cur_ += 2;
      LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
      LLMUX_RETURN_IF_ERROR(Block({"endfor"}, s->alternate, opener, "for"));
    }
    return s;
  }

  StatusOr<StmtPtr> Macro(size_t opener) {
    auto s = NewStmt(StmtKind::kMacro, Offset(opener));
    if (!Is(TokenType::kIdentifier)) return Error(cur_, "expected the macro's name");
    s->text = t_[cur_++].value;
    LLMUX_ASSIGN_OR_RETURN(s->params, Args(/*parameters=*/true));
    LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseStatement, "'%}'"));
    LLMUX_RETURN_IF_ERROR(Block({"endmacro"}, s->body, opener, "macro"));
    return s;
  }

  // ---- expressions ----
  // a, b, c -> tuple (for set targets/values and loop variables).
  StatusOr<ExprPtr> Sequence(bool primary) {
    const size_t start = Offset(cur_);
    LLMUX_ASSIGN_OR_RETURN(ExprPtr first, primary ? Primary() : Expression());
    if (!Is(TokenType::kComma)) return first;
    auto tuple = NewExpr(ExprKind::kTuple, start);
    tuple->items.push_back(std::move(first));
    while (Is(TokenType::kComma)) {
      ++cur_;
      LLMUX_ASSIGN_OR_RETURN(ExprPtr next, primary ? Primary() : Expression());
      tuple->items.push_back(std::move(next));
    }
    return tuple;
  }

  StatusOr<ExprPtr> Expression() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr a, Or());
    if (!IsIdent("if")) return a;
    const size_t at = Offset(cur_++);
    LLMUX_ASSIGN_OR_RETURN(ExprPtr test, Or());
    if (IsIdent("else")) {
      ++cur_;
      auto e = NewExpr(ExprKind::kTernary, at);
      e->a = std::move(test);
      e->b = std::move(a);
      LLMUX_ASSIGN_OR_RETURN(e->c, Expression());
      return e;
    }
    auto e = NewExpr(ExprKind::kSelect, at);
    e->a = std::move(a);
    e->b = std::move(test);
    return e;
  }

  ExprPtr Binary(std::string op, ExprPtr a, ExprPtr b, size_t offset) {
    auto e = NewExpr(ExprKind::kBinary, offset);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  StatusOr<ExprPtr> Or() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr left, And());
    while (IsIdent("or")) {
      const size_t at = Offset(cur_++);
      LLMUX_ASSIGN_OR_RETURN(ExprPtr right, And());
      left = Binary("or", std::move(left), std::move(right), at);
    }
    return left;
  }

  StatusOr<ExprPtr> And() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr left, Not());
    while (IsIdent("and")) {
      const size_t at = Offset(cur_++);
      LLMUX_ASSIGN_OR_RETURN(ExprPtr right, Not());
      left = Binary("and", std::move(left), std::move(right), at);
    }
    return left;
  }

  StatusOr<ExprPtr> Not() {
    if (!IsIdent("not")) return Comparison();
    auto e = NewExpr(ExprKind::kUnary, Offset(cur_++));
    e->name = "not";
    LLMUX_ASSIGN_OR_RETURN(e->a, Not());
    return e;
  }

  StatusOr<ExprPtr> Comparison() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr left, Additive());
    while (true) {
      std::string op;
      const size_t at = Offset(cur_);
      if (IsIdent("not") && IsIdent("in", 1)) {
        op = "not in";
        cur_ += 2;
      } else if (IsIdent("in") || Is(TokenType::kComparisonOperator)) {
        op = t_[cur_++].value;
      } else {
        return left;
      }
      LLMUX_ASSIGN_OR_RETURN(ExprPtr right, Additive());
      left = Binary(std::move(op), std::move(left), std::move(right), at);
    }
  }

  StatusOr<ExprPtr> Additive() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr left, Multiplicative());
    while (Is(TokenType::kAdditiveOperator)) {
      const size_t at = Offset(cur_);
      std::string op = t_[cur_++].value;
      LLMUX_ASSIGN_OR_RETURN(ExprPtr right, Multiplicative());
      left = Binary(std::move(op), std::move(left), std::move(right), at);
    }
    return left;
  }

  StatusOr<ExprPtr> Multiplicative() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr left, Power());
    while (Is(TokenType::kMultiplicativeOperator)) {
      const size_t at = Offset(cur_);
      std::string op = t_[cur_++].value;
      LLMUX_ASSIGN_OR_RETURN(ExprPtr right, Power());
      left = Binary(std::move(op), std::move(left), std::move(right), at);
    }
    return left;
  }

  StatusOr<ExprPtr> Power() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr left, Test());
    while (Is(TokenType::kExponentiationOperator)) {
      const size_t at = Offset(cur_++);
      LLMUX_ASSIGN_OR_RETURN(ExprPtr right, Test());
      left = Binary("**", std::move(left), std::move(right), at);
    }
    return left;
  }

  StatusOr<ExprPtr> Test() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr operand, Filter());
    while (IsIdent("is")) {
      auto e = NewExpr(ExprKind::kTest, Offset(cur_++));
      if (IsIdent("not")) {
        e->negate = true;
        ++cur_;
      }
      if (!Is(TokenType::kIdentifier)) return Error(cur_, "expected the name of a test");
      // `is none`/`is true`/`is false` are identifiers too.
      e->name = t_[cur_++].value;
      e->a = std::move(operand);
      operand = std::move(e);
    }
    return operand;
  }

  StatusOr<ExprPtr> Filter() {
    LLMUX_ASSIGN_OR_RETURN(ExprPtr operand, UnarySign());
    while (Is(TokenType::kPipe)) {
      ++cur_;
      LLMUX_ASSIGN_OR_RETURN(operand, FilterSpec(std::move(operand)));
    }
    return operand;
  }

  // `name` or `name(args)` after a '|' (or in {% filter %}).
  StatusOr<ExprPtr> FilterSpec(ExprPtr operand) {
    if (!Is(TokenType::kIdentifier)) return Error(cur_, "expected the name of a filter");
    auto e = NewExpr(ExprKind::kFilter, Offset(cur_));
    e->name = t_[cur_++].value;
    e->a = std::move(operand);
    if (Is(TokenType::kOpenParen)) {
      e->has_args = true;
      LLMUX_ASSIGN_OR_RETURN(e->items, Args(false));
    }
    return e;
  }

  StatusOr<ExprPtr> UnarySign() {
    if ((Is(TokenType::kUnaryOperator) || Is(TokenType::kAdditiveOperator)) &&
        (t_[cur_].value == "-" || t_[cur_].value == "+")) {
      auto e = NewExpr(ExprKind::kUnary, Offset(cur_));
      e->name = t_[cur_++].value;
      LLMUX_ASSIGN_OR_RETURN(e->a, UnarySign());
      return e;
    }
    LLMUX_ASSIGN_OR_RETURN(ExprPtr primary, Primary());
    LLMUX_ASSIGN_OR_RETURN(ExprPtr member, Member(std::move(primary)));
    while (Is(TokenType::kOpenParen)) {
      auto call = NewExpr(ExprKind::kCall, member->offset);
      call->a = std::move(member);
      LLMUX_ASSIGN_OR_RETURN(call->items, Args(false));
      LLMUX_ASSIGN_OR_RETURN(member, Member(std::move(call)));
    }
    return member;
  }

  StatusOr<std::vector<ExprPtr>> Args(bool parameters) {
    LLMUX_RETURN_IF_ERROR(Expect(TokenType::kOpenParen, "'('"));
    std::vector<ExprPtr> args;
    bool saw_keyword = false;
    std::set<std::string> names;
    while (!Is(TokenType::kCloseParen)) {
      if (cur_ >= t_.size()) return Error(cur_, "expected ')' before the end of the template");
      if (Is(TokenType::kExponentiationOperator) ||
          (Is(TokenType::kMultiplicativeOperator) && t_[cur_].value == "*")) {
        return InvalidArgument("chat template uses an unsupported construct at " +
                               DescribePosition(source_, Offset(cur_)) +
                               ": argument unpacking (* / **) is not supported");
      }
      const size_t at = Offset(cur_);
      LLMUX_ASSIGN_OR_RETURN(ExprPtr arg, Expression());
      if (Is(TokenType::kEquals)) {
        ++cur_;
        if (arg->kind != ExprKind::kIdentifier)
          return Error(cur_ - 1, "expected a name before '='");
        auto kw = NewExpr(ExprKind::kKeywordArg, at);
        kw->name = arg->name;
        LLMUX_ASSIGN_OR_RETURN(kw->a, Expression());
        arg = std::move(kw);
        saw_keyword = true;
      } else if (saw_keyword) {
        return Error(cur_, parameters ? "non-default parameter follows a default one"
                                      : "positional argument follows a keyword argument");
      }
      if (parameters) {
        if (arg->kind != ExprKind::kIdentifier && arg->kind != ExprKind::kKeywordArg) {
          return Error(cur_, "expected a parameter name");
        }
        if (!names.insert(arg->name).second) return Error(cur_, "duplicate parameter " + arg->name);
      }
      args.push_back(std::move(arg));
      if (Is(TokenType::kComma)) ++cur_;
    }
    ++cur_;  // ')'
    return args;
  }

  StatusOr<ExprPtr> Member(ExprPtr object) {
    while (Is(TokenType::kDot) || Is(TokenType::kOpenSquareBracket)) {
      const bool computed = Is(TokenType::kOpenSquareBracket);
      auto e = NewExpr(ExprKind::kMember, Offset(cur_++));
      e->computed = computed;
      e->a = std::move(object);
      if (computed) {
        LLMUX_RETURN_IF_ERROR(Subscript(*e));
        LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseSquareBracket, "']'"));
      } else {
        if (Is(TokenType::kIdentifier)) {
          e->name = t_[cur_++].value;
        } else if (Is(TokenType::kNumericLiteral) &&
                   t_[cur_].value.find('.') == std::string::npos) {
          auto idx = NewExpr(ExprKind::kLiteral, Offset(cur_));
          idx->literal = Value::Int(std::strtoll(t_[cur_++].value.c_str(), nullptr, 10));
          e->b = std::move(idx);
        } else {
          return Error(cur_, "expected a name or an integer after '.'");
        }
      }
      object = std::move(e);
    }
    return object;
  }

  // Inside [...]: one index expression, or up to three slice parts.
  Status Subscript(Expr& e) {
    std::vector<ExprPtr> parts;
    bool slice = false;
    while (!Is(TokenType::kCloseSquareBracket)) {
      if (cur_ >= t_.size()) return Error(cur_, "expected ']' before the end of the template");
      if (Is(TokenType::kColon)) {
        parts.push_back(nullptr);
        ++cur_;
        slice = true;
      } else {
        LLMUX_ASSIGN_OR_RETURN(ExprPtr part, Expression());
        parts.push_back(std::move(part));
        if (Is(TokenType::kColon)) {
          ++cur_;
          slice = true;
        }
      }
    }
    if (parts.empty()) return Error(cur_, "expected an index or a slice inside []");
    if (slice) {
      if (parts.size() > 3) return Error(cur_, "a slice takes at most 3 parts");
      e.is_slice = true;
      parts.resize(3);
      e.items = std::move(parts);
    } else {
      e.b = std::move(parts[0]);
    }
    return Status::Ok();
  }

  StatusOr<ExprPtr> Primary() {
    if (cur_ >= t_.size()) return Error(cur_, "expected an expression before the end");
    const Token& tok = t_[cur_++];
    switch (tok.type) {
      case TokenType::kNumericLiteral: {
        auto e = NewExpr(ExprKind::kLiteral, tok.offset);
        if (tok.value.find('.') != std::string::npos) {
          e->literal = Value::Float(std::strtod(tok.value.c_str(), nullptr));
        } else {
          e->literal = Value::Int(std::strtoll(tok.value.c_str(), nullptr, 10));
        }
        return e;
      }
      case TokenType::kStringLiteral: {
        auto e = NewExpr(ExprKind::kLiteral, tok.offset);
        std::string value = tok.value;
        while (Is(TokenType::kStringLiteral)) value += t_[cur_++].value;  // "a" "b"
        e->literal = Value::Str(std::move(value));
        return e;
      }
      case TokenType::kIdentifier: {
        auto e = NewExpr(ExprKind::kIdentifier, tok.offset);
        e->name = tok.value;
        return e;
      }
      case TokenType::kOpenParen: {
        LLMUX_ASSIGN_OR_RETURN(ExprPtr inner, Sequence(false));
        LLMUX_RETURN_IF_ERROR(Expect(TokenType::kCloseParen, "')'"));
        return inner;
      }
      case TokenType::kOpenSquareBracket: {
        auto e = NewExpr(ExprKind::kList, tok.offset);
        while (!Is(TokenType::kCloseSquareBracket)) {
          if (cur_ >= t_.size()) return Error(cur_, "expected ']' before the end");
          LLMUX_ASSIGN_OR_RETURN(ExprPtr item, Expression());
          e->items.push_back(std::move(item));
          if (Is(TokenType::kComma)) ++cur_;
        }
        ++cur_;
        return e;
      }
      case TokenType::kOpenCurlyBracket: {
        auto e = NewExpr(ExprKind::kDict, tok.offset);
        while (!Is(TokenType::kCloseCurlyBracket)) {
          if (cur_ >= t_.size()) return Error(cur_, "expected '}' before the end");
          LLMUX_ASSIGN_OR_RETURN(ExprPtr key, Expression());
          LLMUX_RETURN_IF_ERROR(Expect(TokenType::kColon, "':' between key and value"));
          LLMUX_ASSIGN_OR_RETURN(ExprPtr value, Expression());
          e->items.push_back(std::move(key));
          e->items.push_back(std::move(value));
          if (Is(TokenType::kComma)) ++cur_;
        }
        ++cur_;
        return e;
      }
      default:
        return Error(cur_ - 1, "unexpected '" + tok.value + "'");
    }
  }

  std::string_view source_;
  const std::vector<Token>& t_;
  size_t cur_ = 0;
};

}  // namespace

StatusOr<std::vector<StmtPtr>> Parse(std::string_view source, const std::vector<Token>& tokens) {
  return Parser(source, tokens).Program();
}

}  // namespace llmux::jinja
