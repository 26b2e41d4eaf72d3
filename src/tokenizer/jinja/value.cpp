#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "tokenizer/jinja/text.h"

namespace llmux::jinja {

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::Set(std::string key, Value value) {
  for (auto& [k, v] : entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::Keyword(std::string_view name) const {
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value Value::None() {
  Value v;
  v.kind = Kind::kNone;
  return v;
}
Value Value::Bool(bool x) {
  Value v;
  v.kind = Kind::kBool;
  v.b = x;
  return v;
}
Value Value::Int(int64_t x) {
  Value v;
  v.kind = Kind::kInt;
  v.i = x;
  return v;
}
Value Value::Float(double x) {
  Value v;
  v.kind = Kind::kFloat;
  v.f = x;
  return v;
}
Value Value::Str(std::string x) {
  Value v;
  v.kind = Kind::kString;
  v.s = std::move(x);
  return v;
}
Value Value::List(std::vector<Value> items) {
  Value v;
  v.kind = Kind::kList;
  v.list = std::make_shared<const std::vector<Value>>(std::move(items));
  return v;
}
Value Value::MakeDict(Dict d) {
  Value v;
  v.kind = Kind::kDict;
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::Namespace(Dict d) {
  Value v = MakeDict(std::move(d));
  v.kind = Kind::kNamespace;
  return v;
}
Value Value::Function(NativeFunction f) {
  Value v;
  v.kind = Kind::kFunction;
  v.fn = std::make_shared<const NativeFunction>(std::move(f));
  return v;
}

bool Value::Truthy() const {
  switch (kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b;
    case Kind::kInt:
      return i != 0;
    case Kind::kFloat:
      return f != 0 && !std::isnan(f);
    case Kind::kString:
      return !s.empty();
    case Kind::kList:
      return !list->empty();
    case Kind::kDict:
      return !dict->entries.empty();
    case Kind::kNamespace:
    case Kind::kFunction:
      return true;
  }
  return false;
}

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kUndefined:
      return "UndefinedValue";
    case Kind::kNone:
      return "NullValue";
    case Kind::kBool:
      return "BooleanValue";
    case Kind::kInt:
      return "IntegerValue";
    case Kind::kFloat:
      return "FloatValue";
    case Kind::kString:
      return "StringValue";
    case Kind::kList:
      return "ArrayValue";
    case Kind::kDict:
      return "ObjectValue";
    case Kind::kNamespace:
      return "NamespaceValue";
    case Kind::kFunction:
      return "FunctionValue";
  }
  return "?";
}

std::string JsNumberToString(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return "0";
  const char* sign = v < 0 ? "-" : "";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), std::fabs(v), std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "d.ddde+XX": shortest round-trip digits
  const size_t e = sci.find('e');
  std::string digits(1, sci[0]);
  if (e > 2) digits.append(sci, 2, e - 2);
  const int n = std::atoi(sci.c_str() + e + 1) + 1;  // value = 0.digits * 10^n
  const int k = static_cast<int>(digits.size());
  // NOTE: built with append() rather than operator+ chains, which trip GCC 12's -Wrestrict.
  std::string out = sign;
  if (k <= n && n <= 21) {
    out.append(digits).append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<size_t>(n))
        .append(".")
        .append(digits, static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out.append("0.").append(static_cast<size_t>(-n), '0').append(digits);
  } else {
    const int exp = n - 1;
    out.append(digits, 0, 1);
    if (k > 1) out.append(".").append(digits, 1);
    out.append(exp >= 0 ? "e+" : "e-").append(std::to_string(std::abs(exp)));
  }
  return out;
}

namespace {

std::string FloatOutput(double f) {
  if (f == 0 && std::signbit(f)) return "-0.0";
  if (std::isfinite(f) && std::floor(f) == f && std::fabs(f) < 1e21) {
    return JsNumberToString(f).append(".0");
  }
  return JsNumberToString(f);
}

// Number(string) in JavaScript: trimmed, empty is 0, anything unparsable is NaN.
double JsStringToNumber(const std::string& s) {
  const std::string t = JsTrim(s);
  if (t.empty()) return 0;
  if (t == "Infinity" || t == "+Infinity") return INFINITY;
  if (t == "-Infinity") return -INFINITY;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || t.find_first_of("xXnNiI") != std::string::npos) return NAN;
  return v;
}

bool IsNumericLike(const Value& v) {
  return v.kind == Kind::kBool || v.kind == Kind::kInt || v.kind == Kind::kFloat;
}

void AppendIndent(std::string& out, const JsonOptions& o, int depth) {
  out.push_back('\n');
  out.append(static_cast<size_t>(std::max<int64_t>(*o.indent, 0) * depth), ' ');
}

Status AppendJson(std::string& out, const Value& v, const JsonOptions& o, int depth,
                  bool undefined_to_null) {
  const bool pretty = o.indent.has_value() && *o.indent > 0;
  std::string item_sep = o.separators ? o.separators->first : pretty ? "," : ", ";
  std::string key_sep = o.separators ? o.separators->second : ": ";
  switch (v.kind) {
    case Kind::kUndefined:
      out += undefined_to_null ? "null" : "undefined";
      return Status::Ok();
    case Kind::kNone:
      out += "null";
      return Status::Ok();
    case Kind::kBool:
      out += v.b ? "true" : "false";
      return Status::Ok();
    case Kind::kInt:
      out += std::to_string(v.i);
      return Status::Ok();
    case Kind::kFloat:
      out += std::isfinite(v.f) ? JsNumberToString(v.f) : "null";
      return Status::Ok();
    case Kind::kString:
      out += JsonQuote(v.s, o.ensure_ascii);
      return Status::Ok();
    case Kind::kList: {
      if (v.tuple) return InvalidArgument("Cannot convert to JSON: TupleValue");
      out.push_back('[');
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k > 0) out += item_sep;
        if (pretty) AppendIndent(out, o, depth + 1);
        LLMUX_RETURN_IF_ERROR(AppendJson(out, (*v.list)[k], o, depth + 1, undefined_to_null));
      }
      if (pretty && !v.list->empty()) AppendIndent(out, o, depth);
      out.push_back(']');
      return Status::Ok();
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& e : v.dict->entries) entries.push_back(&e);
      if (o.sort_keys) {
        // NOTE: approximates JS localeCompare (case-insensitive first, then lower before upper).
        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) {
          const std::string la = JsToLower(a->first), lb = JsToLower(b->first);
          if (la != lb) return la < lb;
          return a->first > b->first;
        });
      }
      out.push_back('{');
      for (size_t k = 0; k < entries.size(); ++k) {
        if (k > 0) out += item_sep;
        if (pretty) AppendIndent(out, o, depth + 1);
        out += JsonQuote(entries[k]->first, o.ensure_ascii);
        out += key_sep;
        LLMUX_RETURN_IF_ERROR(AppendJson(out, entries[k]->second, o, depth + 1, undefined_to_null));
      }
      if (pretty && !entries.empty()) AppendIndent(out, o, depth);
      out.push_back('}');
      return Status::Ok();
    }
    case Kind::kFunction:
      return InvalidArgument("Cannot convert to JSON: FunctionValue");
  }
  return Status::Ok();
}

}  // namespace

std::string JsonQuote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    const char32_t cp = DecodeUtf8(s, pos);
    char buf[16];
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (cp < 0x20) {
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    } else if (ensure_ascii && cp >= 0x7F) {
      if (cp >= 0x10000) {
        const char32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      }
      out += buf;
    } else {
      out.append(s.substr(start, pos - start));
    }
  }
  out.push_back('"');
  return out;
}

StatusOr<std::string> ToJson(const Value& value, const JsonOptions& options,
                             bool undefined_to_null) {
  std::string out;
  LLMUX_RETURN_IF_ERROR(AppendJson(out, value, options, 0, undefined_to_null));
  return out;
}

StatusOr<std::string> ToOutputString(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return std::string();
    case Kind::kFloat:
      return FloatOutput(v.f);
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace:
      return ToJson(v, JsonOptions{}, /*undefined_to_null=*/false);
    case Kind::kFunction:
      return InvalidArgument("cannot render a function");
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kString:
      return JsPrimitiveString(v);
  }
  return std::string();
}

StatusOr<std::string> JsPrimitiveString(const Value& v) {
  switch (v.kind) {
    case Kind::kBool:
      return std::string(v.b ? "true" : "false");
    case Kind::kInt:
      return std::to_string(v.i);
    case Kind::kFloat:
      return JsNumberToString(v.f);
    case Kind::kString:
      return v.s;
    case Kind::kUndefined:
      return std::string("undefined");
    case Kind::kNone:
      return std::string("null");
    default:
      return InvalidArgument("cannot convert " + std::string(KindName(v.kind)) + " to a string");
  }
}

bool LooseEquals(const Value& a, const Value& b) {
  const bool a_nullish = a.kind == Kind::kUndefined || a.kind == Kind::kNone;
  const bool b_nullish = b.kind == Kind::kUndefined || b.kind == Kind::kNone;
  if (a_nullish || b_nullish) return a_nullish && b_nullish;
  if (a.kind == Kind::kString && b.kind == Kind::kString) return a.s == b.s;
  if (IsNumericLike(a) && IsNumericLike(b)) return a.number() == b.number();
  if (a.kind == Kind::kString && IsNumericLike(b)) return JsStringToNumber(a.s) == b.number();
  if (b.kind == Kind::kString && IsNumericLike(a)) return JsStringToNumber(b.s) == a.number();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kList:
      return a.list == b.list;
    case Kind::kDict:
    case Kind::kNamespace:
      return a.dict == b.dict;
    case Kind::kFunction:
      return a.fn == b.fn;
    default:
      return false;
  }
}

bool StrictEquals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.kind != b.kind) return false;
  return LooseEquals(a, b);
}

}  // namespace llmux::jinja
