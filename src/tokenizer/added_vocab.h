// Added tokens of tokenizer.json ("added_tokens"): matched in the text before normalization
// (normalized=false) or after it (normalized=true), leftmost-longest, with HF's lstrip /
// rstrip / single_word rules; matched spans bypass the BPE model.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llmux/status.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/regex.h"

namespace llmux::tokenizer_internal {

class Normalizer;

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool single_word = false;
};

// A span [start, end) of the split text: an added token (id >= 0) or plain text (id == -1).
struct Segment {
  size_t start;
  size_t end;
  int32_t id;
};

class AddedVocab {
 public:
  // `normalizer` (may be null) normalizes the content of normalized=true tokens.
  static StatusOr<std::unique_ptr<AddedVocab>> Build(std::vector<AddedToken> tokens,
                                                     const Normalizer* normalizer);

  // Splits `text` at matches of the tokens with normalized == `normalized_set`. When
  // `parse_special` is false, matches of special tokens are left as text.
  // Appends segments covering `text` in order (text segments are never empty).
  void Split(std::string_view text, bool normalized_set, bool parse_special,
             std::vector<Segment>& out) const;
  bool HasNormalized() const { return !matchers_[1].by_content.empty(); }

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(std::string_view content) const;
  int32_t max_id() const { return max_id_; }

 private:
  struct Matcher {
    std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> by_content;  // -> index
    std::vector<size_t> lengths;  // distinct content lengths, longest first
    std::bitset<256> first_bytes;
  };
  AddedVocab() = default;
  // The longest token starting at `pos` and its matched length, or {nullptr, 0}.
  std::pair<const AddedToken*, size_t> LongestAt(const Matcher& m, std::string_view text,
                                                 size_t pos) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> by_content_;
  Matcher matchers_[2];               // [0]: normalized=false (raw text), [1]: normalized=true
  std::unique_ptr<Regex> word_char_;  // \w, as HF's single_word test
  int32_t max_id_ = -1;
};

// Unicode White_Space (Rust's char::is_whitespace / regex \s).
bool IsUnicodeWhitespace(char32_t cp);

}  // namespace llmux::tokenizer_internal
