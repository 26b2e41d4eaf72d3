#include <algorithm>
#include <numeric>

#include "llmux/grammar.h"
#include "llmux/tokenizer.h"

namespace llmux {

TokenVocabulary::TokenVocabulary(std::vector<std::string> tokens, std::vector<int32_t> eos_ids)
    : bytes_(std::move(tokens)), eos_ids_(std::move(eos_ids)) {
  for (size_t i = 0; i < bytes_.size(); ++i) {
    // NOTE: longer tokens are dropped from grammars (lcp is 16-bit); no real vocabulary has one.
    if (!bytes_[i].empty() && bytes_[i].size() < 65535) sorted_.push_back(static_cast<int32_t>(i));
  }
  std::sort(sorted_.begin(), sorted_.end(),
            [this](int32_t a, int32_t b) { return bytes_[a] < bytes_[b] || (bytes_[a] == bytes_[b] && a < b); });
  lcp_.assign(sorted_.size(), 0);
  for (size_t i = 1; i < sorted_.size(); ++i) {
    const std::string& a = bytes_[sorted_[i - 1]];
    const std::string& b = bytes_[sorted_[i]];
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    lcp_[i] = static_cast<uint16_t>(n);
  }
  offsets_.assign(1, 0);
  for (int32_t id : sorted_) {
    blob_ += bytes_[id];
    offsets_.push_back(static_cast<uint32_t>(blob_.size()));
  }
  first_byte_end_.assign(256, 0);
  for (size_t i = 0; i < sorted_.size(); ++i) {
    first_byte_end_[static_cast<uint8_t>(bytes_[sorted_[i]][0])] = static_cast<int32_t>(i) + 1;
  }
  for (int b = 1; b < 256; ++b) first_byte_end_[b] = std::max(first_byte_end_[b], first_byte_end_[b - 1]);
  // FNV-1a over sizes and bytes.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint8_t c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (const std::string& t : bytes_) {
    for (int s = 0; s < 32; s += 8) mix(static_cast<uint8_t>(t.size() >> s));
    for (char c : t) mix(static_cast<uint8_t>(c));
  }
  for (int32_t e : eos_ids_) {
    for (int s = 0; s < 32; s += 8) mix(static_cast<uint8_t>(static_cast<uint32_t>(e) >> s));
  }
  digest_ = h;
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::FromBytes(std::vector<std::string> tokens,
                                                                  std::vector<int32_t> eos_ids) {
  std::vector<int32_t> eos;
  for (int32_t e : eos_ids) {
    if (e >= 0 && e < static_cast<int32_t>(tokens.size())) eos.push_back(e);
  }
  for (int32_t e : eos) tokens[e].clear();  // EOS is allowed by completeness, never by bytes
  return std::shared_ptr<const TokenVocabulary>(new TokenVocabulary(std::move(tokens), std::move(eos)));
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::FromTokenizer(const Tokenizer& tokenizer,
                                                                      int32_t vocab_size,
                                                                      std::vector<int32_t> eos_ids) {
  std::vector<std::string> tokens(std::max(0, vocab_size));
  const int32_t n = std::min(vocab_size, tokenizer.vocab_size());
  for (int32_t id = 0; id < n; ++id) tokens[id] = tokenizer.TokenBytes(id);
  return FromBytes(std::move(tokens), std::move(eos_ids));
}

}  // namespace llmux
