// Lexer of the Jinja-subset engine. Mirrors @huggingface/jinja's tokenizer, including its
// preprocessing for trim_blocks / lstrip_blocks (always on, as Hugging Face renders chat
// templates) and the removal of {% generation %} markers, so whitespace comes out the same.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux::jinja {

enum class TokenType {
  kText,
  kNumericLiteral,
  kStringLiteral,
  kIdentifier,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,    // {%
  kCloseStatement,   // %}
  kOpenExpression,   // {{
  kCloseExpression,  // }}
  kOpenSquareBracket,
  kCloseSquareBracket,
  kOpenCurlyBracket,
  kCloseCurlyBracket,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditiveOperator,        // + - ~
  kMultiplicativeOperator,  // * / // %
  kExponentiationOperator,  // **
  kComparisonOperator,      // < > <= >= == !=
  kUnaryOperator,           // - + (prefix)
  kComment,
};

struct Token {
  TokenType type;
  std::string value;
  size_t offset;  // byte offset in the original template source
};

// "line L, column C" (1-based; columns count code points) of a byte offset in `source`.
std::string DescribePosition(std::string_view source, size_t offset);

// Splits `source` into tokens. InvalidArgument with the position on an unexpected character,
// an unterminated string or comment, or a bad escape.
StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace llmux::jinja
