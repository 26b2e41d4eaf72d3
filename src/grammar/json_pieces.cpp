#include "grammar/json_pieces.h"

#include <string>

namespace llmux::grammar_internal {
namespace {

std::string ToDigits(uint64_t v) { return std::to_string(v); }

bool AllOf(std::string_view s, char c) { return s.find_first_not_of(c) == std::string_view::npos; }

}  // namespace

Frag JsonPieces::StringChars(int32_t rule, const CodeRanges& ranges_in) {
  const CodeRanges ranges = Normalize(ranges_in);
  auto has = [&](char32_t c) {
    for (const auto& [a, b] : ranges) {
      if (c >= a && c <= b) return true;
    }
    return false;
  };
  CodeRanges plain;
  for (const auto& [a, b] : ranges) {
    // Unescaped: U+0020 and above, except '"' and '\'.
    const char32_t lo = std::max<char32_t>(a, 0x20);
    if (lo <= b) plain.emplace_back(lo, b);
  }
  CodeRanges unescaped;
  for (const auto& [a, b] : plain) {
    char32_t lo = a;
    for (char32_t x : {char32_t{0x22}, char32_t{0x5C}}) {
      if (x >= lo && x <= b) {
        if (x > lo) unescaped.emplace_back(lo, x - 1);
        lo = x + 1;
      }
    }
    if (lo <= b) unescaped.emplace_back(lo, b);
  }
  std::vector<Frag> alts;
  if (!unescaped.empty()) alts.push_back(b_.Ranges(rule, Utf8Sequences(Normalize(unescaped))));
  if (has(0x22)) alts.push_back(b_.Literal(rule, "\\\""));
  if (has(0x5C)) alts.push_back(b_.Literal(rule, "\\\\"));
  static const char kHex[] = "0123456789abcdef";
  for (char32_t c = 0; c < 0x20; ++c) {
    if (!has(c)) continue;
    if (c == '\n') {
      alts.push_back(b_.Literal(rule, "\\n"));
    } else if (c == '\t') {
      alts.push_back(b_.Literal(rule, "\\t"));
    } else if (c == '\r') {
      alts.push_back(b_.Literal(rule, "\\r"));
    } else {
      const std::string esc = std::string("\\u00") + kHex[c >> 4] + kHex[c & 15];
      alts.push_back(b_.Literal(rule, esc));
    }
  }
  if (alts.size() == 1) return alts[0];
  return b_.Alt(rule, alts);
}

Frag JsonPieces::StringChar(int32_t r) {
  const Frag plain =
      b_.Ranges(r, Utf8Sequences(Normalize({{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}})));
  std::vector<Frag> h;
  for (int i = 0; i < 4; ++i) h.push_back(b_.Ranges(r, {{{'0', '9'}}, {{'a', 'f'}}, {{'A', 'F'}}}));
  const Frag simple = b_.Ranges(r, {{{'"', '"'}}, {{'\\', '\\'}}, {{'/', '/'}}, {{'b', 'b'}},
                                    {{'f', 'f'}}, {{'n', 'n'}}, {{'r', 'r'}}, {{'t', 't'}}});
  const Frag unicode = b_.Seq(r, {b_.Literal(r, "u"), b_.Seq(r, h)});
  const Frag escape = b_.Seq(r, {b_.Literal(r, "\\"), b_.Alt(r, {simple, unicode})});
  return b_.Alt(r, {plain, escape});
}

int32_t JsonPieces::StringRule() {
  if (string_ >= 0) return string_;
  // NOTE: the body is inlined (not a call per character) so that the whole string is one
  // leaf rule: its token masks are shared across grammars and stay context-independent.
  const int32_t r = string_ = b_.NewRule("json string");
  const Frag body = b_.Star(r, StringChar(r));
  b_.Define(r, b_.Seq(r, {b_.Literal(r, "\""), body, b_.Literal(r, "\"")}));
  return r;
}

Frag JsonPieces::Comma(int32_t rule) {
  return b_.Seq(rule, {b_.Literal(rule, ","), b_.Optional(rule, b_.Literal(rule, " "))});
}

Frag JsonPieces::Colon(int32_t rule) {
  return b_.Seq(rule, {b_.Literal(rule, ":"), b_.Optional(rule, b_.Literal(rule, " "))});
}

int32_t JsonPieces::ObjectRule() {
  if (object_ >= 0) return object_;
  const int32_t r = object_ = b_.NewRule("json object");
  const int32_t value = ValueRule();
  const int32_t str = StringRule();
  auto member = [&] { return b_.Seq(r, {b_.Call(r, str), Colon(r), b_.Call(r, value)}); };
  const Frag members =
      b_.Seq(r, {member(), b_.Star(r, b_.Seq(r, {Comma(r), member()}))});
  b_.Define(r, b_.Seq(r, {b_.Literal(r, "{"), b_.Optional(r, members), b_.Literal(r, "}")}));
  return r;
}

int32_t JsonPieces::ValueRule() {
  if (value_ >= 0) return value_;
  const int32_t r = value_ = b_.NewRule("json value");
  const int32_t object = ObjectRule();
  const Frag items = b_.Seq(r, {b_.Call(r, value_),
                                b_.Star(r, b_.Seq(r, {Comma(r), b_.Call(r, value_)}))});
  const Frag array = b_.Seq(r, {b_.Literal(r, "["), b_.Optional(r, items), b_.Literal(r, "]")});
  auto number = Number(r, std::nullopt, std::nullopt);
  b_.Define(r, b_.Alt(r, {b_.Call(r, object), array, b_.Call(r, StringRule()), *number,
                          b_.Literal(r, "true"), b_.Literal(r, "false"), b_.Literal(r, "null")}));
  return r;
}

Frag JsonPieces::Digits(int32_t rule, int32_t min, int32_t max) {
  return b_.Repeat(rule, [&] { return b_.Range(rule, '0', '9'); }, min, max);
}

Frag JsonPieces::SameLength(int32_t rule, const std::string& lo, const std::string& hi) {
  const size_t n = lo.size();
  if (n == 1) return b_.Range(rule, static_cast<uint8_t>(lo[0]), static_cast<uint8_t>(hi[0]));
  const std::string lo_rest = lo.substr(1), hi_rest = hi.substr(1);
  const auto l0 = static_cast<uint8_t>(lo[0]), h0 = static_cast<uint8_t>(hi[0]);
  if (l0 == h0) return b_.Seq(rule, {b_.Range(rule, l0, l0), SameLength(rule, lo_rest, hi_rest)});
  const int32_t rest = static_cast<int32_t>(n - 1);
  if (AllOf(lo_rest, '0') && AllOf(hi_rest, '9')) {
    return b_.Seq(rule, {b_.Range(rule, l0, h0), Digits(rule, rest, rest)});
  }
  std::vector<Frag> alts;
  alts.push_back(b_.Seq(rule, {b_.Range(rule, l0, l0),
                               SameLength(rule, lo_rest, std::string(n - 1, '9'))}));
  if (l0 + 1 <= h0 - 1) {
    alts.push_back(b_.Seq(rule, {b_.Range(rule, l0 + 1, h0 - 1), Digits(rule, rest, rest)}));
  }
  alts.push_back(b_.Seq(rule, {b_.Range(rule, h0, h0),
                               SameLength(rule, std::string(n - 1, '0'), hi_rest)}));
  return b_.Alt(rule, alts);
}

Frag JsonPieces::Unsigned(int32_t rule, uint64_t lo, std::optional<uint64_t> hi) {
  const std::string los = ToDigits(lo);
  std::vector<Frag> alts;
  if (!hi) {
    const int32_t len = static_cast<int32_t>(los.size());
    alts.push_back(SameLength(rule, los, std::string(los.size(), '9')));
    // Every number with more digits.
    alts.push_back(b_.Seq(rule, {b_.Range(rule, '1', '9'), Digits(rule, len, -1)}));
    return b_.Alt(rule, alts);
  }
  const std::string his = ToDigits(*hi);
  for (size_t d = los.size(); d <= his.size(); ++d) {
    std::string a = los;
    if (d != los.size()) {
      a.assign(d, '0');
      a[0] = '1';
    }
    const std::string b = d == his.size() ? his : std::string(d, '9');
    alts.push_back(SameLength(rule, a, b));
  }
  return alts.size() == 1 ? alts[0] : b_.Alt(rule, alts);
}

StatusOr<Frag> JsonPieces::Integer(int32_t rule, std::optional<int64_t> lo,
                                   std::optional<int64_t> hi) {
  if (lo && hi && *lo > *hi) {
    return InvalidArgument("minimum " + std::to_string(*lo) + " is above maximum " +
                           std::to_string(*hi) + ": no integer satisfies the bounds");
  }
  std::vector<Frag> alts;
  if (!hi || *hi >= 0) {
    const uint64_t a = lo && *lo > 0 ? static_cast<uint64_t>(*lo) : 0;
    std::optional<uint64_t> b;
    if (hi) b = static_cast<uint64_t>(*hi);
    alts.push_back(Unsigned(rule, a, b));
  }
  if (!lo || *lo < 0) {
    // "-" then the magnitude in [max(1, -hi), -lo].
    const uint64_t a = hi && *hi < 0 ? static_cast<uint64_t>(-(*hi + 1)) + 1 : 1;
    std::optional<uint64_t> b;
    if (lo) b = static_cast<uint64_t>(-(*lo + 1)) + 1;
    alts.push_back(b_.Seq(rule, {b_.Literal(rule, "-"), Unsigned(rule, a, b)}));
  }
  return alts.size() == 1 ? alts[0] : b_.Alt(rule, alts);
}

StatusOr<Frag> JsonPieces::Number(int32_t rule, std::optional<int64_t> lo,
                                  std::optional<int64_t> hi) {
  auto frac = [&] {
    return b_.Seq(rule, {b_.Literal(rule, "."), Digits(rule, 1, -1)});
  };
  if (!lo && !hi) {
    const Frag integer = b_.Alt(rule, {b_.Literal(rule, "0"),
                                       b_.Seq(rule, {b_.Range(rule, '1', '9'), Digits(rule, 0, -1)})});
    const Frag exp = b_.Seq(rule, {b_.Ranges(rule, {{{'e', 'e'}}, {{'E', 'E'}}}),
                                   b_.Optional(rule, b_.Ranges(rule, {{{'+', '+'}}, {{'-', '-'}}})),
                                   Digits(rule, 1, -1)});
    return b_.Seq(rule, {b_.Optional(rule, b_.Literal(rule, "-")), integer,
                         b_.Optional(rule, frac()), b_.Optional(rule, exp)});
  }
  if (lo && hi && *lo > *hi) {
    return InvalidArgument("minimum " + std::to_string(*lo) + " is above maximum " +
                           std::to_string(*hi) + ": no number satisfies the bounds");
  }
  // A magnitude m.f (f optional) in [a, b]: integer part in [a, b - 1] with any fraction, or
  // exactly b with an all-zero fraction; b absent: unbounded.
  auto magnitude = [&](uint64_t a, std::optional<uint64_t> b) {
    std::vector<Frag> alts;
    if (!b) return b_.Seq(rule, {Unsigned(rule, a, std::nullopt), b_.Optional(rule, frac())});
    if (a + 1 <= *b) {
      alts.push_back(b_.Seq(rule, {Unsigned(rule, a, *b - 1), b_.Optional(rule, frac())}));
    }
    const Frag zero_frac =
        b_.Seq(rule, {b_.Literal(rule, "."), b_.Plus(rule, b_.Literal(rule, "0"))});
    alts.push_back(b_.Seq(rule, {Unsigned(rule, *b, *b), b_.Optional(rule, zero_frac)}));
    return alts.size() == 1 ? alts[0] : b_.Alt(rule, alts);
  };
  std::vector<Frag> alts;
  if (!hi || *hi >= 0) {
    const uint64_t a = lo && *lo > 0 ? static_cast<uint64_t>(*lo) : 0;
    std::optional<uint64_t> b;
    if (hi) b = static_cast<uint64_t>(*hi);
    alts.push_back(magnitude(a, b));
  }
  if (!lo || *lo < 0) {
    const uint64_t a = hi && *hi < 0 ? static_cast<uint64_t>(-(*hi + 1)) + 1 : 0;
    std::optional<uint64_t> b;
    if (lo) b = static_cast<uint64_t>(-(*lo + 1)) + 1;
    alts.push_back(b_.Seq(rule, {b_.Literal(rule, "-"), magnitude(a, b)}));
  }
  return alts.size() == 1 ? alts[0] : b_.Alt(rule, alts);
}

}  // namespace llmux::grammar_internal
