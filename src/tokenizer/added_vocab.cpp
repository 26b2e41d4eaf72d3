#include "tokenizer/added_vocab.h"

#include <algorithm>

#include "tokenizer/normalizer.h"
#include "tokenizer/utf8.h"

namespace llmux::tokenizer_internal {

bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

namespace {

// Start of the run of whitespace that ends `s` (s.size() when `s` ends otherwise).
size_t TrailingSpaceStart(std::string_view s) {
  size_t start = s.size();
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t at = pos;
    if (!IsUnicodeWhitespace(NextCodepoint(s, pos))) {
      start = s.size();
    } else if (start == s.size()) {
      start = at;
    }
  }
  return start;
}

// Length of the run of whitespace that starts `s`.
size_t LeadingSpaceLen(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t at = pos;
    if (!IsUnicodeWhitespace(NextCodepoint(s, pos))) return at;
  }
  return s.size();
}

}  // namespace

StatusOr<std::unique_ptr<AddedVocab>> AddedVocab::Build(std::vector<AddedToken> tokens,
                                                        const Normalizer* normalizer) {
  std::unique_ptr<AddedVocab> v(new AddedVocab());
  LLMUX_ASSIGN_OR_RETURN(v->word_char_, Regex::Compile(R"(\w)"));
  v->tokens_ = std::move(tokens);
  for (size_t i = 0; i < v->tokens_.size(); ++i) {
    const AddedToken& t = v->tokens_[i];
    if (t.content.empty()) return DataLoss("added token " + std::to_string(t.id) + " is empty");
    v->by_id_[t.id] = i;
    v->by_content_[t.content] = i;
    v->max_id_ = std::max(v->max_id_, t.id);
    std::string key = t.content;
    Matcher& m = v->matchers_[t.normalized ? 1 : 0];
    if (t.normalized && normalizer) normalizer->Normalize(key);
    if (key.empty()) continue;
    // NOTE: a later token with the same content replaces the earlier one, as HF's trie does.
    m.by_content[key] = i;
    m.first_bytes.set(static_cast<unsigned char>(key[0]));
    if (std::find(m.lengths.begin(), m.lengths.end(), key.size()) == m.lengths.end()) {
      m.lengths.push_back(key.size());
    }
  }
  for (Matcher& m : v->matchers_) std::sort(m.lengths.rbegin(), m.lengths.rend());
  return v;
}

const AddedToken* AddedVocab::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::FindByContent(std::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::pair<const AddedToken*, size_t> AddedVocab::LongestAt(const Matcher& m, std::string_view text,
                                                           size_t pos) const {
  if (!m.first_bytes.test(static_cast<unsigned char>(text[pos]))) return {nullptr, 0};
  for (size_t len : m.lengths) {
    if (pos + len > text.size()) continue;
    auto it = m.by_content.find(text.substr(pos, len));
    if (it != m.by_content.end()) return {&tokens_[it->second], len};
  }
  return {nullptr, 0};
}

void AddedVocab::Split(std::string_view text, bool normalized_set, bool parse_special,
                       std::vector<Segment>& out) const {
  const Matcher& m = matchers_[normalized_set ? 1 : 0];
  size_t start_offset = 0;  // end of the previous token match
  size_t pos = 0;
  while (!m.by_content.empty() && pos < text.size()) {
    const auto [found, len] = LongestAt(m, text, pos);
    if (found == nullptr) {
      ++pos;
      continue;
    }
    const AddedToken& tok = *found;
    size_t start = pos, stop = pos + len;
    pos = stop;  // matches never overlap, as with HF's leftmost-longest automaton
    if (!parse_special && tok.special) continue;
    if (tok.single_word) {
      auto is_word = [&](std::string_view ch) { return !word_char_->FindAll(ch).empty(); };
      bool start_space = true, stop_space = true;
      if (start > 0) {
        size_t b = start - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        start_space = !is_word(text.substr(b, start - b));
      }
      if (stop < text.size()) {
        stop_space =
            !is_word(text.substr(stop, Utf8CharLen(static_cast<unsigned char>(text[stop]))));
      }
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) start = std::max(TrailingSpaceStart(text.substr(0, start)), start_offset);
    if (tok.rstrip) {
      stop += LeadingSpaceLen(text.substr(stop));
      pos = stop;
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace llmux::tokenizer_internal
