#include "tokenizer/jinja/lexer.h"

#include <array>
#include <utility>

#include "tokenizer/jinja/text.h"

namespace llmux::jinja {
namespace {

// Text after preprocessing, with the original offset of each byte (one extra entry: the end).
struct MappedText {
  std::string text;
  std::vector<size_t> origin;

  void Append(const MappedText& from, size_t pos, size_t n) {
    text.append(from.text, pos, n);
    origin.insert(origin.end(), from.origin.begin() + pos, from.origin.begin() + pos + n);
  }
  void Finish(size_t end_offset) { origin.push_back(end_offset); }
};

bool IsLineStart(const std::string& s, size_t pos) {
  if (pos == 0) return true;
  const char prev = s[pos - 1];
  if (prev == '\n' || prev == '\r') return true;
  // U+2028 / U+2029 (E2 80 A8 / A9) also end lines for JS's multiline `^`.
  return pos >= 3 && s.compare(pos - 3, 2, "\xE2\x80") == 0 &&
         (s[pos - 1] == '\xA8' || s[pos - 1] == '\xA9');
}

// lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1".
MappedText LstripBlocks(const MappedText& in) {
  MappedText out;
  const std::string& s = in.text;
  size_t pos = 0;
  while (pos < s.size()) {
    if (IsLineStart(s, pos)) {
      size_t end = pos;
      while (end < s.size() && (s[end] == ' ' || s[end] == '\t')) ++end;
      if (end + 1 < s.size() && s[end] == '{' &&
          (s[end + 1] == '#' || s[end + 1] == '%' || s[end + 1] == '-')) {
        pos = end;
      }
    }
    out.Append(in, pos, 1);
    ++pos;
  }
  out.Finish(in.origin.back());
  return out;
}

// trim_blocks: /([#%-]})\n/g -> "$1".
MappedText TrimBlocks(const MappedText& in) {
  MappedText out;
  const std::string& s = in.text;
  for (size_t pos = 0; pos < s.size(); ++pos) {
    if (s[pos] == '\n' && pos >= 2 && s[pos - 1] == '}' &&
        (s[pos - 2] == '#' || s[pos - 2] == '%' || s[pos - 2] == '-')) {
      continue;
    }
    out.Append(in, pos, 1);
  }
  out.Finish(in.origin.back());
  return out;
}

// Length of a `{%-? generation|endgeneration -?%}` tag at `pos` (0 if none); sets the strip
// flags.
size_t GenerationTag(const std::string& s, size_t pos, bool& lstrip, bool& rstrip) {
  if (s.compare(pos, 2, "{%") != 0) return 0;
  size_t p = pos + 2;
  lstrip = p < s.size() && s[p] == '-';
  if (lstrip) ++p;
  while (size_t n = JsSpaceLength(s, p)) p += n;
  if (s.compare(p, 3, "end") == 0 && s.compare(p + 3, 10, "generation") == 0) p += 3;
  if (s.compare(p, 10, "generation") != 0) return 0;
  p += 10;
  while (size_t n = JsSpaceLength(s, p)) p += n;
  rstrip = p < s.size() && s[p] == '-';
  if (rstrip) ++p;
  if (s.compare(p, 2, "%}") != 0) return 0;
  return p + 2 - pos;
}

// /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs: drops the marker, and the whitespace
// around it on the sides that carry a '-'.
MappedText StripGenerationTags(const MappedText& in) {
  MappedText out;
  const std::string& s = in.text;
  size_t pos = 0;
  size_t run_start = 0;  // start of the whitespace run before pos not yet claimed by a match
  while (pos < s.size()) {
    bool lstrip = false, rstrip = false;
    if (const size_t len = GenerationTag(s, pos, lstrip, rstrip)) {
      if (lstrip) {
        const size_t drop = pos - run_start;
        out.text.resize(out.text.size() - drop);
        out.origin.resize(out.origin.size() - drop);
      }
      pos += len;
      const size_t after = pos;
      while (size_t n = JsSpaceLength(s, pos)) pos += n;
      if (!rstrip) out.Append(in, after, pos - after);
      run_start = pos;
      continue;
    }
    if (const size_t n = JsSpaceLength(s, pos)) {
      out.Append(in, pos, n);
      pos += n;
      continue;
    }
    out.Append(in, pos, 1);
    ++pos;
    run_start = pos;
  }
  out.Finish(in.origin.back());
  return out;
}

MappedText Preprocess(std::string_view source) {
  MappedText m;
  m.text = std::string(source);
  if (!m.text.empty() && m.text.back() == '\n') m.text.pop_back();
  for (size_t k = 0; k < m.text.size(); ++k) m.origin.push_back(k);
  m.Finish(m.text.size());
  return StripGenerationTags(TrimBlocks(LstripBlocks(m)));
}

constexpr std::array<std::pair<std::string_view, TokenType>, 30> kMappingTable = {{
    {"{%", TokenType::kOpenStatement},
    {"%}", TokenType::kCloseStatement},
    {"{{", TokenType::kOpenExpression},
    {"}}", TokenType::kCloseExpression},
    {"(", TokenType::kOpenParen},
    {")", TokenType::kCloseParen},
    {"{", TokenType::kOpenCurlyBracket},
    {"}", TokenType::kCloseCurlyBracket},
    {"[", TokenType::kOpenSquareBracket},
    {"]", TokenType::kCloseSquareBracket},
    {",", TokenType::kComma},
    {".", TokenType::kDot},
    {":", TokenType::kColon},
    {"|", TokenType::kPipe},
    {"<=", TokenType::kComparisonOperator},
    {">=", TokenType::kComparisonOperator},
    {"==", TokenType::kComparisonOperator},
    {"!=", TokenType::kComparisonOperator},
    {"<", TokenType::kComparisonOperator},
    {">", TokenType::kComparisonOperator},
    {"+", TokenType::kAdditiveOperator},
    {"-", TokenType::kAdditiveOperator},
    {"~", TokenType::kAdditiveOperator},
    {"**", TokenType::kExponentiationOperator},
    {"*", TokenType::kMultiplicativeOperator},
    {"//", TokenType::kMultiplicativeOperator},
    {"/", TokenType::kMultiplicativeOperator},
    {"%", TokenType::kMultiplicativeOperator},
    {"=", TokenType::kEquals},
    {"", TokenType::kText},  // sentinel, never matched
}};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_';
}
int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  Lexer(std::string_view original, MappedText src) : original_(original), m_(std::move(src)) {}

  StatusOr<std::vector<Token>> Run() {
    const std::string& s = m_.text;
    while (pos_ < s.size()) {
      const bool after_tag = tokens_.empty() || Last() == TokenType::kCloseStatement ||
                             Last() == TokenType::kCloseExpression || Last() == TokenType::kComment;
      if (after_tag) {
        const size_t start = pos_;
        while (pos_ < s.size() &&
               !(s[pos_] == '{' && pos_ + 1 < s.size() &&
                 (s[pos_ + 1] == '%' || s[pos_ + 1] == '{' || s[pos_ + 1] == '#'))) {
          ++pos_;
        }
        if (pos_ > start) {
          Push(TokenType::kText, s.substr(start, pos_ - start), start);
          continue;
        }
      }
      if (s.compare(pos_, 2, "{#") == 0) {
        LLMUX_RETURN_IF_ERROR(Comment());
        continue;
      }
      if (s.compare(pos_, 3, "{%-") == 0 || s.compare(pos_, 3, "{{-") == 0) {
        StripTrailingWhitespace();
        const bool stmt = s[pos_ + 1] == '%';
        Push(stmt ? TokenType::kOpenStatement : TokenType::kOpenExpression, stmt ? "{%" : "{{",
             pos_);
        if (!stmt) curly_depth_ = 0;
        pos_ += 3;
        continue;
      }
      while (size_t n = JsSpaceLength(s, pos_)) {
        pos_ += n;
        if (pos_ >= s.size()) return Error(pos_, "unexpected end of template");
      }
      if (s.compare(pos_, 3, "-%}") == 0 || s.compare(pos_, 3, "-}}") == 0) {
        const bool stmt = s[pos_ + 1] == '%';
        Push(stmt ? TokenType::kCloseStatement : TokenType::kCloseExpression, stmt ? "%}" : "}}",
             pos_);
        pos_ += 3;
        while (size_t n = JsSpaceLength(s, pos_)) pos_ += n;
        continue;
      }
      const char c = s[pos_];
      if ((c == '-' || c == '+') && !BinaryContext()) {
        if (tokens_.empty() || Last() == TokenType::kText) {
          return Error(pos_, std::string("unexpected character '") + c + "'");
        }
        const size_t start = pos_++;
        std::string num;
        LLMUX_RETURN_IF_ERROR(Digits(num));
        if (!num.empty() && pos_ + 1 < s.size() && s[pos_] == '.' && IsDigit(s[pos_ + 1])) {
          ++pos_;
          std::string frac;
          LLMUX_RETURN_IF_ERROR(Digits(frac));
          num += "." + frac;
        }
        Push(num.empty() ? TokenType::kUnaryOperator : TokenType::kNumericLiteral,
             std::string(1, c) + num, start);
        continue;
      }
      if (MatchTable()) continue;
      if (c == '\'' || c == '"') {
        LLMUX_RETURN_IF_ERROR(StringLiteral(c));
        continue;
      }
      if (IsDigit(c)) {
        const size_t start = pos_;
        std::string num;
        LLMUX_RETURN_IF_ERROR(Digits(num));
        if ((tokens_.empty() || Last() != TokenType::kDot) && pos_ + 1 < s.size() &&
            s[pos_] == '.' && IsDigit(s[pos_ + 1])) {
          ++pos_;
          std::string frac;
          LLMUX_RETURN_IF_ERROR(Digits(frac));
          num += "." + frac;
        }
        Push(TokenType::kNumericLiteral, num, start);
        continue;
      }
      if (IsWordChar(c)) {
        const size_t start = pos_;
        while (pos_ < s.size() && IsWordChar(s[pos_])) {
          ++pos_;
          if (pos_ >= s.size()) return Error(pos_, "unexpected end of template");
        }
        Push(TokenType::kIdentifier, s.substr(start, pos_ - start), start);
        continue;
      }
      size_t next = pos_;
      DecodeUtf8(s, next);
      return Error(pos_, "unexpected character '" + s.substr(pos_, next - pos_) + "'");
    }
    return std::move(tokens_);
  }

 private:
  TokenType Last() const { return tokens_.back().type; }

  void Push(TokenType type, std::string value, size_t pos) {
    tokens_.push_back(Token{type, std::move(value), m_.origin[pos]});
  }

  Status Error(size_t pos, const std::string& what) const {
    const size_t offset = m_.origin[std::min(pos, m_.origin.size() - 1)];
    return InvalidArgument("chat template syntax error at " + DescribePosition(original_, offset) +
                           ": " + what);
  }

  // A '-' or '+' after an operand is the binary operator.
  bool BinaryContext() const {
    if (tokens_.empty()) return false;
    switch (Last()) {
      case TokenType::kIdentifier:
      case TokenType::kNumericLiteral:
      case TokenType::kStringLiteral:
      case TokenType::kCloseParen:
      case TokenType::kCloseSquareBracket:
        return true;
      default:
        return false;
    }
  }

  void StripTrailingWhitespace() {
    if (tokens_.empty() || Last() != TokenType::kText) return;
    tokens_.back().value = JsTrimEnd(tokens_.back().value);
    if (tokens_.back().value.empty()) tokens_.pop_back();
  }

  Status Digits(std::string& num) {
    const std::string& s = m_.text;
    while (pos_ < s.size() && IsDigit(s[pos_])) {
      num.push_back(s[pos_++]);
      if (pos_ >= s.size()) return Error(pos_, "unexpected end of template");
    }
    return Status::Ok();
  }

  bool MatchTable() {
    const std::string& s = m_.text;
    for (const auto& [seq, type] : kMappingTable) {
      if (seq.empty()) break;
      if (seq == "}}" && curly_depth_ > 0) continue;
      if (s.compare(pos_, seq.size(), seq) != 0) continue;
      Push(type, std::string(seq), pos_);
      if (type == TokenType::kOpenExpression) curly_depth_ = 0;
      if (type == TokenType::kOpenCurlyBracket) ++curly_depth_;
      if (type == TokenType::kCloseCurlyBracket) --curly_depth_;
      pos_ += seq.size();
      return true;
    }
    return false;
  }

  Status Comment() {
    const std::string& s = m_.text;
    const size_t open = pos_;
    pos_ += 2;
    const bool strip_before = pos_ < s.size() && s[pos_] == '-';
    if (strip_before) ++pos_;
    const size_t start = pos_;
    while (!(pos_ + 1 < s.size() && s[pos_] == '#' && s[pos_ + 1] == '}')) {
      if (pos_ + 2 >= s.size()) return Error(open, "missing end of comment tag '#}'");
      ++pos_;
    }
    std::string comment = s.substr(start, pos_ - start);
    const bool strip_after = !comment.empty() && comment.back() == '-';
    if (strip_after) comment.pop_back();
    if (strip_before) StripTrailingWhitespace();
    Push(TokenType::kComment, std::move(comment), open);
    pos_ += 2;
    if (strip_after) {
      while (size_t n = JsSpaceLength(s, pos_)) pos_ += n;
    }
    return Status::Ok();
  }

  Status StringLiteral(char quote) {
    const std::string& s = m_.text;
    const size_t open = pos_++;
    std::string value;
    char32_t pending_high = 0;  // a \uD8xx escape waiting for its low half
    auto flush_high = [&] {
      if (pending_high) AppendUtf8(value, pending_high);
      pending_high = 0;
    };
    while (pos_ < s.size() && s[pos_] != quote) {
      if (s[pos_] != '\\') {
        flush_high();
        value.push_back(s[pos_++]);
        if (pos_ >= s.size()) return Error(open, "unterminated string literal");
        continue;
      }
      if (++pos_ >= s.size()) return Error(open, "unterminated string literal");
      const char e = s[pos_++];
      if (e == 'x' || e == 'u') {
        const size_t len = e == 'x' ? 2 : 4;
        char32_t cp = 0;
        for (size_t k = 0; k < len; ++k) {
          const int h = pos_ + k < s.size() ? HexValue(s[pos_ + k]) : -1;
          if (h < 0) return Error(pos_ - 2, "invalid hexadecimal escape sequence");
          cp = cp * 16 + static_cast<char32_t>(h);
        }
        pos_ += len;
        if (cp >= 0xDC00 && cp <= 0xDFFF && pending_high) {
          AppendUtf8(value, 0x10000 + ((pending_high - 0xD800) << 10) + (cp - 0xDC00));
          pending_high = 0;
        } else {
          flush_high();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            pending_high = cp;
          } else {
            AppendUtf8(value, cp);
          }
        }
        continue;
      }
      flush_high();
      switch (e) {
        case 'n':
          value.push_back('\n');
          break;
        case 't':
          value.push_back('\t');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'v':
          value.push_back('\v');
          break;
        case '\'':
          value.push_back('\'');
          break;
        case '"':
          value.push_back('"');
          break;
        case '\\':
          value.push_back('\\');
          break;
        default:
          return Error(pos_ - 2, std::string("unexpected escaped character '") + e + "'");
      }
    }
    flush_high();
    if (pos_ >= s.size()) return Error(open, "unterminated string literal");
    ++pos_;  // closing quote
    tokens_.push_back(Token{TokenType::kStringLiteral, std::move(value), m_.origin[open]});
    return Status::Ok();
  }

  std::string_view original_;
  MappedText m_;
  size_t pos_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::string DescribePosition(std::string_view source, size_t offset) {
  size_t line = 1;
  size_t line_start = 0;
  for (size_t k = 0; k < offset && k < source.size(); ++k) {
    if (source[k] == '\n') {
      ++line;
      line_start = k + 1;
    }
  }
  size_t column = 1;
  size_t pos = line_start;
  while (pos < offset && pos < source.size()) {
    DecodeUtf8(source, pos);
    ++column;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(source, Preprocess(source)).Run();
}

}  // namespace llmux::jinja
