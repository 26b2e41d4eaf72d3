// Quoting of user-written text echoed in config error messages.
#pragma once

#include <string>
#include <string_view>

namespace llmux::config_internal {

// `"text"` with '"' and '\' escaped and control characters as \xNN, cut to `max_chars` (then
// ending in "..."), so one error always stays on one line.
inline std::string QuoteValue(std::string_view text, size_t max_chars = 80) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == max_chars) {
      out += "...";
      break;
    }
    const char c = text[i];
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += "\\x";
      out.push_back(kHex[(c >> 4) & 0xf]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace llmux::config_internal
