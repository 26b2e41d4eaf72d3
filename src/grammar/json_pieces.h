// Building blocks of JSON grammars: UTF-8 encoded code point classes, the JSON string
// character, integer ranges, the generic JSON value, and the pattern (regex subset) compiler.
// Internal to src/grammar.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grammar/grammar.h"
#include "llmux/status.h"

namespace llmux::grammar_internal {

using CodeRanges = std::vector<std::pair<char32_t, char32_t>>;  // inclusive, any order
using ByteSeqs = std::vector<std::vector<std::pair<uint8_t, uint8_t>>>;

// Sorted, merged, surrogates removed.
CodeRanges Normalize(CodeRanges ranges);
// Complement within [0, 0x10FFFF] (of normalized ranges).
CodeRanges Complement(const CodeRanges& ranges);
// The UTF-8 byte-range sequences matching exactly the code points in `ranges`.
ByteSeqs Utf8Sequences(const CodeRanges& ranges);

// Shared rules of one grammar under construction.
class JsonPieces {
 public:
  explicit JsonPieces(GrammarBuilder& b) : b_(b) {}

  // One character inside a JSON string (unescaped or an escape sequence), inline in `rule`.
  Frag StringChar(int32_t rule);
  // A whole JSON string "...".
  int32_t StringRule();
  // Any JSON value / any object (whitespace policy: docs/structured_outputs.md).
  int32_t ValueRule();
  int32_t ObjectRule();
  // Separators: ',' / ':' each followed by at most one optional space.
  Frag Comma(int32_t rule);
  Frag Colon(int32_t rule);
  // -?(0|[1-9][0-9]*) restricted to [lo, hi] (either may be absent: unbounded).
  // InvalidArgument when the range is empty.
  StatusOr<Frag> Integer(int32_t rule, std::optional<int64_t> lo, std::optional<int64_t> hi);
  // A JSON number; with bounds (integral values) it has no exponent and lies in [lo, hi].
  StatusOr<Frag> Number(int32_t rule, std::optional<int64_t> lo, std::optional<int64_t> hi);
  // The characters of a string body (between the quotes) matching `pattern`, a regex
  // subset (docs/structured_outputs.md). InvalidArgument naming the unsupported construct.
  StatusOr<Frag> Pattern(int32_t rule, std::string_view pattern);
  // The UTF-8 bytes of code points in `ranges`, as they appear inside a JSON string (quote,
  // backslash and controls in their escaped form).
  Frag StringChars(int32_t rule, const CodeRanges& ranges);

 private:
  // Non-negative integers without leading zeros in [lo, hi]; hi absent = unbounded.
  Frag Unsigned(int32_t rule, uint64_t lo, std::optional<uint64_t> hi);
  Frag SameLength(int32_t rule, const std::string& lo, const std::string& hi);
  Frag Digits(int32_t rule, int32_t min, int32_t max);

  GrammarBuilder& b_;
  int32_t string_ = -1, value_ = -1, object_ = -1;
};

}  // namespace llmux::grammar_internal
