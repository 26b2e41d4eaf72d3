#include "tokenizer/jinja/text.h"

#include "tokenizer/utf8.h"

namespace llmux::jinja {
namespace {

constexpr char32_t kInvalidByteBase = 0xDC00;

char32_t MapUpper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if (c == 0xB5) return 0x39C;  // micro sign -> Greek capital mu
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c == 0x3C2) return 0x3A3;  // final sigma
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

char32_t MapLower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool IsAsciiWord(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

char32_t DecodeUtf8(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || pos + len > s.size()) {
    ++pos;
    return b0 < 0x80 ? b0 : kInvalidByteBase + b0;
  }
  char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[pos + k]);
    if ((b & 0xC0) != 0x80) {
      ++pos;
      return kInvalidByteBase + b0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  pos += len;
  return cp;
}

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp >= kInvalidByteBase + 0x80 && cp <= kInvalidByteBase + 0xFF) {
    out.push_back(static_cast<char>(cp - kInvalidByteBase));  // an invalid byte kept as is
    return;
  }
  tokenizer_internal::AppendUtf8(out, cp);
}

std::vector<std::string> SplitCodePoints(std::string_view s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t start = pos;
    DecodeUtf8(s, pos);
    out.emplace_back(s.substr(start, pos - start));
  }
  return out;
}

bool IsJsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000 || c == 0xFEFF;
}

size_t JsSpaceLength(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  size_t next = pos;
  return IsJsSpace(DecodeUtf8(s, next)) ? next - pos : 0;
}

std::string JsTrimStart(std::string_view s) {
  size_t pos = 0;
  while (size_t n = JsSpaceLength(s, pos)) pos += n;
  return std::string(s.substr(pos));
}

std::string JsTrimEnd(std::string_view s) {
  size_t end = 0;  // end of the last non-space code point
  size_t pos = 0;
  while (pos < s.size()) {
    const char32_t cp = DecodeUtf8(s, pos);
    if (!IsJsSpace(cp)) end = pos;
  }
  return std::string(s.substr(0, end));
}

std::string JsTrim(std::string_view s) { return JsTrimEnd(JsTrimStart(s)); }

std::string JsToUpper(std::string_view s) {
  std::string out;
  size_t pos = 0;
  while (pos < s.size()) {
    const char32_t cp = DecodeUtf8(s, pos);
    if (cp == 0xDF) {
      out += "SS";  // JS upper-cases sharp s to two letters
    } else {
      AppendUtf8(out, MapUpper(cp));
    }
  }
  return out;
}

std::string JsToLower(std::string_view s) {
  std::string out;
  size_t pos = 0;
  while (pos < s.size()) AppendUtf8(out, MapLower(DecodeUtf8(s, pos)));
  return out;
}

std::string JsTitle(std::string_view s) {
  std::string out(s);
  for (size_t k = 0; k < out.size(); ++k) {
    const bool boundary = k == 0 || !IsAsciiWord(out[k - 1]);
    if (boundary && out[k] >= 'a' && out[k] <= 'z') out[k] = static_cast<char>(out[k] - 32);
  }
  return out;
}

std::string JsCapitalize(std::string_view s) {
  if (s.empty()) return std::string();
  size_t pos = 0;
  const char32_t first = DecodeUtf8(s, pos);
  std::string out = first == 0xDF ? "SS" : "";
  if (out.empty()) AppendUtf8(out, MapUpper(first));
  out.append(s.substr(pos));
  return out;
}

size_t Utf16Length(std::string_view s) {
  size_t n = 0;
  size_t pos = 0;
  while (pos < s.size()) n += DecodeUtf8(s, pos) >= 0x10000 ? 2 : 1;
  return n;
}

std::vector<std::string> SplitWhitespace(std::string_view s, long long maxsplit) {
  std::vector<std::string> out;
  const std::string text = JsTrimStart(s);
  size_t pos = 0;
  while (pos < text.size()) {
    while (size_t n = JsSpaceLength(text, pos)) pos += n;
    if (pos >= text.size()) break;
    const size_t start = pos;
    while (pos < text.size() && JsSpaceLength(text, pos) == 0) DecodeUtf8(text, pos);
    if (maxsplit != -1 && static_cast<long long>(out.size()) >= maxsplit) {
      out.push_back(text.substr(start));
      break;
    }
    out.push_back(text.substr(start, pos - start));
  }
  return out;
}

std::vector<std::string> SplitOn(std::string_view s, std::string_view sep, long long maxsplit) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t hit = s.find(sep, start);
    if (hit == std::string_view::npos) break;
    parts.emplace_back(s.substr(start, hit - start));
    start = hit + sep.size();
  }
  parts.emplace_back(s.substr(start));
  if (maxsplit != -1 && static_cast<long long>(parts.size()) > maxsplit) {
    const size_t keep = maxsplit < 0 ? 0 : static_cast<size_t>(maxsplit);
    std::string rest;
    for (size_t k = keep; k < parts.size(); ++k) {
      if (k > keep) rest.append(sep);
      rest += parts[k];
    }
    parts.resize(keep);
    parts.push_back(std::move(rest));
  }
  return parts;
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to,
                       long long count) {
  if (count == 0) return std::string(s);
  long long remaining = count < 0 ? -1 : count;
  std::string out;
  if (from.empty()) {
    size_t pos = 0;
    while (true) {
      if (remaining != 0) {
        out.append(to);
        if (remaining > 0) --remaining;
      }
      if (pos >= s.size()) break;
      const size_t start = pos;
      DecodeUtf8(s, pos);
      out.append(s.substr(start, pos - start));
    }
    return out;
  }
  size_t start = 0;
  while (remaining != 0) {
    const size_t hit = s.find(from, start);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(start, hit - start));
    out.append(to);
    start = hit + from.size();
    if (remaining > 0) --remaining;
  }
  out.append(s.substr(start));
  return out;
}

}  // namespace llmux::jinja
