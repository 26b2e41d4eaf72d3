// JSON Schema `pattern`: a regex subset compiled to the bytes of a JSON string body.
// Supported: literals, '.', classes [...] / [^...] with ranges, \d \D \w \W \s \S, escaped
// metacharacters, \n \r \t \f \v \xHH \uHHHH, groups (...) and (?:...), alternation |,
// quantifiers * + ? {n} {n,} {n,m} (a trailing lazy '?' is accepted: it does not change the
// language), '^' at the start and '$' at the end. Without '^'/'$' the match may be preceded /
// followed by any characters (JSON Schema patterns are unanchored).
#include <functional>
#include <memory>

#include "grammar/json_pieces.h"

namespace llmux::grammar_internal {
namespace {

struct Node {
  enum Kind { kClass, kSeq, kAlt, kRepeat };
  Kind kind = kSeq;
  CodeRanges ranges;
  std::vector<Node> kids;
  int32_t min = 0, max = 0;  // kRepeat; max < 0 unbounded
};

constexpr int32_t kMaxRegexRepeat = 4096;

class RegexParser {
 public:
  explicit RegexParser(std::string_view p) : p_(p) {}

  StatusOr<Node> ParseAll(bool& anchored_start, bool& anchored_end) {
    anchored_start = Peek() == '^';
    if (anchored_start) ++i_;
    size_t end = p_.size();
    anchored_end = end > i_ && p_[end - 1] == '$' && (end < 2 || p_[end - 2] != '\\');
    if (anchored_end) p_ = p_.substr(0, end - 1);
    Node n = ParseAlt();
    if (error_.empty() && i_ < p_.size()) error_ = "unbalanced ')'";
    if (!error_.empty()) return InvalidArgument("pattern: " + error_);
    return n;
  }

 private:
  int Peek() const { return i_ < p_.size() ? static_cast<unsigned char>(p_[i_]) : -1; }

  char32_t NextCode() {
    const auto c = static_cast<unsigned char>(p_[i_]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i_ + n > p_.size()) n = 1;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(p_[i_ + k]) & 0x3F);
    i_ += n;
    return cp;
  }

  void Fail(std::string msg) {
    if (error_.empty()) error_ = std::move(msg);
    i_ = p_.size();
  }

  Node ParseAlt() {
    Node alt;
    alt.kind = Node::kAlt;
    alt.kids.push_back(ParseSeq());
    while (Peek() == '|') {
      ++i_;
      alt.kids.push_back(ParseSeq());
    }
    if (alt.kids.size() == 1) return std::move(alt.kids[0]);
    return alt;
  }

  Node ParseSeq() {
    Node seq;
    seq.kind = Node::kSeq;
    while (i_ < p_.size() && Peek() != '|' && Peek() != ')') {
      Node atom = ParseAtom();
      seq.kids.push_back(ParseQuantifier(std::move(atom)));
    }
    return seq;
  }

  Node ParseQuantifier(Node atom) {
    int32_t min = 0, max = 0;
    const int c = Peek();
    if (c == '*') {
      min = 0, max = -1;
    } else if (c == '+') {
      min = 1, max = -1;
    } else if (c == '?') {
      min = 0, max = 1;
    } else if (c == '{') {
      const size_t close = p_.find('}', i_);
      if (close == std::string_view::npos) {
        Fail("unterminated '{' quantifier");
        return atom;
      }
      const std::string body(p_.substr(i_ + 1, close - i_ - 1));
      const size_t comma = body.find(',');
      auto number = [&](const std::string& s, int32_t& out) {
        if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) {
          return false;
        }
        out = std::stoi(s);
        return true;
      };
      bool ok = number(comma == std::string::npos ? body : body.substr(0, comma), min);
      if (comma == std::string::npos) {
        max = min;
      } else if (comma + 1 == body.size()) {
        max = -1;
      } else {
        ok = ok && number(body.substr(comma + 1), max) && max >= min;
      }
      if (!ok) {
        Fail("malformed quantifier '{" + body + "}'");
        return atom;
      }
      if (min > kMaxRegexRepeat || max > kMaxRegexRepeat) {
        Fail("quantifier bound above " + std::to_string(kMaxRegexRepeat));
        return atom;
      }
      i_ = close;
    } else {
      return atom;
    }
    ++i_;
    if (Peek() == '?') ++i_;  // lazy: same language
    if (Peek() == '+') {
      Fail("possessive quantifiers are not supported");
      return atom;
    }
    Node rep;
    rep.kind = Node::kRepeat;
    rep.min = min;
    rep.max = max;
    rep.kids.push_back(std::move(atom));
    return rep;
  }

  static Node Class(CodeRanges r) {
    Node n;
    n.kind = Node::kClass;
    n.ranges = Normalize(std::move(r));
    return n;
  }
  static CodeRanges Digit() { return {{'0', '9'}}; }
  static CodeRanges Word() { return {{'0', '9'}, {'A', 'Z'}, {'a', 'z'}, {'_', '_'}}; }
  static CodeRanges Space() { return {{' ', ' '}, {'\t', '\r'}}; }

  // After a backslash: the class it denotes (single code points as one-element ranges).
  bool ParseEscape(CodeRanges& out) {
    if (i_ >= p_.size()) {
      Fail("trailing backslash");
      return false;
    }
    const char c = p_[i_++];
    switch (c) {
      case 'd': out = Digit(); return true;
      case 'D': out = Complement(Normalize(Digit())); return true;
      case 'w': out = Word(); return true;
      case 'W': out = Complement(Normalize(Word())); return true;
      case 's': out = Space(); return true;
      case 'S': out = Complement(Normalize(Space())); return true;
      case 'n': out = {{'\n', '\n'}}; return true;
      case 'r': out = {{'\r', '\r'}}; return true;
      case 't': out = {{'\t', '\t'}}; return true;
      case 'f': out = {{'\f', '\f'}}; return true;
      case 'v': out = {{'\v', '\v'}}; return true;
      case 'x':
      case 'u': {
        const size_t n = c == 'x' ? 2 : 4;
        if (i_ + n > p_.size()) {
          Fail(std::string("truncated \\") + c + " escape");
          return false;
        }
        const std::string hex(p_.substr(i_, n));
        if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
          Fail(std::string("malformed \\") + c + " escape");
          return false;
        }
        const auto cp = static_cast<char32_t>(std::stoul(hex, nullptr, 16));
        i_ += n;
        out = {{cp, cp}};
        return true;
      }
      default:
        break;
    }
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      Fail(std::string("unsupported escape '\\") + c + "' (backreferences, \\b, \\p{...} ...)");
      return false;
    }
    --i_;
    const char32_t cp = NextCode();
    out = {{cp, cp}};
    return true;
  }

  Node ParseAtom() {
    const int c = Peek();
    if (c == '(') {
      ++i_;
      if (Peek() == '?') {
        if (i_ + 1 < p_.size() && p_[i_ + 1] == ':') {
          i_ += 2;
        } else {
          Fail("lookaround and named groups '(?...' are not supported");
          return Node{};
        }
      }
      Node inner = ParseAlt();
      if (Peek() != ')') {
        Fail("unbalanced '('");
        return Node{};
      }
      ++i_;
      return inner;
    }
    if (c == '[') return ParseClass();
    if (c == '.') {
      ++i_;
      return Class(Complement(Normalize({{'\n', '\n'}})));
    }
    if (c == '\\') {
      ++i_;
      CodeRanges r;
      if (!ParseEscape(r)) return Node{};
      return Class(r);
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') {
      Fail(std::string("quantifier '") + static_cast<char>(c) + "' without an operand");
      return Node{};
    }
    if (c == '^' || c == '$') {
      Fail("'^' and '$' are supported only at the start and the end of the pattern");
      return Node{};
    }
    const char32_t cp = NextCode();
    return Class({{cp, cp}});
  }

  Node ParseClass() {
    ++i_;  // '['
    bool negate = false;
    if (Peek() == '^') {
      negate = true;
      ++i_;
    }
    CodeRanges ranges;
    bool first = true;
    while (i_ < p_.size() && (Peek() != ']' || first)) {
      first = false;
      CodeRanges item;
      if (Peek() == '\\') {
        ++i_;
        if (!ParseEscape(item)) return Node{};
      } else {
        const char32_t cp = NextCode();
        item = {{cp, cp}};
      }
      // A range a-b (when both ends are single code points).
      if (Peek() == '-' && i_ + 1 < p_.size() && p_[i_ + 1] != ']' && item.size() == 1 &&
          item[0].first == item[0].second) {
        ++i_;
        CodeRanges hi;
        if (Peek() == '\\') {
          ++i_;
          if (!ParseEscape(hi)) return Node{};
        } else {
          const char32_t cp = NextCode();
          hi = {{cp, cp}};
        }
        if (hi.size() != 1 || hi[0].first != hi[0].second || hi[0].first < item[0].first) {
          Fail("invalid class range");
          return Node{};
        }
        item = {{item[0].first, hi[0].first}};
      }
      ranges.insert(ranges.end(), item.begin(), item.end());
    }
    if (Peek() != ']') {
      Fail("unterminated character class");
      return Node{};
    }
    ++i_;
    ranges = Normalize(std::move(ranges));
    if (negate) ranges = Complement(ranges);
    if (ranges.empty()) {
      Fail("a character class that matches no character");
      return Node{};
    }
    return Class(ranges);
  }

  std::string_view p_;
  size_t i_ = 0;
  std::string error_;
};

}  // namespace

StatusOr<Frag> JsonPieces::Pattern(int32_t rule, std::string_view pattern) {
  RegexParser parser(pattern);
  bool anchored_start = false, anchored_end = false;
  LLMUX_ASSIGN_OR_RETURN(Node root, parser.ParseAll(anchored_start, anchored_end));
  std::function<Frag(const Node&)> emit = [&](const Node& n) -> Frag {
    switch (n.kind) {
      case Node::kClass:
        return StringChars(rule, n.ranges);  // never empty (the parser refuses that)
      case Node::kSeq: {
        std::vector<Frag> parts;
        for (const Node& k : n.kids) parts.push_back(emit(k));
        return b_.Seq(rule, parts);
      }
      case Node::kAlt: {
        std::vector<Frag> parts;
        for (const Node& k : n.kids) parts.push_back(emit(k));
        return b_.Alt(rule, parts);
      }
      case Node::kRepeat:
        return b_.Repeat(rule, [&] { return emit(n.kids[0]); }, n.min, n.max);
    }
    return b_.Empty(rule);
  };
  std::vector<Frag> parts;
  if (!anchored_start) parts.push_back(b_.Star(rule, StringChar(rule)));
  parts.push_back(emit(root));
  if (!anchored_end) parts.push_back(b_.Star(rule, StringChar(rule)));
  return b_.Seq(rule, parts);
}

}  // namespace llmux::grammar_internal
