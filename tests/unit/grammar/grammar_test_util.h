// Helpers of the grammar tests: a byte-per-token vocabulary, whole-string acceptance, and the
// brute-force mask (every token tried on the matcher, then rolled back).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "llmux/grammar.h"

namespace llmux::grammar_test {

// 256 single-byte tokens, then `extra` multi-byte tokens, then EOS (the last id).
inline std::shared_ptr<const TokenVocabulary> ByteVocab(std::vector<std::string> extra = {}) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  for (auto& e : extra) tokens.push_back(std::move(e));
  tokens.emplace_back("");  // EOS
  const int32_t eos = static_cast<int32_t>(tokens.size()) - 1;
  return TokenVocabulary::FromBytes(std::move(tokens), {eos});
}

inline std::shared_ptr<const CompiledGrammar> MustCompile(const std::string& schema,
                                                          std::shared_ptr<const TokenVocabulary> v =
                                                              ByteVocab()) {
  GrammarSpec spec;
  spec.schema = schema;
  auto g = CompileGrammar(spec, std::move(v));
  EXPECT_TRUE(g.ok()) << schema << ": " << g.status().ToString();
  return g.ok() ? *g : nullptr;
}

// Whether `text` is a complete sentence of the grammar.
inline bool Accepts(const std::shared_ptr<const CompiledGrammar>& g, const std::string& text) {
  GrammarMatcher m(g);
  return m.AcceptBytes(text) && m.IsComplete();
}

// Whether `text` is a prefix of some sentence.
inline bool AcceptsPrefix(const std::shared_ptr<const CompiledGrammar>& g, const std::string& text) {
  GrammarMatcher m(g);
  return m.AcceptBytes(text);
}

inline std::vector<uint32_t> BruteForceMask(GrammarMatcher& m) {
  const TokenVocabulary& v = m.grammar().vocabulary();
  std::vector<uint32_t> mask(v.mask_words(), 0u);
  for (int32_t id = 0; id < v.size(); ++id) {
    if (m.AcceptToken(id)) {
      mask[id >> 5] |= 1u << (id & 31);
      m.Rollback(1);
    }
  }
  return mask;
}

inline std::vector<uint32_t> FastMask(const GrammarMatcher& m) {
  std::vector<uint32_t> mask(m.grammar().vocabulary().mask_words(), 0xdeadbeefu);
  m.FillNextTokenBitmask(mask);
  return mask;
}

inline std::string MaskDiff(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b,
                            const TokenVocabulary& v) {
  std::string out;
  for (int32_t id = 0; id < v.size(); ++id) {
    const bool x = (a[id >> 5] >> (id & 31)) & 1u, y = (b[id >> 5] >> (id & 31)) & 1u;
    if (x != y) out += " id " + std::to_string(id) + " '" + v.bytes(id) + "' fast=" + (x ? "1" : "0");
  }
  return out;
}

}  // namespace llmux::grammar_test
