// Syntax tree of a parsed Jinja template. Built once by the parser and never mutated, so one
// tree may be rendered from many threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace llmux::jinja {

enum class ExprKind {
  kLiteral,     // literal: an int, float or string
  kIdentifier,  // name
  kList,        // items
  kTuple,       // items
  kDict,        // items: key0, value0, key1, value1, ...
  kMember,      // a.name / a[b] / a[items...] (slice: start, stop, step; null when omitted)
  kCall,        // a(items...); keyword arguments are kKeywordArg items
  kKeywordArg,  // name = a
  kUnary,       // name ("not", "-", "+") a
  kBinary,      // a name b
  kFilter,      // a | name  or  a | name(items...)  (has_args)
  kTest,        // a is [not] name
  kSelect,      // a if b  (undefined when b is false)
  kTernary,     // b if a else c
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  size_t offset = 0;  // byte offset in the template source, for error messages
  Value literal;
  std::string name;
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  bool computed = false;  // kMember: a[...] rather than a.name
  bool is_slice = false;  // kMember: a[start:stop:step]
  bool has_args = false;  // kFilter: called with parentheses
  bool negate = false;    // kTest: `is not`
};

enum class StmtKind {
  kText,    // text
  kOutput,  // {{ expr }}
  kIf,      // expr, body, alternate (an elif is a nested kIf in alternate)
  kFor,     // target in expr [if filter]: body, alternate (the for-else block)
  kSet,     // target = expr, or target = rendered body ({% set x %}...{% endset %})
  kMacro,   // name(params): body
  kBreak,
  kContinue,
  kFilterBlock,  // {% filter f %} body {% endfilter %}: filter is a kFilter with a null operand
  kComment,
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;

struct Stmt {
  StmtKind kind;
  size_t offset = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr target;
  ExprPtr filter;
  std::vector<ExprPtr> params;  // kMacro: identifiers or keyword-args with defaults
  std::vector<StmtPtr> body;
  std::vector<StmtPtr> alternate;
};

}  // namespace llmux::jinja
