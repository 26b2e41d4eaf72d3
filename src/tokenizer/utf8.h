// UTF-8 helpers shared by the tokenizer stages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llmux::tokenizer_internal {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// `bytes` with every invalid UTF-8 subsequence replaced by U+FFFD, exactly as Rust's
// String::from_utf8_lossy does (one U+FFFD per maximal subpart, Unicode 3.9 practice);
// a truncated sequence at the end also becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Whether `bytes` is entirely valid UTF-8.
bool IsValidUtf8(std::string_view bytes);

// Length (0..3) of the trailing bytes of `bytes` that form an incomplete but so far valid
// multi-byte sequence (a later byte could complete it).
size_t IncompleteUtf8Tail(std::string_view bytes);

// Byte length of the character that starts with `lead` in valid UTF-8 (1 for ASCII).
inline size_t Utf8CharLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Code point starting at `pos` of valid UTF-8 `s`; advances `pos` past it.
char32_t NextCodepoint(std::string_view s, size_t& pos);

void AppendUtf8(std::string& out, char32_t cp);

// GPT-2 byte-to-unicode mapping: byte b -> the UTF-8 text of its printable stand-in.
const std::array<std::string, 256>& ByteToUnicode();
// Inverse of ByteToUnicode for one code point; nullopt when `cp` is not a stand-in.
std::optional<uint8_t> UnicodeToByte(char32_t cp);

}  // namespace llmux::tokenizer_internal
