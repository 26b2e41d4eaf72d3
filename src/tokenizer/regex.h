// A compiled PCRE2 pattern in UTF + UCP mode (so \p{L}, \p{N}, \s follow Unicode), used by
// the Split pre-tokenizer and regex Replace normalizers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmux/status.h"

namespace llmux::tokenizer_internal {

class Regex {
 public:
  // InvalidArgument with PCRE2's message when `pattern` does not compile.
  static StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [start, end) of the successive non-overlapping leftmost matches in valid
  // UTF-8 `text`; empty matches are skipped. Thread-safe.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  void* code_;  // pcre2_code_8*, owned
};

}  // namespace llmux::tokenizer_internal
