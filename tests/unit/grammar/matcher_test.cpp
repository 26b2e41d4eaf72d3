// GrammarMatcher: masks equal brute force (every token tried) over a synthetic vocabulary and
// the real stories260K vocabulary, rollback, EOS only when complete, termination.
#include <gtest/gtest.h>

#include <random>

#include "common/test_data.h"
#include "grammar_test_util.h"
#include "llmux/tokenizer.h"

namespace llmux {
namespace {

using grammar_test::BruteForceMask;
using grammar_test::ByteVocab;
using grammar_test::FastMask;
using grammar_test::MaskDiff;
using grammar_test::MustCompile;

const char* kNested = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":12},
  "age":{"type":"integer","minimum":0,"maximum":150},
  "tags":{"type":"array","items":{"enum":["a","bb","ccc"]},"minItems":1,"maxItems":3},
  "pet":{"anyOf":[{"type":"null"},{"type":"object","properties":{"kind":{"type":"string"}},"required":["kind"]}]},
  "score":{"type":"number"}},
  "required":["name","age","tags"]})";

// Multi-byte tokens crossing every kind of boundary: quotes + separators, key fragments,
// digits, UTF-8 pieces (a lone lead byte, a continuation byte), escapes.
std::vector<std::string> ExtraTokens() {
  return {"{\"",  "\":",   "\",\"", "\"}",   "\"]",  "\"name", "name\":\"", "age\":", "\"age",
          "12",   "150",   "151",   "1.5",   "e+",   "true",  "null",       "nul",    "],\"",
          "\":[\"", "\\n", "\\u00", "\xc3",  "\xa9", "é",     "ab",         "cc",     "ccc\"",
          "\"bb", ", \"",  ": ",    "}}",    "\"kind\":\"", "dog\"}", "  ", "x\"}", "\"pet\":null}"};
}

void ExpectMasksMatchAlongPath(const std::shared_ptr<const CompiledGrammar>& g,
                               const std::vector<int32_t>& path) {
  GrammarMatcher m(g);
  for (size_t step = 0; step <= path.size(); ++step) {
    const auto fast = FastMask(m);
    const auto brute = BruteForceMask(m);
    ASSERT_EQ(fast, brute) << "at step " << step << ":" << MaskDiff(fast, brute, g->vocabulary());
    if (step == path.size()) break;
    ASSERT_TRUE(m.AcceptToken(path[step])) << "at step " << step;
  }
}

// A random walk that samples uniformly among the allowed tokens (fixed seed).
std::vector<int32_t> RandomWalk(const std::shared_ptr<const CompiledGrammar>& g, uint32_t seed,
                                int max_steps) {
  std::mt19937 rng(seed);
  GrammarMatcher m(g);
  std::vector<int32_t> path;
  const TokenVocabulary& v = g->vocabulary();
  for (int i = 0; i < max_steps && !m.IsTerminated(); ++i) {
    const auto mask = FastMask(m);
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < v.size(); ++id) {
      if ((mask[id >> 5] >> (id & 31)) & 1u) allowed.push_back(id);
    }
    if (allowed.empty()) break;
    const int32_t t = allowed[rng() % allowed.size()];
    if (std::find(v.eos_ids().begin(), v.eos_ids().end(), t) != v.eos_ids().end()) break;
    EXPECT_TRUE(m.AcceptToken(t));
    path.push_back(t);
  }
  return path;
}

TEST(GrammarMatcherTest, CharByCharAcceptAndReject) {
  auto g = MustCompile(kNested);
  const std::string doc = R"({"name":"Al","age":42,"tags":["bb","a"],"pet":{"kind":"cat"},"score":-1.5e3})";
  GrammarMatcher m(g);
  for (size_t i = 0; i < doc.size(); ++i) {
    ASSERT_FALSE(m.IsComplete()) << "complete early at " << i;
    ASSERT_TRUE(m.AcceptBytes(doc.substr(i, 1))) << "rejected byte " << i << " '" << doc[i] << "'";
  }
  EXPECT_TRUE(m.IsComplete());
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_FALSE(m.AcceptBytes(" "));

  GrammarMatcher r(g);
  EXPECT_TRUE(r.AcceptBytes(R"({"name":"Al","age":1)"));
  EXPECT_TRUE(r.AcceptBytes("5"));
  EXPECT_TRUE(r.AcceptBytes("0"));   // 150
  EXPECT_FALSE(r.AcceptBytes("0"));  // 1500 > maximum
  EXPECT_FALSE(r.AcceptBytes("x"));
  EXPECT_EQ(r.num_accepted(), 3);  // rejected calls change nothing
}

TEST(GrammarMatcherTest, MasksEqualBruteForceOnSyntheticVocab) {
  auto g = MustCompile(kNested, ByteVocab(ExtraTokens()));
  const std::string doc = R"({"name":"Al\n","age":150,"tags":["ccc"],"pet":null,"score":0})";
  GrammarMatcher m(g);
  std::vector<int32_t> path;
  for (char c : doc) path.push_back(static_cast<unsigned char>(c));  // byte tokens
  ExpectMasksMatchAlongPath(g, path);
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    ExpectMasksMatchAlongPath(g, RandomWalk(g, seed, 60));
  }
}

TEST(GrammarMatcherTest, EosOnlyWhenComplete) {
  auto g = MustCompile(R"({"type":"integer"})", ByteVocab({"12"}));
  const int32_t eos = g->vocabulary().eos_ids()[0];
  GrammarMatcher m(g);
  auto bit = [&](int32_t id) { return (FastMask(m)[id >> 5] >> (id & 31)) & 1u; };
  EXPECT_EQ(bit(eos), 0u);
  EXPECT_FALSE(m.AcceptToken(eos));
  ASSERT_TRUE(m.AcceptToken('7'));
  EXPECT_EQ(bit(eos), 1u);       // "7" is complete
  EXPECT_FALSE(m.IsTerminated());  // but more digits may follow
  EXPECT_EQ(bit('3'), 1u);
  ASSERT_TRUE(m.AcceptToken(eos));
  std::vector<uint32_t> only_eos(g->vocabulary().mask_words(), 0u);
  only_eos[eos >> 5] |= 1u << (eos & 31);
  EXPECT_EQ(FastMask(m), only_eos);  // after EOS: nothing else
}

TEST(GrammarMatcherTest, Rollback) {
  auto g = MustCompile(kNested, ByteVocab(ExtraTokens()));
  const auto path = RandomWalk(g, 42, 40);
  ASSERT_GE(path.size(), 10u);
  GrammarMatcher m(g);
  std::vector<std::vector<uint32_t>> masks;
  for (int32_t t : path) {
    masks.push_back(FastMask(m));
    ASSERT_TRUE(m.AcceptToken(t));
  }
  // Undo in chunks and check that each restored state gives the mask recorded there.
  int32_t at = static_cast<int32_t>(path.size());
  for (int32_t chunk : {1, 3, 2, 4}) {
    m.Rollback(chunk);
    at -= chunk;
    EXPECT_EQ(m.num_accepted(), at);
    EXPECT_EQ(FastMask(m), masks[at]) << "after rolling back to " << at;
  }
  // And forward again along the same path.
  for (size_t i = static_cast<size_t>(at); i < path.size(); ++i) ASSERT_TRUE(m.AcceptToken(path[i]));
  EXPECT_EQ(m.num_accepted(), static_cast<int32_t>(path.size()));
}

TEST(GrammarMatcherTest, MasksEqualBruteForceOnStories260KVocab) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  auto tok = Tokenizer::FromModelDir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // The vocabulary's bytes: "▁" is a space, <0xNN> a raw byte.
  const auto space = (*tok)->TokenToId("\xe2\x96\x81" "a");
  if (space) {
    EXPECT_EQ((*tok)->TokenBytes(*space), " a");
  }
  const auto brace = (*tok)->TokenToId("<0x7B>");
  ASSERT_TRUE(brace.has_value());
  EXPECT_EQ((*tok)->TokenBytes(*brace), "{");
  EXPECT_EQ((*tok)->TokenBytes(2), "");  // </s> is special
  auto vocab = TokenVocabulary::FromTokenizer(**tok, (*tok)->vocab_size(), {2});
  for (const char* schema : {kNested, R"({"type":"array","items":{"type":"string","pattern":"^[a-z ]+$"}})",
                             R"({"type":"object"})"}) {
    auto g = MustCompile(schema, vocab);
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      ExpectMasksMatchAlongPath(g, RandomWalk(g, seed, 50));
    }
  }
}

}  // namespace
}  // namespace llmux

namespace llmux {
namespace {

// Byte-level BPE (GPT-2 alphabet: "Ġ" is a space, partial UTF-8 pieces) on the 128k Llama-3
// vocabulary: masks still equal brute force.
TEST(GrammarMatcherTest, MasksEqualBruteForceOnLlama3Vocab) {
  LLMUX_REQUIRE_DATA(json, testing::FetchedDataDir() / "llama3/tokenizer.json");
  auto tok = Tokenizer::FromFile(json);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const auto brace = (*tok)->TokenToId("\xc4\xa0{");  // "Ġ{"
  ASSERT_TRUE(brace.has_value());
  EXPECT_EQ((*tok)->TokenBytes(*brace), " {");
  auto vocab = TokenVocabulary::FromTokenizer(**tok, (*tok)->vocab_size(), {128001, 128009});
  auto g = MustCompile(
      R"({"type":"object","properties":{"city":{"type":"string"},"n":{"type":"integer","minimum":-5,"maximum":500},
          "ok":{"type":"boolean"},"tags":{"type":"array","items":{"enum":["x","yy"]}}},"required":["city","n"]})",
      vocab);
  ExpectMasksMatchAlongPath(g, RandomWalk(g, 3, 12));
  const std::vector<int32_t> doc = (*tok)->Encode(R"({"city":"Zürich \"Z\"","n":-5,"tags":["yy","x"]})", false, false);
  ExpectMasksMatchAlongPath(g, doc);
}

}  // namespace
}  // namespace llmux
