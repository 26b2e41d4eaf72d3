// Filters and tests, by operand type as @huggingface/jinja dispatches them.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>
#include <utility>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/text.h"

namespace llmux::jinja {

namespace {

const std::set<std::string_view> kFilters = {
    "safe",       "tojson",  "list",     "first",  "last",    "length",     "reverse",
    "sort",       "join",    "string",   "unique", "upper",   "lower",      "title",
    "capitalize", "trim",    "indent",   "int",    "float",   "abs",        "items",
    "keys",       "values",  "dictsort", "bool",   "default", "selectattr", "rejectattr",
    "map",        "replace", "select",   "reject", "count"};

const std::set<std::string_view> kTests = {"boolean",  "callable",  "odd",      "even",   "false",
                                           "true",     "none",      "string",   "number", "integer",
                                           "iterable", "mapping",   "sequence", "lower",  "upper",
                                           "defined",  "undefined", "equalto",  "eq"};

Status CannotApply(std::string_view filter, const Value& operand) {
  return InvalidArgument("cannot apply filter \"" + std::string(filter) +
                         "\" to type: " + std::string(KindName(operand.kind)));
}

// JS parseInt(s, 10): optional whitespace and sign, then the leading digits.
std::optional<int64_t> JsParseInt(const std::string& s) {
  const std::string t = JsTrimStart(s);
  size_t k = 0;
  const bool neg = k < t.size() && t[k] == '-';
  if (k < t.size() && (t[k] == '-' || t[k] == '+')) ++k;
  const size_t digits = k;
  while (k < t.size() && t[k] >= '0' && t[k] <= '9') ++k;
  if (k == digits) return std::nullopt;
  const int64_t v = std::strtoll(t.substr(digits, k - digits).c_str(), nullptr, 10);
  return neg ? -v : v;
}

// JS parseFloat: the longest leading decimal literal.
std::optional<double> JsParseFloat(const std::string& s) {
  const std::string t = JsTrimStart(s);
  size_t k = 0;
  if (k < t.size() && (t[k] == '-' || t[k] == '+')) ++k;
  if (t.compare(k, 8, "Infinity") == 0) return t[0] == '-' ? -INFINITY : INFINITY;
  const size_t mantissa = k;
  while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k;
  if (k < t.size() && t[k] == '.') {
    ++k;
    while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k;
  }
  if (k == mantissa || (k == mantissa + 1 && t[mantissa] == '.')) return std::nullopt;
  if (k < t.size() && (t[k] == 'e' || t[k] == 'E')) {
    size_t e = k + 1;
    if (e < t.size() && (t[e] == '-' || t[e] == '+')) ++e;
    const size_t exp_digits = e;
    while (e < t.size() && std::isdigit(static_cast<unsigned char>(t[e]))) ++e;
    if (e > exp_digits) k = e;
  }
  return std::strtod(t.substr(0, k).c_str(), nullptr);
}

std::string Indent(const std::string& s, int64_t width, bool first, bool blank) {
  const std::vector<std::string> lines = SplitOn(s, "\n", -1);
  const std::string pad(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k > 0) out += "\n";
    const bool keep = (!first && k == 0) || (!blank && lines[k].empty());
    out += keep ? lines[k] : pad + lines[k];
  }
  return out;
}

// Array.prototype.join on payloads: none/undefined join as "".
StatusOr<std::string> JoinValues(const std::vector<Value>& items, const std::string& sep) {
  std::string out;
  for (size_t k = 0; k < items.size(); ++k) {
    if (k > 0) out += sep;
    if (items[k].is_none() || items[k].is_undefined()) continue;
    LLMUX_ASSIGN_OR_RETURN(std::string s, JsPrimitiveString(items[k]));
    out += s;
  }
  return out;
}

StatusOr<Value> SortList(std::vector<Value> items, bool reverse, bool case_sensitive,
                         const Value& attribute);

// `item.a.b` for map(attribute=...) and sort(attribute=...).
Value AttributePath(const Value& item, const std::string& path) {
  Value v = item;
  for (const std::string& part : SplitOn(path, ".", -1)) {
    if (v.is_attribute_container()) {
      const Value* found = v.dict->Find(part);
      v = found ? *found : Value::Undefined();
    } else if (v.is_list()) {
      char* end = nullptr;
      const long long k = std::strtoll(part.c_str(), &end, 10);
      if (end == part.c_str() || k < 0 || k >= static_cast<long long>(v.list->size())) {
        return Value::Undefined();
      }
      v = (*v.list)[static_cast<size_t>(k)];
    } else {
      return Value::Undefined();
    }
  }
  return v;
}

StatusOr<Value> SortList(std::vector<Value> items, bool reverse, bool case_sensitive,
                         const Value& attribute) {
  Status error;
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    Value a = x, b = y;
    if (!attribute.is_none()) {
      const std::string path =
          attribute.kind == Kind::kInt ? std::to_string(attribute.i) : attribute.s;
      a = AttributePath(x, path);
      b = AttributePath(y, path);
    }
    auto c = CompareValues(a, b, case_sensitive);
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return reverse ? *c > 0 : *c < 0;
  });
  LLMUX_RETURN_IF_ERROR(error);
  return Value::List(std::move(items));
}

// select/reject (Python Jinja; the reference lacks them): keep the items that pass
// `test` (with `arg` for equalto), or that are truthy without a test.
StatusOr<Value> SelectItems(const Value& list, bool select, const CallArgs& args) {
  std::vector<Value> out;
  for (const Value& item : *list.list) {
    bool pass = item.Truthy();
    if (!args.positional.empty()) {
      if (!args.positional[0].is_string()) return InvalidArgument("test name must be a string");
      const std::string& test = args.positional[0].s;
      if (test == "equalto" || test == "eq" || test == "==") {
        pass = args.positional.size() > 1 && StrictEquals(item, args.positional[1]);
      } else {
        LLMUX_ASSIGN_OR_RETURN(pass, ApplyTest(test, item));
      }
    }
    if (pass == select) out.push_back(item);
  }
  return Value::List(std::move(out));
}

StatusOr<Value> FilterWithoutArgs(const std::string& name, const Value& v) {
  if (name == "safe") return v;
  if (name == "tojson") {
    LLMUX_ASSIGN_OR_RETURN(std::string json, ToJson(v, JsonOptions{}, true));
    return Value::Str(std::move(json));
  }
  switch (v.kind) {
    case Kind::kList: {
      const auto& items = *v.list;
      if (name == "list") return v;
      if (name == "first") return items.empty() ? Value::Undefined() : items.front();
      if (name == "last") return items.empty() ? Value::Undefined() : items.back();
      if (name == "length" || name == "count") {
        return Value::Int(static_cast<int64_t>(items.size()));
      }
      if (name == "select" || name == "reject") return SelectItems(v, name == "select", {});
      if (name == "reverse") return Value::List(std::vector<Value>(items.rbegin(), items.rend()));
      if (name == "sort") return SortList(items, false, false, Value::None());
      if (name == "join") {
        LLMUX_ASSIGN_OR_RETURN(std::string s, JoinValues(items, ""));
        return Value::Str(std::move(s));
      }
      if (name == "string") {
        LLMUX_ASSIGN_OR_RETURN(std::string s, ToJson(v, JsonOptions{}, false));
        return Value::Str(std::move(s));
      }
      if (name == "unique") {
        std::vector<Value> out;
        for (const Value& x : items) {
          bool seen = false;
          for (const Value& y : out) seen = seen || StrictEquals(x, y);
          if (!seen) out.push_back(x);
        }
        return Value::List(std::move(out));
      }
      return InvalidArgument("unknown ArrayValue filter: " + name);
    }
    case Kind::kString: {
      if (name == "length" || name == "count") {
        return Value::Int(static_cast<int64_t>(Utf16Length(v.s)));
      }
      if (name == "upper") return Value::Str(JsToUpper(v.s));
      if (name == "lower") return Value::Str(JsToLower(v.s));
      if (name == "title") return Value::Str(JsTitle(v.s));
      if (name == "capitalize") return Value::Str(JsCapitalize(v.s));
      if (name == "trim") return Value::Str(JsTrim(v.s));
      if (name == "indent") return Value::Str(Indent(v.s, 4, false, false));
      if (name == "join" || name == "string") return v;
      if (name == "int") return Value::Int(JsParseInt(v.s).value_or(0));
      if (name == "float") return Value::Float(JsParseFloat(v.s).value_or(0));
      return InvalidArgument("unknown StringValue filter: " + name);
    }
    case Kind::kInt:
    case Kind::kFloat: {
      const bool is_int = v.kind == Kind::kInt;
      if (name == "abs") return is_int ? Value::Int(std::llabs(v.i)) : Value::Float(std::fabs(v.f));
      if (name == "int") return is_int ? v : Value::Int(static_cast<int64_t>(std::floor(v.f)));
      if (name == "float") return Value::Float(v.number());
      if (name == "string") {
        LLMUX_ASSIGN_OR_RETURN(std::string s, ToOutputString(v));
        return Value::Str(std::move(s));
      }
      return InvalidArgument("unknown NumericValue filter: " + name);
    }
    case Kind::kDict: {
      if (name == "items") return DictItems(*v.dict);
      if (name == "length") return Value::Int(static_cast<int64_t>(v.dict->entries.size()));
      if (IsSupportedMethod(name) && name != "get") return CallDictMethod(v.dict, name, {});
      return InvalidArgument("unknown ObjectValue filter: " + name);
    }
    case Kind::kBool: {
      if (name == "bool") return v;
      if (name == "int") return Value::Int(v.b ? 1 : 0);
      if (name == "float") return Value::Float(v.b ? 1 : 0);
      if (name == "string") return Value::Str(v.b ? "true" : "false");
      return InvalidArgument("unknown BooleanValue filter: " + name);
    }
    default:
      return CannotApply(name, v);
  }
}

StatusOr<Value> SelectAttr(Interpreter& interp, const Value& operand, const Expr& filter,
                           Environment& env) {
  const bool select = filter.name == "selectattr";
  for (const Value& item : *operand.list) {
    if (!item.is_attribute_container()) {
      return InvalidArgument("`" + filter.name + "` can only be applied to array of objects");
    }
  }
  std::vector<Value> args;
  for (const auto& a : filter.items) {
    if (a->kind != ExprKind::kLiteral || !a->literal.is_string()) {
      return InvalidArgument("arguments of `" + filter.name + "` must be strings");
    }
    args.push_back(a->literal);
  }
  if (args.empty()) return InvalidArgument("`" + filter.name + "` needs an attribute name");
  std::vector<Value> out;
  for (const Value& item : *operand.list) {
    const Value* a = item.dict->Find(args[0].s);
    bool result = false;
    if (a != nullptr) {
      if (args.size() < 2) {
        result = a->Truthy();
      } else if (args[1].s == "equalto" || args[1].s == "eq") {
        result = args.size() > 2 && StrictEquals(*a, args[2]);
      } else {
        LLMUX_ASSIGN_OR_RETURN(result, ApplyTest(args[1].s, *a));
      }
    }
    if (result == select) out.push_back(item);
  }
  (void)interp;
  (void)env;
  return Value::List(std::move(out));
}

StatusOr<Value> FilterWithArgs(Interpreter& interp, const Value& v, const Expr& filter,
                               Environment& env) {
  const std::string& name = filter.name;
  if (name == "selectattr" || name == "rejectattr") {
    if (!v.is_list()) return CannotApply(name, v);
    return SelectAttr(interp, v, filter, env);
  }
  LLMUX_ASSIGN_OR_RETURN(CallArgs args, interp.EvalArgs(filter.items, env));
  auto arg = [&](size_t pos, std::string_view kw, Value fallback) {
    if (pos < args.positional.size()) return args.positional[pos];
    if (const Value* x = args.Keyword(kw)) return *x;
    return fallback;
  };
  if (name == "tojson") {
    JsonOptions o;
    const Value indent = arg(99, "indent", Value::None());
    const Value ensure_ascii = arg(99, "ensure_ascii", Value::Bool(false));
    const Value sort_keys = arg(99, "sort_keys", Value::Bool(false));
    const Value separators = arg(99, "separators", Value::None());
    if (indent.kind != Kind::kInt && !indent.is_none()) {
      return InvalidArgument("if set, indent must be a number");
    }
    if (ensure_ascii.kind != Kind::kBool) return InvalidArgument("ensure_ascii must be a boolean");
    if (sort_keys.kind != Kind::kBool) return InvalidArgument("sort_keys must be a boolean");
    if (indent.kind == Kind::kInt) o.indent = indent.i;
    o.ensure_ascii = ensure_ascii.b;
    o.sort_keys = sort_keys.b;
    if (separators.is_list()) {
      if (separators.list->size() != 2 || !(*separators.list)[0].is_string() ||
          !(*separators.list)[1].is_string()) {
        return InvalidArgument("separators must be a tuple of two strings");
      }
      o.separators = std::make_pair((*separators.list)[0].s, (*separators.list)[1].s);
    } else if (!separators.is_none()) {
      return InvalidArgument("if set, separators must be a tuple of two strings");
    }
    LLMUX_ASSIGN_OR_RETURN(std::string json, ToJson(v, o, true));
    return Value::Str(std::move(json));
  }
  if (name == "join") {
    const Value sep = arg(0, "separator", Value::Str(""));
    if (!sep.is_string()) return InvalidArgument("separator must be a string");
    std::vector<Value> items;
    if (v.is_string()) {
      for (auto& c : SplitCodePoints(v.s)) items.push_back(Value::Str(c));
    } else if (v.is_list()) {
      items = *v.list;
    } else {
      return CannotApply(name, v);
    }
    LLMUX_ASSIGN_OR_RETURN(std::string s, JoinValues(items, sep.s));
    return Value::Str(std::move(s));
  }
  if (name == "int" || name == "float") {
    const bool to_int = name == "int";
    const Value fallback = arg(0, "default", to_int ? Value::Int(0) : Value::Float(0));
    if (v.is_string()) {
      if (to_int) {
        auto parsed = JsParseInt(v.s);
        return parsed ? Value::Int(*parsed) : fallback;
      }
      auto parsed = JsParseFloat(v.s);
      return parsed ? Value::Float(*parsed) : fallback;
    }
    if (v.is_number()) return v;
    if (v.kind == Kind::kBool) return to_int ? Value::Int(v.b) : Value::Float(v.b);
    return CannotApply(name, v);
  }
  if (name == "default") {
    const Value fallback = args.positional.empty() ? Value::Str("") : args.positional[0];
    const Value boolean = arg(1, "boolean", Value::Bool(false));
    if (boolean.kind != Kind::kBool)
      return InvalidArgument("`default` filter flag must be a boolean");
    if (v.is_undefined() || (boolean.b && !v.Truthy())) return fallback;
    return v;
  }
  if (v.is_list()) {
    if (name == "select" || name == "reject") return SelectItems(v, name == "select", args);
    if (name == "sort") {
      const Value reverse = arg(0, "reverse", Value::Bool(false));
      const Value case_sensitive = arg(1, "case_sensitive", Value::Bool(false));
      const Value attribute = arg(2, "attribute", Value::None());
      if (reverse.kind != Kind::kBool || case_sensitive.kind != Kind::kBool) {
        return InvalidArgument("reverse and case_sensitive must be booleans");
      }
      if (!attribute.is_string() && attribute.kind != Kind::kInt && !attribute.is_none()) {
        return InvalidArgument("attribute must be a string, integer, or null");
      }
      return SortList(*v.list, reverse.b, case_sensitive.b, attribute);
    }
    if (name == "map") {
      const Value* attribute = args.Keyword("attribute");
      if (attribute == nullptr) {
        return InvalidArgument("`map` expressions without `attribute` set are not supported");
      }
      if (!attribute->is_string()) return InvalidArgument("attribute must be a string");
      const Value* fallback = args.Keyword("default");
      std::vector<Value> out;
      for (const Value& item : *v.list) {
        if (!item.is_attribute_container())
          return InvalidArgument("items in map must be an object");
        Value x = AttributePath(item, attribute->s);
        out.push_back(x.is_undefined() && fallback ? *fallback : x);
      }
      return Value::List(std::move(out));
    }
    return InvalidArgument("unknown ArrayValue filter: " + name);
  }
  if (v.is_string()) {
    if (name == "indent") {
      const Value width = arg(0, "width", Value::Int(4));
      if (width.kind != Kind::kInt) return InvalidArgument("width must be a number");
      const Value first = arg(1, "first", Value::Bool(false));
      const Value blank = arg(2, "blank", Value::Bool(false));
      return Value::Str(Indent(v.s, width.i, first.Truthy(), blank.Truthy()));
    }
    if (name == "replace") {
      LLMUX_ASSIGN_OR_RETURN(Value method, GetMember(v, Value::Str("replace")));
      return (*method.fn)(std::move(args), env);
    }
    return InvalidArgument("unknown StringValue filter: " + name);
  }
  if (v.kind == Kind::kDict) {
    if (IsSupportedMethod(name)) return CallDictMethod(v.dict, name, args);
    return InvalidArgument("unknown ObjectValue filter: " + name);
  }
  return CannotApply(name, v);
}

}  // namespace

bool IsSupportedFilter(std::string_view name) { return kFilters.count(name) > 0; }
bool IsSupportedTest(std::string_view name) { return kTests.count(name) > 0; }

// compareRuntimeValues: none/undefined only equal themselves, numbers (and booleans) compare
// numerically, strings bytewise (lower-cased unless case_sensitive).
StatusOr<int> CompareValues(const Value& a, const Value& b, bool case_sensitive) {
  auto fail = [&] {
    return InvalidArgument("cannot compare " + std::string(KindName(a.kind)) + " with " +
                           std::string(KindName(b.kind)));
  };
  if (a.is_none() || b.is_none()) return a.is_none() && b.is_none() ? StatusOr<int>(0) : fail();
  if (a.is_undefined() || b.is_undefined()) {
    return a.is_undefined() && b.is_undefined() ? StatusOr<int>(0) : fail();
  }
  const bool an = a.is_number() || a.kind == Kind::kBool;
  const bool bn = b.is_number() || b.kind == Kind::kBool;
  if (an && bn) return a.number() < b.number() ? -1 : a.number() > b.number() ? 1 : 0;
  if (a.kind != b.kind || !a.is_string()) return fail();
  const std::string x = case_sensitive ? a.s : JsToLower(a.s);
  const std::string y = case_sensitive ? b.s : JsToLower(b.s);
  return x < y ? -1 : x > y ? 1 : 0;
}

StatusOr<Value> ApplyFilter(Interpreter& interp, const Value& operand, const Expr& filter,
                            Environment& env) {
  // NOTE: a bare `| default` is accepted as `default()`; the reference rejects it.
  if (filter.has_args || filter.name == "default") {
    return FilterWithArgs(interp, operand, filter, env);
  }
  return FilterWithoutArgs(filter.name, operand);
}

StatusOr<bool> ApplyTest(std::string_view name, const Value& v) {
  if (name == "boolean") return v.kind == Kind::kBool;
  if (name == "callable") return v.kind == Kind::kFunction;
  if (name == "odd" || name == "even") {
    if (v.kind != Kind::kInt) {
      return InvalidArgument("cannot " + std::string(name) + " on " +
                             std::string(KindName(v.kind)));
    }
    return (v.i % 2 != 0) == (name == "odd");
  }
  if (name == "false") return v.kind == Kind::kBool && !v.b;
  if (name == "true") return v.kind == Kind::kBool && v.b;
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind == Kind::kInt;
  if (name == "iterable") return (v.is_list() && !v.tuple) || v.is_string();
  if (name == "mapping") return v.kind == Kind::kDict;
  if (name == "sequence") return v.is_list() || v.kind == Kind::kDict || v.is_string();
  if (name == "lower") return v.is_string() && v.s == JsToLower(v.s);
  if (name == "upper") return v.is_string() && v.s == JsToUpper(v.s);
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "equalto" || name == "eq") {
    return InvalidArgument("test '" + std::string(name) + "' needs a value to compare with");
  }
  return InvalidArgument("unknown test: " + std::string(name));
}

}  // namespace llmux::jinja
