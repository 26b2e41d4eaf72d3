#include "server/token_text.h"

#include <cstdio>
#include <string_view>

namespace llmux::server {
namespace {

constexpr std::string_view kMetaspace = "\xe2\x96\x81";  // U+2581 "▁"

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

std::string TokenBytes(const Tokenizer& tokenizer, int32_t id) {
  const std::string_view piece = tokenizer.IdToPiece(id);
  // SentencePiece byte fallback: "<0xE2>" is that one byte.
  if (piece.size() == 6 && piece.starts_with("<0x") && piece.ends_with(">")) {
    const int hi = HexDigit(piece[3]), lo = HexDigit(piece[4]);
    if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
  }
  const int32_t one[1] = {id};
  std::string text = tokenizer.Decode(one, /*skip_special_tokens=*/false);
  // NOTE: the Metaspace decoder strips the space of a sequence-initial "▁"; a token alone is
  // always sequence-initial, so put the space back.
  if (piece.starts_with(kMetaspace) && !text.starts_with(' ')) text.insert(0, 1, ' ');
  return text;
}

std::string TokenDisplayString(const std::string& bytes) {
  if (ValidUtf8(bytes)) return bytes;
  std::string out = "bytes:";
  char buf[5];
  for (unsigned char c : bytes) {
    std::snprintf(buf, sizeof(buf), "\\x%02x", c);
    out += buf;
  }
  return out;
}

}  // namespace llmux::server
