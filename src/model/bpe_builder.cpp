#include "model/bpe_builder.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "llmux/status.h"

namespace llmux {
namespace {

using Word = std::vector<int>;  // token ids

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {  // every code point used here is below 0x800
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order.
uint32_t ByteCodePoint(unsigned char b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  if (printable) return b;
  uint32_t n = 0;
  for (int x = 0; x < b; ++x) {
    const bool p = (x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || x >= 0xae;
    if (!p) ++n;
  }
  return 256 + n;
}

// GPT-2's byte order for ids 0..255: the printable bytes first, then the rest.
std::vector<unsigned char> ByteOrder() {
  std::vector<unsigned char> order;
  for (int b = 0; b < 256; ++b) {
    if (ByteCodePoint(static_cast<unsigned char>(b)) == static_cast<uint32_t>(b)) {
      order.push_back(static_cast<unsigned char>(b));
    }
  }
  for (int b = 0; b < 256; ++b) {
    if (ByteCodePoint(static_cast<unsigned char>(b)) != static_cast<uint32_t>(b)) {
      order.push_back(static_cast<unsigned char>(b));
    }
  }
  return order;
}

enum class CharClass { kLetter, kDigit, kSpace, kOther };

CharClass Classify(unsigned char c) {
  if (std::isalpha(c)) return CharClass::kLetter;
  if (std::isdigit(c)) return CharClass::kDigit;
  if (std::isspace(c)) return CharClass::kSpace;
  return CharClass::kOther;
}

// Splits like GPT-2's pre-tokenizer on ASCII text: an optional leading space followed by a
// run of letters, digits or punctuation; other whitespace runs stand alone.
std::vector<std::string> PreTokenize(std::string_view text) {
  std::vector<std::string> pieces;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    if (text[i] == ' ' && i + 1 < text.size() &&
        Classify(static_cast<unsigned char>(text[i + 1])) != CharClass::kSpace) {
      ++i;
    }
    const CharClass cls = Classify(static_cast<unsigned char>(text[i]));
    while (i < text.size() && Classify(static_cast<unsigned char>(text[i])) == cls) ++i;
    pieces.emplace_back(text.substr(start, i - start));
  }
  return pieces;
}

}  // namespace

std::string ByteLevelSymbol(unsigned char b) {
  std::string s;
  AppendUtf8(s, ByteCodePoint(b));
  return s;
}

ByteLevelBpe BuildByteLevelBpe(int num_tokens) {
  LLMUX_CHECK(num_tokens >= 256) << "a byte-level vocabulary needs 256 tokens, got " << num_tokens;
  ByteLevelBpe bpe;
  std::vector<int> byte_id(256);
  for (unsigned char b : ByteOrder()) {
    byte_id[b] = static_cast<int>(bpe.vocab.size());
    bpe.vocab.push_back(ByteLevelSymbol(b));
  }
  std::unordered_set<std::string> known(bpe.vocab.begin(), bpe.vocab.end());

  // Unique pre-tokenized words with their counts.
  std::map<std::string, int> word_count;
  for (const std::string& p : PreTokenize(BpeTrainingText())) ++word_count[p];
  std::vector<Word> words;
  std::vector<int> counts;
  for (const auto& [w, n] : word_count) {
    Word ids;
    for (unsigned char c : w) ids.push_back(byte_id[c]);
    words.push_back(std::move(ids));
    counts.push_back(n);
  }

  auto add_merge = [&](int left, int right) {
    const std::string merged = bpe.vocab[left] + bpe.vocab[right];
    bpe.merges.emplace_back(bpe.vocab[left], bpe.vocab[right]);
    bpe.vocab.push_back(merged);
    known.insert(merged);
    return static_cast<int>(bpe.vocab.size()) - 1;
  };

  // Training: recount pairs every round (the text is small), merge the most frequent.
  while (static_cast<int>(bpe.vocab.size()) < num_tokens) {
    std::map<std::pair<int, int>, int> pair_count;
    for (size_t w = 0; w < words.size(); ++w) {
      for (size_t k = 0; k + 1 < words[w].size(); ++k) {
        pair_count[{words[w][k], words[w][k + 1]}] += counts[w];
      }
    }
    std::pair<int, int> best{-1, -1};
    int best_count = 1;  // a pair must occur at least twice
    for (const auto& [pair, n] : pair_count) {
      if (n > best_count && !known.contains(bpe.vocab[pair.first] + bpe.vocab[pair.second])) {
        best = pair;
        best_count = n;
      }
    }
    if (best.first < 0) break;
    const int merged = add_merge(best.first, best.second);
    for (Word& w : words) {
      Word out;
      for (size_t k = 0; k < w.size(); ++k) {
        if (k + 1 < w.size() && w[k] == best.first && w[k + 1] == best.second) {
          out.push_back(merged);
          ++k;
        } else {
          out.push_back(w[k]);
        }
      }
      w = std::move(out);
    }
  }

  // Construction: extend tokens, in id order, by one lower-case letter each.
  for (size_t t = 0; static_cast<int>(bpe.vocab.size()) < num_tokens; ++t) {
    for (char c = 'a'; c <= 'z' && static_cast<int>(bpe.vocab.size()) < num_tokens; ++c) {
      const int letter = byte_id[static_cast<unsigned char>(c)];
      if (!known.contains(bpe.vocab[t] + bpe.vocab[letter])) {
        add_merge(static_cast<int>(t), letter);
      }
    }
  }
  return bpe;
}

std::string TokenizerJson(const ByteLevelBpe& bpe, const std::vector<SpecialToken>& specials,
                          const std::string& bos_content) {
  using nlohmann::ordered_json;
  ordered_json added = ordered_json::array();
  int bos_id = -1;
  for (const SpecialToken& s : specials) {
    added.push_back({{"id", s.id},
                     {"content", s.content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
    if (s.content == bos_content) bos_id = s.id;
  }
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < bpe.vocab.size(); ++i) vocab[bpe.vocab[i]] = i;
  ordered_json merges = ordered_json::array();
  for (const auto& [l, r] : bpe.merges) merges.push_back(l + " " + r);

  ordered_json bos_piece = {{"SpecialToken", {{"id", bos_content}, {"type_id", 0}}}};
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {bos_piece,
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", bos_content}, {"type_id", 1}}}},
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       {{bos_content, {{"id", bos_content}, {"ids", {bos_id}}, {"tokens", {bos_content}}}}}}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}};
  return j.dump(1);
}

}  // namespace llmux
