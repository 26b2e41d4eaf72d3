// UTF-8 string helpers with JavaScript semantics, so the Jinja engine's string methods match
// @huggingface/jinja (which runs on JS strings): JS's whitespace set for trim/split, ASCII
// `\w` for title(), UTF-16 lengths for `length`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace llmux::jinja {

// Decodes one code point at `pos` (advancing it). Invalid bytes decode as themselves (one
// byte, value 0xDC00 + byte) so that any input round-trips through EncodeUtf8.
char32_t DecodeUtf8(std::string_view s, size_t& pos);
void AppendUtf8(std::string& out, char32_t cp);
std::vector<std::string> SplitCodePoints(std::string_view s);

// JS `/\s/`: ASCII whitespace, NBSP, U+1680, U+2000-200A, U+2028/2029, U+202F, U+205F,
// U+3000, U+FEFF.
bool IsJsSpace(char32_t cp);
// Byte length of the JS whitespace character starting at `pos`, or 0.
size_t JsSpaceLength(std::string_view s, size_t pos);

std::string JsTrim(std::string_view s);
std::string JsTrimStart(std::string_view s);
std::string JsTrimEnd(std::string_view s);

// toUpperCase / toLowerCase for ASCII, Latin-1, Greek and Cyrillic (other scripts unchanged).
std::string JsToUpper(std::string_view s);
std::string JsToLower(std::string_view s);
// /\b\w/g -> upper case: the first ASCII word character after a non-word one.
std::string JsTitle(std::string_view s);
// First code point upper-cased, the rest unchanged.
std::string JsCapitalize(std::string_view s);

// JS `.length`: UTF-16 code units.
size_t Utf16Length(std::string_view s);

// Python str.split semantics as the reference implements them. `sep` null splits on runs of
// whitespace; maxsplit < 0 means no limit.
std::vector<std::string> SplitWhitespace(std::string_view s, long long maxsplit);
std::vector<std::string> SplitOn(std::string_view s, std::string_view sep, long long maxsplit);

// Replaces up to `count` occurrences (count < 0: all). An empty `from` inserts `to` between
// code points and at both ends.
std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to,
                       long long count);

}  // namespace llmux::jinja
