#include "grammar/json_schema_compiler.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace llmux::grammar_internal {
namespace {

using Json = nlohmann::ordered_json;

// Keywords that only annotate (ignored) and those the compiler enforces.
const std::set<std::string>& Annotations() {
  static const std::set<std::string> k = {"title",      "description", "default",  "examples",
                                          "$schema",    "$id",         "$comment", "deprecated",
                                          "readOnly",   "writeOnly",   "$defs",    "definitions",
                                          "$anchor"};
  return k;
}
const std::set<std::string>& Supported() {
  static const std::set<std::string> k = {
      "type",          "enum",          "const",     "anyOf",           "oneOf",
      "allOf",         "$ref",          "nullable",  "properties",      "required",
      "additionalProperties", "items",  "prefixItems", "minItems",      "maxItems",
      "uniqueItems",   "minLength",     "maxLength", "pattern",         "format",
      "minimum",       "maximum",       "exclusiveMinimum", "exclusiveMaximum"};
  return k;
}

// Regexes of the supported `format`s (the string body, anchored).
const std::map<std::string, std::string>& Formats() {
  static const std::string kDate = R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))";
  static const std::string kTime =
      R"(([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|z|[+-]([01]\d|2[0-3]):[0-5]\d))";
  static const std::map<std::string, std::string> k = {
      {"date", "^" + kDate + "$"},
      {"time", "^" + kTime + "$"},
      {"date-time", "^" + kDate + "[Tt]" + kTime + "$"},
      {"uuid", R"(^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)"},
      {"email", R"(^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$)"},
      {"ipv4", R"(^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$)"},
  };
  return k;
}

std::string Child(const std::string& path, const std::string& key) {
  std::string esc;
  for (char c : key) {
    if (c == '~') {
      esc += "~0";
    } else if (c == '/') {
      esc += "~1";
    } else {
      esc += c;
    }
  }
  return path + "/" + esc;
}

class SchemaCompiler {
 public:
  SchemaCompiler(const Json& root, const GrammarLimits& limits,
                 std::chrono::steady_clock::time_point deadline, GrammarBuilder& b,
                 JsonPieces& pieces)
      : root_(root), limits_(limits), deadline_(deadline), b_(b), p_(pieces) {}

  // The rule of the schema at `path` (memoized per path: $ref recursion terminates).
  StatusOr<int32_t> RuleFor(const Json& schema, const std::string& path, int32_t depth) {
    if (auto it = rules_.find(path); it != rules_.end()) return it->second;
    if (depth > limits_.max_schema_depth) {
      return Err(path, "schema nesting is deeper than " +
                           std::to_string(limits_.max_schema_depth) + " levels");
    }
    if (std::chrono::steady_clock::now() > deadline_) {
      return InvalidArgument("schema compilation exceeded its time limit (" +
                             std::to_string(limits_.compile_deadline_ms) + " ms)");
    }
    if (b_.overflow()) {
      return InvalidArgument("the schema compiles to more than " +
                             std::to_string(limits_.max_states) + " grammar states");
    }
    const int32_t rule = b_.NewRule(path);
    rules_[path] = rule;
    LLMUX_ASSIGN_OR_RETURN(Frag body, Value(rule, schema, path, depth));
    b_.Define(rule, body);
    return rule;
  }

 private:
  static Status Err(const std::string& path, const std::string& msg) {
    return InvalidArgument(msg + " at " + path);
  }

  StatusOr<Frag> Sub(int32_t rule, const Json& schema, const std::string& path, int32_t depth) {
    LLMUX_ASSIGN_OR_RETURN(int32_t r, RuleFor(schema, path, depth + 1));
    return b_.Call(rule, r);
  }

  StatusOr<const Json*> Resolve(const std::string& ref, const std::string& path) {
    if (ref.empty() || ref[0] != '#') {
      return Err(path, "'$ref' '" + ref + "' is not supported (only local refs '#...')");
    }
    const Json* node = &root_;
    std::string pointer = ref.substr(1);
    size_t pos = 0;
    while (pos < pointer.size()) {
      if (pointer[pos] != '/') return Err(path, "'$ref' '" + ref + "' is not a JSON pointer");
      size_t next = pointer.find('/', pos + 1);
      if (next == std::string::npos) next = pointer.size();
      std::string token = pointer.substr(pos + 1, next - pos - 1);
      std::string key;
      for (size_t i = 0; i < token.size(); ++i) {
        if (token[i] == '~' && i + 1 < token.size()) {
          key += token[i + 1] == '1' ? '/' : '~';
          ++i;
        } else {
          key += token[i];
        }
      }
      if (node->is_object() && node->contains(key)) {
        node = &(*node)[key];
      } else if (node->is_array() && !key.empty() &&
                 key.find_first_not_of("0123456789") == std::string::npos &&
                 std::stoul(key) < node->size()) {
        node = &(*node)[std::stoul(key)];
      } else {
        return Err(path, "'$ref' '" + ref + "' does not resolve");
      }
      pos = next;
    }
    return node;
  }

  // Literal JSON text of a value (enum/const), compact as the whitespace policy wants.
  Frag LiteralValue(int32_t rule, const Json& v) { return b_.Literal(rule, v.dump()); }

  StatusOr<Frag> Value(int32_t rule, const Json& schema, const std::string& path, int32_t depth) {
    if (schema.is_boolean()) {
      if (schema.get<bool>()) return b_.Call(rule, p_.ValueRule());
      return Err(path, "schema 'false' can never be satisfied");
    }
    if (!schema.is_object()) return Err(path, "a schema must be an object or a boolean");
    std::set<std::string> constraints;
    for (const auto& [key, value] : schema.items()) {
      if (Annotations().count(key)) continue;
      if (!Supported().count(key)) return Err(path, "unsupported JSON Schema keyword '" + key + "'");
      constraints.insert(key);
    }
    auto only = [&](const std::string& keyword) -> Status {
      for (const std::string& k : constraints) {
        if (k != keyword) {
          return Err(path, "keyword '" + k + "' next to '" + keyword +
                               "' is not supported (move it into the referenced/each schema)");
        }
      }
      return Status::Ok();
    };
    if (schema.contains("$ref")) {
      LLMUX_RETURN_IF_ERROR(only("$ref"));
      if (!schema["$ref"].is_string()) return Err(path, "'$ref' must be a string");
      const std::string ref = schema["$ref"].get<std::string>();
      LLMUX_ASSIGN_OR_RETURN(const Json* target, Resolve(ref, path));
      LLMUX_ASSIGN_OR_RETURN(int32_t r, RuleFor(*target, ref, depth + 1));
      return b_.Call(rule, r);
    }
    for (const char* kw : {"anyOf", "oneOf", "allOf"}) {
      if (!schema.contains(kw)) continue;
      LLMUX_RETURN_IF_ERROR(only(kw));
      const Json& list = schema[kw];
      if (!list.is_array() || list.empty()) return Err(path, std::string("'") + kw + "' must be a non-empty array");
      if (std::string(kw) == "allOf" && list.size() != 1) {
        return Err(path, "'allOf' with more than one schema is not supported");
      }
      std::vector<Frag> alts;
      for (size_t i = 0; i < list.size(); ++i) {
        LLMUX_ASSIGN_OR_RETURN(Frag f, Sub(rule, list[i], Child(Child(path, kw), std::to_string(i)), depth));
        alts.push_back(f);
      }
      return alts.size() == 1 ? alts[0] : b_.Alt(rule, alts);
    }
    if (schema.contains("const")) return LiteralValue(rule, schema["const"]);
    if (schema.contains("enum")) {
      const Json& list = schema["enum"];
      if (!list.is_array() || list.empty()) return Err(path, "'enum' must be a non-empty array");
      std::vector<Frag> alts;
      for (const Json& v : list) alts.push_back(LiteralValue(rule, v));
      return b_.Alt(rule, alts);
    }

    std::vector<std::string> types;
    if (schema.contains("type")) {
      const Json& t = schema["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const Json& x : t) {
          if (!x.is_string()) return Err(path, "'type' entries must be strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        return Err(path, "'type' must be a string or a non-empty array of strings");
      }
    } else {
      // Inferred from the keywords present; none: any JSON value.
      auto any = [&](std::initializer_list<const char*> kws) {
        for (const char* k : kws) {
          if (constraints.count(k)) return true;
        }
        return false;
      };
      if (any({"properties", "required", "additionalProperties"})) types.push_back("object");
      if (any({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"})) types.push_back("array");
      if (any({"minLength", "maxLength", "pattern", "format"})) types.push_back("string");
      if (any({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) types.push_back("number");
      if (types.empty()) {
        if (schema.value("nullable", false)) return b_.Call(rule, p_.ValueRule());
        return b_.Call(rule, p_.ValueRule());
      }
    }
    if (schema.value("nullable", false)) types.push_back("null");
    std::vector<Frag> alts;
    std::set<std::string> seen;
    for (const std::string& t : types) {
      if (!seen.insert(t).second) continue;
      LLMUX_ASSIGN_OR_RETURN(Frag f, Typed(rule, t, schema, path, depth));
      alts.push_back(f);
    }
    return alts.size() == 1 ? alts[0] : b_.Alt(rule, alts);
  }

  StatusOr<Frag> Typed(int32_t rule, const std::string& type, const Json& s,
                       const std::string& path, int32_t depth) {
    if (type == "null") return b_.Literal(rule, "null");
    if (type == "boolean") return b_.Alt(rule, {b_.Literal(rule, "true"), b_.Literal(rule, "false")});
    if (type == "integer" || type == "number") return Numeric(rule, type == "integer", s, path);
    if (type == "string") return String(rule, s, path);
    if (type == "array") return Array(rule, s, path, depth);
    if (type == "object") return Object(rule, s, path, depth);
    return Err(path, "unknown 'type' '" + type + "'");
  }

  StatusOr<int32_t> Count(const Json& s, const char* kw, const std::string& path) {
    const Json& v = s[kw];
    if (!v.is_number_integer() && !(v.is_number() && std::floor(v.get<double>()) == v.get<double>())) {
      return Err(path, std::string("'") + kw + "' must be a non-negative integer");
    }
    const double d = v.get<double>();
    if (d < 0) return Err(path, std::string("'") + kw + "' must be a non-negative integer");
    if (d > limits_.max_repeat) {
      return Err(path, std::string("'") + kw + "' " + std::to_string(static_cast<int64_t>(d)) +
                           " is above the limit " + std::to_string(limits_.max_repeat));
    }
    return static_cast<int32_t>(d);
  }

  StatusOr<Frag> Numeric(int32_t rule, bool integer, const Json& s, const std::string& path) {
    std::optional<int64_t> lo, hi;
    constexpr double kLimit = 9.0e18;
    auto bound = [&](const char* kw, bool lower, bool exclusive) -> Status {
      if (!s.contains(kw)) return Status::Ok();
      if (!s[kw].is_number()) return Err(path, std::string("'") + kw + "' must be a number");
      const double v = s[kw].get<double>();
      if (!(std::fabs(v) < kLimit)) {
        return Err(path, std::string("'") + kw + "' is outside the supported range (|x| < 9e18)");
      }
      int64_t b;
      if (integer) {
        b = lower ? static_cast<int64_t>(exclusive ? std::floor(v) + 1 : std::ceil(v))
                  : static_cast<int64_t>(exclusive ? std::ceil(v) - 1 : std::floor(v));
      } else {
        if (exclusive) {
          return Err(path, std::string("'") + kw + "' is not supported for type 'number' (use "
                                                   "'integer' or an inclusive bound)");
        }
        if (std::floor(v) != v) {
          return Err(path, std::string("a fractional '") + kw +
                               "' is not supported for type 'number' (integral bounds only)");
        }
        b = static_cast<int64_t>(v);
      }
      std::optional<int64_t>& slot = lower ? lo : hi;
      slot = slot ? (lower ? std::max(*slot, b) : std::min(*slot, b)) : b;
      return Status::Ok();
    };
    LLMUX_RETURN_IF_ERROR(bound("minimum", true, false));
    LLMUX_RETURN_IF_ERROR(bound("exclusiveMinimum", true, true));
    LLMUX_RETURN_IF_ERROR(bound("maximum", false, false));
    LLMUX_RETURN_IF_ERROR(bound("exclusiveMaximum", false, true));
    auto f = integer ? p_.Integer(rule, lo, hi) : p_.Number(rule, lo, hi);
    if (!f.ok()) return Err(path, f.status().message());
    return f;
  }

  StatusOr<Frag> String(int32_t rule, const Json& s, const std::string& path) {
    const bool has_len = s.contains("minLength") || s.contains("maxLength");
    if (s.contains("format")) {
      if (!s["format"].is_string()) return Err(path, "'format' must be a string");
      const std::string format = s["format"].get<std::string>();
      auto it = Formats().find(format);
      if (it == Formats().end()) {
        return Err(path, "unsupported 'format' '" + format +
                             "' (supported: date, date-time, time, uuid, email, ipv4)");
      }
      if (s.contains("pattern") || has_len) {
        return Err(path, "'format' together with 'pattern'/'minLength'/'maxLength' is not supported");
      }
      LLMUX_ASSIGN_OR_RETURN(Frag body, p_.Pattern(rule, it->second));
      return b_.Seq(rule, {b_.Literal(rule, "\""), body, b_.Literal(rule, "\"")});
    }
    if (s.contains("pattern")) {
      if (!s["pattern"].is_string()) return Err(path, "'pattern' must be a string");
      if (has_len) return Err(path, "'pattern' together with 'minLength'/'maxLength' is not supported");
      auto body = p_.Pattern(rule, s["pattern"].get<std::string>());
      if (!body.ok()) return Err(path, body.status().message());
      return b_.Seq(rule, {b_.Literal(rule, "\""), *body, b_.Literal(rule, "\"")});
    }
    if (!has_len) return b_.Call(rule, p_.StringRule());
    int32_t min = 0, max = -1;
    if (s.contains("minLength")) {
      LLMUX_ASSIGN_OR_RETURN(min, Count(s, "minLength", path));
    }
    if (s.contains("maxLength")) {
      LLMUX_ASSIGN_OR_RETURN(max, Count(s, "maxLength", path));
    }
    if (max >= 0 && max < min) return Err(path, "'maxLength' is below 'minLength'");
    const Frag body = b_.Repeat(rule, [&] { return p_.StringChar(rule); }, min, max);
    return b_.Seq(rule, {b_.Literal(rule, "\""), body, b_.Literal(rule, "\"")});
  }

  StatusOr<Frag> Array(int32_t rule, const Json& s, const std::string& path, int32_t depth) {
    if (s.contains("uniqueItems") && s["uniqueItems"] != false) {
      return Err(path, "'uniqueItems' true is not supported (a grammar cannot enforce it)");
    }
    int32_t min = 0, max = -1;
    if (s.contains("minItems")) {
      LLMUX_ASSIGN_OR_RETURN(min, Count(s, "minItems", path));
    }
    if (s.contains("maxItems")) {
      LLMUX_ASSIGN_OR_RETURN(max, Count(s, "maxItems", path));
    }
    if (max >= 0 && max < min) return Err(path, "'maxItems' is below 'minItems'");
    std::vector<Frag> prefix;
    if (s.contains("prefixItems")) {
      const Json& list = s["prefixItems"];
      if (!list.is_array()) return Err(path, "'prefixItems' must be an array");
      for (size_t i = 0; i < list.size(); ++i) {
        LLMUX_ASSIGN_OR_RETURN(Frag f, Sub(rule, list[i], Child(Child(path, "prefixItems"), std::to_string(i)), depth));
        prefix.push_back(f);
      }
      if (max >= 0 && max < static_cast<int32_t>(prefix.size())) {
        return Err(path, "'maxItems' below the number of 'prefixItems' is not supported");
      }
    }
    const int32_t k = static_cast<int32_t>(prefix.size());
    int32_t rest_min = std::max(0, min - k);
    int32_t rest_max = max < 0 ? -1 : max - k;
    int32_t item_rule = -1;
    if (s.contains("items") && s["items"] == false) {
      if (rest_min > 0) return Err(path, "'minItems' exceeds 'prefixItems' while 'items' is false");
      rest_max = 0;
    } else if (s.contains("items")) {
      LLMUX_ASSIGN_OR_RETURN(item_rule, RuleFor(s["items"], Child(path, "items"), depth + 1));
    } else {
      item_rule = p_.ValueRule();
    }
    auto item = [&] { return b_.Call(rule, item_rule); };
    std::vector<Frag> parts{b_.Literal(rule, "[")};
    if (k > 0) {
      for (int32_t i = 0; i < k; ++i) {
        if (i > 0) parts.push_back(p_.Comma(rule));
        parts.push_back(prefix[i]);
      }
      if (rest_max != 0) {
        parts.push_back(b_.Repeat(rule, [&] { return b_.Seq(rule, {p_.Comma(rule), item()}); },
                                  rest_min, rest_max));
      }
    } else if (rest_max != 0) {
      const Frag tail = b_.Repeat(rule, [&] { return b_.Seq(rule, {p_.Comma(rule), item()}); },
                                  std::max(0, rest_min - 1), rest_max < 0 ? -1 : rest_max - 1);
      const Frag items = b_.Seq(rule, {item(), tail});
      parts.push_back(rest_min == 0 ? b_.Optional(rule, items) : items);
    }
    parts.push_back(b_.Literal(rule, "]"));
    return b_.Seq(rule, parts);
  }

  StatusOr<Frag> Object(int32_t rule, const Json& s, const std::string& path, int32_t depth) {
    const bool has_props = s.contains("properties");
    if (!has_props && !s.contains("additionalProperties") && !s.contains("required")) {
      return b_.Call(rule, p_.ObjectRule());
    }
    static const Json kEmpty = Json::object();
    const Json& props = has_props ? s["properties"] : kEmpty;
    if (!props.is_object()) return Err(path, "'properties' must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return Err(path, "'required' must be an array of strings");
      for (const Json& r : s["required"]) {
        if (!r.is_string()) return Err(path, "'required' must be an array of strings");
        if (!props.contains(r.get<std::string>())) {
          return Err(path, "required property '" + r.get<std::string>() +
                               "' is not listed in 'properties'");
        }
        required.insert(r.get<std::string>());
      }
    }
    // NOTE: an absent additionalProperties means false (OpenAI strict mode and xgrammar's
    // default): a schema that lists properties gets exactly those.
    int32_t extra_rule = -1;
    if (s.contains("additionalProperties")) {
      const Json& ap = s["additionalProperties"];
      if (ap.is_boolean()) {
        if (ap.get<bool>()) extra_rule = p_.ValueRule();
      } else {
        LLMUX_ASSIGN_OR_RETURN(extra_rule, RuleFor(ap, Child(path, "additionalProperties"), depth + 1));
      }
    }
    const size_t n = props.size();
    std::vector<Frag> first(n + 1), after(n + 1);
    for (size_t i = 0; i <= n; ++i) {
      first[i] = b_.Empty(rule);
      after[i] = b_.Empty(rule);
    }
    const Frag open = b_.Literal(rule, "{");
    b_.Seq(rule, {open, first[0]});
    size_t i = 0;
    for (const auto& [key, sub] : props.items()) {
      LLMUX_ASSIGN_OR_RETURN(int32_t value_rule,
                             RuleFor(sub, Child(Child(path, "properties"), key), depth + 1));
      // NOTE: `key` is captured through an init-capture: clang before 16 cannot capture a
      // structured binding (the ASan+UBSan and fuzz trees build with clang-14).
      auto member = [&, &key = key] {
        return b_.Seq(rule, {b_.Literal(rule, Json(key).dump()), p_.Colon(rule), b_.Call(rule, value_rule)});
      };
      b_.Seq(rule, {first[i], member(), after[i + 1]});
      b_.Seq(rule, {after[i], p_.Comma(rule), member(), after[i + 1]});
      if (!required.count(key)) {
        b_.Seq(rule, {first[i], first[i + 1]});
        b_.Seq(rule, {after[i], after[i + 1]});
      }
      ++i;
    }
    const Frag close = b_.Literal(rule, "}");
    if (extra_rule >= 0) {
      const int32_t str = p_.StringRule();
      auto member = [&] {
        return b_.Seq(rule, {b_.Call(rule, str), p_.Colon(rule), b_.Call(rule, extra_rule)});
      };
      const Frag more = b_.Star(rule, b_.Seq(rule, {p_.Comma(rule), member()}));
      b_.Seq(rule, {first[n], b_.Optional(rule, b_.Seq(rule, {member(), more})), close});
      b_.Seq(rule, {after[n], b_.Star(rule, b_.Seq(rule, {p_.Comma(rule), member()})), close});
    } else {
      b_.Seq(rule, {first[n], close});
      b_.Seq(rule, {after[n], close});
    }
    return Frag{open.in, close.out};
  }

  const Json& root_;
  const GrammarLimits& limits_;
  std::chrono::steady_clock::time_point deadline_;
  GrammarBuilder& b_;
  JsonPieces& p_;
  std::map<std::string, int32_t> rules_;
};

}  // namespace

StatusOr<int32_t> CompileJsonSchema(std::string_view schema_text, const GrammarLimits& limits,
                                    std::chrono::steady_clock::time_point deadline,
                                    GrammarBuilder& builder, JsonPieces& pieces) {
  if (schema_text.size() > limits.max_schema_bytes) {
    return InvalidArgument("the schema is " + std::to_string(schema_text.size()) +
                           " bytes, above the limit of " + std::to_string(limits.max_schema_bytes));
  }
  Json root;
  try {
    root = Json::parse(schema_text);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("the schema is not valid JSON: ") + e.what());
  }
  SchemaCompiler compiler(root, limits, deadline, builder, pieces);
  return compiler.RuleFor(root, "#", 0);
}

}  // namespace llmux::grammar_internal
