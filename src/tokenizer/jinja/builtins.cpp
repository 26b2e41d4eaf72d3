// Members, methods, slicing and global functions (filters and tests: jinja_filters.cpp).
#include "tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <utility>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/text.h"

namespace llmux::jinja {
namespace {

const std::set<std::string_view> kStringMethods = {"upper",      "lower",  "strip",  "title",
                                                   "capitalize", "rstrip", "lstrip", "startswith",
                                                   "endswith",   "split",  "replace"};
const std::set<std::string_view> kDictMethods = {"get", "items", "keys", "values", "dictsort"};

Value Method(NativeFunction fn) { return Value::Function(std::move(fn)); }

Value StrList(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  for (const auto& p : parts) items.push_back(Value::Str(p));
  return Value::List(std::move(items));
}

StatusOr<Value> AffixTest(const std::string& s, const CallArgs& args, bool prefix) {
  const char* name = prefix ? "startswith" : "endswith";
  if (args.positional.empty()) {
    return InvalidArgument(std::string(name) + "() requires at least one argument");
  }
  auto matches = [&](const std::string& affix) {
    if (affix.size() > s.size()) return false;
    return prefix ? s.compare(0, affix.size(), affix) == 0
                  : s.compare(s.size() - affix.size(), affix.size(), affix) == 0;
  };
  const Value& pattern = args.positional[0];
  if (pattern.is_string()) return Value::Bool(matches(pattern.s));
  if (pattern.is_list()) {
    for (const Value& item : *pattern.list) {
      if (!item.is_string()) {
        return InvalidArgument(std::string(name) + "() tuple elements must be strings");
      }
      if (matches(item.s)) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  return InvalidArgument(std::string(name) + "() argument must be a string or tuple of strings");
}

StatusOr<Value> StringMember(const std::string& s, const std::string& name) {
  if (name == "length") return Value::Int(static_cast<int64_t>(Utf16Length(s)));
  if (!kStringMethods.count(name)) return Value::Undefined();
  return Method([s, name](CallArgs args, Environment&) -> StatusOr<Value> {
    if (name == "upper") return Value::Str(JsToUpper(s));
    if (name == "lower") return Value::Str(JsToLower(s));
    // NOTE: strip/lstrip/rstrip ignore a `chars` argument, as the reference does.
    if (name == "strip") return Value::Str(JsTrim(s));
    if (name == "lstrip") return Value::Str(JsTrimStart(s));
    if (name == "rstrip") return Value::Str(JsTrimEnd(s));
    if (name == "title") return Value::Str(JsTitle(s));
    if (name == "capitalize") return Value::Str(JsCapitalize(s));
    if (name == "startswith" || name == "endswith") {
      return AffixTest(s, args, name == "startswith");
    }
    if (name == "split") {
      const Value sep = args.positional.size() > 0 ? args.positional[0] : Value::None();
      const Value maxsplit = args.positional.size() > 1 ? args.positional[1] : Value::Int(-1);
      if (!sep.is_string() && !sep.is_none()) {
        return InvalidArgument("sep argument must be a string or null");
      }
      if (maxsplit.kind != Kind::kInt) return InvalidArgument("maxsplit argument must be a number");
      if (sep.is_none()) return StrList(SplitWhitespace(s, maxsplit.i));
      if (sep.s.empty()) return InvalidArgument("empty separator");
      return StrList(SplitOn(s, sep.s, maxsplit.i));
    }
    // replace(old, new[, count])
    if (args.positional.size() < 2) {
      return InvalidArgument("replace() requires at least two arguments");
    }
    const Value& from = args.positional[0];
    const Value& to = args.positional[1];
    if (!from.is_string() || !to.is_string()) {
      return InvalidArgument("replace() arguments must be strings");
    }
    Value count = Value::None();
    if (args.positional.size() > 2) {
      count = args.positional[2];
    } else if (const Value* kw = args.Keyword("count")) {
      count = *kw;
    }
    if (count.kind != Kind::kInt && !count.is_none()) {
      return InvalidArgument("replace() count argument must be a number or null");
    }
    return Value::Str(ReplaceAll(s, from.s, to.s, count.is_none() ? -1 : count.i));
  });
}

}  // namespace

bool IsSupportedMethod(std::string_view name) {
  return kStringMethods.count(name) > 0 || kDictMethods.count(name) > 0;
}

bool IsSupportedGlobalFunction(std::string_view name) {
  return name == "raise_exception" || name == "range" || name == "namespace" ||
         name == "strftime_now";
}

Value DictItems(const Dict& d) {
  std::vector<Value> items;
  for (const auto& [k, v] : d.entries) items.push_back(Value::List({Value::Str(k), v}));
  return Value::List(std::move(items));
}

StatusOr<Value> CallDictMethod(const std::shared_ptr<Dict>& dict, const std::string& name,
                               const CallArgs& args) {
  if (name == "items") return DictItems(*dict);
  if (name == "keys" || name == "values") {
    std::vector<Value> out;
    for (const auto& [k, v] : dict->entries) out.push_back(name == "keys" ? Value::Str(k) : v);
    return Value::List(std::move(out));
  }
  if (name == "get") {
    const Value key = args.positional.empty() ? Value::Undefined() : args.positional[0];
    if (!key.is_string()) {
      return InvalidArgument("object key must be a string: got " + std::string(KindName(key.kind)));
    }
    if (const Value* v = dict->Find(key.s)) return *v;
    return args.positional.size() > 1 ? args.positional[1] : Value::None();
  }
  // dictsort(case_sensitive=false, by='key', reverse=false)
  auto arg = [&](size_t pos, std::string_view kw, Value fallback) {
    if (pos < args.positional.size()) return args.positional[pos];
    if (const Value* v = args.Keyword(kw)) return *v;
    return fallback;
  };
  const Value case_sensitive = arg(0, "case_sensitive", Value::Bool(false));
  const Value by = arg(1, "by", Value::Str("key"));
  const Value reverse = arg(2, "reverse", Value::Bool(false));
  if (case_sensitive.kind != Kind::kBool)
    return InvalidArgument("case_sensitive must be a boolean");
  if (!by.is_string() || (by.s != "key" && by.s != "value")) {
    return InvalidArgument("by must be either 'key' or 'value'");
  }
  if (reverse.kind != Kind::kBool) return InvalidArgument("reverse must be a boolean");
  std::vector<std::pair<std::string, Value>> entries = dict->entries;
  Status error;
  const size_t index = by.s == "key" ? 0 : 1;
  std::stable_sort(entries.begin(), entries.end(), [&](const auto& x, const auto& y) {
    const Value a = index == 0 ? Value::Str(x.first) : x.second;
    const Value b = index == 0 ? Value::Str(y.first) : y.second;
    auto c = CompareValues(a, b, case_sensitive.b);
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return reverse.b ? *c > 0 : *c < 0;
  });
  LLMUX_RETURN_IF_ERROR(error);
  std::vector<Value> items;
  for (auto& [k, v] : entries) items.push_back(Value::List({Value::Str(k), v}));
  return Value::List(std::move(items));
}

StatusOr<Value> GetMember(const Value& object, const Value& property) {
  if (object.is_attribute_container()) {
    if (!property.is_string()) {
      return InvalidArgument("cannot access property with non-string: got " +
                             std::string(KindName(property.kind)));
    }
    if (const Value* v = object.dict->Find(property.s)) return *v;
    if (object.kind == Kind::kDict && kDictMethods.count(property.s)) {
      auto dict = object.dict;
      const std::string name = property.s;
      return Method(
          [dict, name](CallArgs args, Environment&) { return CallDictMethod(dict, name, args); });
    }
    return Value::Undefined();
  }
  if (object.is_list() || object.is_string()) {
    if (property.kind == Kind::kInt) {
      const int64_t n = object.is_list() ? static_cast<int64_t>(object.list->size()) : -1;
      if (object.is_list()) {
        const int64_t k = property.i < 0 ? n + property.i : property.i;
        if (k < 0 || k >= n) return Value::Undefined();
        return (*object.list)[static_cast<size_t>(k)];
      }
      const std::vector<std::string> chars = SplitCodePoints(object.s);
      const int64_t m = static_cast<int64_t>(chars.size());
      const int64_t k = property.i < 0 ? m + property.i : property.i;
      if (k < 0 || k >= m) return Value::Undefined();
      return Value::Str(chars[static_cast<size_t>(k)]);
    }
    if (property.is_string()) {
      if (object.is_list()) {
        if (property.s == "length") return Value::Int(static_cast<int64_t>(object.list->size()));
        return Value::Undefined();
      }
      return StringMember(object.s, property.s);
    }
    return InvalidArgument("cannot access property with non-string/non-number: got " +
                           std::string(KindName(property.kind)));
  }
  if (!property.is_string()) {
    return InvalidArgument("cannot access property with non-string: got " +
                           std::string(KindName(property.kind)));
  }
  return Value::Undefined();  // attributes of undefined, none, numbers: undefined
}

StatusOr<Value> Slice(const Value& object, const Value& start_v, const Value& stop_v,
                      const Value& step_v) {
  if (!object.is_list() && !object.is_string()) {
    return InvalidArgument("slice object must be an array or string");
  }
  for (const Value* v : {&start_v, &stop_v, &step_v}) {
    if (v->kind != Kind::kInt && !v->is_undefined()) {
      return InvalidArgument("slice indices must be integers or undefined");
    }
  }
  std::vector<std::string> chars;
  if (object.is_string()) chars = SplitCodePoints(object.s);
  const int64_t len = object.is_list() ? static_cast<int64_t>(object.list->size())
                                       : static_cast<int64_t>(chars.size());
  const int64_t step = step_v.is_undefined() ? 1 : step_v.i;
  const int64_t dir = step > 0 ? 1 : step < 0 ? -1 : 0;
  int64_t start, stop;
  if (dir >= 0) {
    start = start_v.is_undefined() ? 0 : start_v.i;
    start = start < 0 ? std::max<int64_t>(len + start, 0) : std::min(start, len);
    stop = stop_v.is_undefined() ? len : stop_v.i;
    stop = stop < 0 ? std::max<int64_t>(len + stop, 0) : std::min(stop, len);
  } else {
    start = start_v.is_undefined() ? len - 1 : start_v.i;
    start = start < 0 ? std::max<int64_t>(len + start, -1) : std::min(start, len - 1);
    stop = stop_v.is_undefined() ? -1 : stop_v.i;
    stop = stop < -1 ? std::max<int64_t>(len + stop, -1) : std::min(stop, len - 1);
  }
  std::vector<Value> items;
  std::string text;
  for (int64_t k = start; dir != 0 && dir * k < dir * stop; k += step) {
    if (object.is_list()) {
      items.push_back((*object.list)[static_cast<size_t>(k)]);
    } else {
      text += chars[static_cast<size_t>(k)];
    }
  }
  return object.is_list() ? Value::List(std::move(items)) : Value::Str(std::move(text));
}

namespace {

StatusOr<Value> Range(const CallArgs& args) {
  std::vector<int64_t> n;
  for (const Value& v : args.positional) {
    if (v.kind != Kind::kInt) return InvalidArgument("range() arguments must be integers");
    n.push_back(v.i);
  }
  if (n.empty() || n.size() > 3) return InvalidArgument("range() takes 1 to 3 arguments");
  const int64_t start = n.size() == 1 ? 0 : n[0];
  const int64_t stop = n.size() == 1 ? n[0] : n[1];
  const int64_t step = n.size() == 3 ? n[2] : 1;
  if (step == 0) return InvalidArgument("range() step must not be zero");
  std::vector<Value> out;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
    if (out.size() >= 1000000) return InvalidArgument("range() is too long");
    out.push_back(Value::Int(k));
  }
  return Value::List(std::move(out));
}

StatusOr<Value> MakeNamespace(const CallArgs& args) {
  if (args.positional.size() > 1) {
    return InvalidArgument("namespace expected at most 1 argument, got " +
                           std::to_string(args.positional.size()));
  }
  Dict d;
  if (args.positional.size() == 1) {
    const Value& src = args.positional[0];
    if (src.kind == Kind::kDict) {
      for (const auto& [k, v] : src.dict->entries) d.Set(k, v);
    } else if (src.is_list()) {
      for (const Value& pair : *src.list) {
        if (!pair.is_list() || pair.list->size() != 2 || !(*pair.list)[0].is_string()) {
          return InvalidArgument(
              "namespace expected an object or an iterable of [key, value] pairs");
        }
        d.Set((*pair.list)[0].s, (*pair.list)[1]);
      }
    } else {
      return InvalidArgument("'" + std::string(KindName(src.kind)) + "' object is not iterable");
    }
  }
  for (const auto& [k, v] : args.keyword) d.Set(k, v);
  return Value::Namespace(std::move(d));
}

std::string Strftime(const std::tm& t, const std::string& format) {
  static const char* kLong[] = {"January",   "February", "March",    "April",
                                "May",       "June",     "July",     "August",
                                "September", "October",  "November", "December"};
  static const char* kShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto pad2 = [](int v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%02d", v);
    return std::string(buf);
  };
  std::string out;
  for (size_t k = 0; k < format.size(); ++k) {
    if (format[k] != '%' || k + 1 >= format.size()) {
      out.push_back(format[k]);
      continue;
    }
    const int month = std::clamp(t.tm_mon, 0, 11);
    switch (format[k + 1]) {
      case 'Y':
        out += std::to_string(t.tm_year + 1900);
        break;
      case 'm':
        out += pad2(t.tm_mon + 1);
        break;
      case 'd':
        out += pad2(t.tm_mday);
        break;
      case 'b':
        out += kShort[month];
        break;
      case 'B':
        out += kLong[month];
        break;
      case 'H':
        out += pad2(t.tm_hour);
        break;
      case 'M':
        out += pad2(t.tm_min);
        break;
      case '%':
        out += '%';
        break;
      default:
        out.push_back('%');  // other directives stay as written, as in the reference
        continue;
    }
    ++k;
  }
  return out;
}

}  // namespace

void InstallGlobalFunctions(Environment& env, std::function<std::tm()> local_time, bool* raised) {
  env.Set("raise_exception",
          Value::Function([raised](CallArgs args, Environment&) -> StatusOr<Value> {
            std::string message;
            for (size_t k = 0; k < args.positional.size(); ++k) {
              if (k > 0) message += ",";
              auto part = JsPrimitiveString(args.positional[k]);
              message += part.ok() ? *part : std::string(KindName(args.positional[k].kind));
            }
            *raised = true;
            return InvalidArgument(message);
          }));
  env.Set("range", Value::Function([](CallArgs args, Environment&) { return Range(args); }));
  env.Set("namespace",
          Value::Function([](CallArgs args, Environment&) { return MakeNamespace(args); }));
  env.Set("strftime_now",
          Value::Function([local_time](CallArgs args, Environment&) -> StatusOr<Value> {
            if (args.positional.empty() || !args.positional[0].is_string()) {
              return InvalidArgument("strftime_now() takes a format string");
            }
            return Value::Str(Strftime(local_time(), args.positional[0].s));
          }));
}

}  // namespace llmux::jinja
