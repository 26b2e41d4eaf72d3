#include <algorithm>

#include "grammar/json_pieces.h"

namespace llmux::grammar_internal {
namespace {

constexpr char32_t kMaxCode = 0x10FFFF;

int Utf8Length(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

void Encode(char32_t c, int n, uint8_t* out) {
  if (n == 1) {
    out[0] = static_cast<uint8_t>(c);
  } else if (n == 2) {
    out[0] = static_cast<uint8_t>(0xC0 | (c >> 6));
    out[1] = static_cast<uint8_t>(0x80 | (c & 0x3F));
  } else if (n == 3) {
    out[0] = static_cast<uint8_t>(0xE0 | (c >> 12));
    out[1] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | (c & 0x3F));
  } else {
    out[0] = static_cast<uint8_t>(0xF0 | (c >> 18));
    out[1] = static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
    out[3] = static_cast<uint8_t>(0x80 | (c & 0x3F));
  }
}

}  // namespace

CodeRanges Normalize(CodeRanges ranges) {
  CodeRanges split;
  for (auto [a, b] : ranges) {
    if (a > b) std::swap(a, b);
    b = std::min(b, kMaxCode);
    if (a > kMaxCode) continue;
    // Surrogates are not characters (and have no UTF-8 form).
    if (b < 0xD800 || a > 0xDFFF) {
      split.emplace_back(a, b);
    } else {
      if (a < 0xD800) split.emplace_back(a, 0xD7FF);
      if (b > 0xDFFF) split.emplace_back(0xE000, b);
    }
  }
  std::sort(split.begin(), split.end());
  CodeRanges out;
  for (const auto& r : split) {
    if (!out.empty() && r.first <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, r.second);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

CodeRanges Complement(const CodeRanges& ranges) {
  CodeRanges out;
  char32_t next = 0;
  for (const auto& [a, b] : ranges) {
    if (a > next) out.emplace_back(next, a - 1);
    next = b + 1;
  }
  if (next <= kMaxCode) out.emplace_back(next, kMaxCode);
  return Normalize(out);
}

ByteSeqs Utf8Sequences(const CodeRanges& ranges) {
  ByteSeqs out;
  std::vector<std::pair<char32_t, char32_t>> work(ranges.rbegin(), ranges.rend());
  while (!work.empty()) {
    auto [a, b] = work.back();
    work.pop_back();
    // Split at encoded-length boundaries.
    const int n = Utf8Length(a);
    if (Utf8Length(b) != n) {
      const char32_t end = n == 1 ? 0x7F : n == 2 ? 0x7FF : 0xFFFF;
      work.emplace_back(end + 1, b);
      work.emplace_back(a, end);
      continue;
    }
    // Split until every continuation position spans a full or aligned range.
    bool split = false;
    for (int i = 1; i < n && !split; ++i) {
      const char32_t m = (char32_t{1} << (6 * i)) - 1;
      if ((a & ~m) != (b & ~m)) {
        if ((a & m) != 0) {
          work.emplace_back((a | m) + 1, b);
          work.emplace_back(a, a | m);
          split = true;
        } else if ((b & m) != m) {
          work.emplace_back(b & ~m, b);
          work.emplace_back(a, (b & ~m) - 1);
          split = true;
        }
      }
    }
    if (split) continue;
    uint8_t ea[4], eb[4];
    Encode(a, n, ea);
    Encode(b, n, eb);
    std::vector<std::pair<uint8_t, uint8_t>> seq;
    for (int i = 0; i < n; ++i) seq.emplace_back(ea[i], eb[i]);
    out.push_back(std::move(seq));
  }
  return out;
}

}  // namespace llmux::grammar_internal
