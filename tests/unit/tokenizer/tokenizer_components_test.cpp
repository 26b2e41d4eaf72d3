// Pre-tokenizer and decoder components that the bundled real files do not exercise:
// Split behaviors with a literal pattern, and Strip after Fuse (streaming hold-back).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.h"
#include "tokenizer_test_util.h"

namespace llmux {
namespace {

using testing::MustLoad;
using testing::Streamed;
using Ids = std::vector<int32_t>;

// Vocab: a=0 -=1 b=2 a-=3 -b=4 ▁=5; merges "a -" (rank 0) and "- b" (rank 1).
std::string SplitJson(const nlohmann::json& pre_tokenizer, const nlohmann::json& decoder) {
  nlohmann::json j = {{"pre_tokenizer", pre_tokenizer},
                      {"decoder", decoder},
                      {"model",
                       {{"type", "BPE"},
                        {"vocab", {{"a", 0}, {"-", 1}, {"b", 2}, {"a-", 3}, {"-b", 4}, {"▁", 5}}},
                        {"merges", nlohmann::json::array({"a -", "- b"})}}}};
  return j.dump();
}

nlohmann::json SplitOn(const char* behavior, bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{"String", "-"}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST(SplitPreTokenizerTest, Behaviors) {
  const nlohmann::json null;
  struct Row {
    nlohmann::json pre;
    Ids ids;
  };
  const Row rows[] = {
      {null, {3, 2}},                              // one word: "a -" merges first
      {SplitOn("Isolated"), {0, 1, 2}},            // a | - | b
      {SplitOn("Removed"), {0, 2}},                // a | b
      {SplitOn("MergedWithPrevious"), {3, 2}},     // a- | b
      {SplitOn("MergedWithNext"), {0, 4}},         // a | -b
      {SplitOn("Contiguous"), {0, 1, 2}},          // a | - | b
      {SplitOn("Removed", /*invert=*/true), {1}},  // the matches are kept: -
      // Inverted, "a" and "b" are the delimiters: "a" joins the next piece, "b" has none.
      {SplitOn("MergedWithNext", /*invert=*/true), {3, 2}},  // a- | b
  };
  for (size_t i = 0; i < std::size(rows); ++i) {
    auto tok = MustLoad(SplitJson(rows[i].pre, null), "");
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->Encode("a-b", false), rows[i].ids) << "row " << i;
  }
  // Contiguous merges adjacent matches into one piece: a | -- | b, then "- -" has no merge.
  auto tok = MustLoad(SplitJson(SplitOn("Contiguous"), null), "");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("a--b", false), (Ids{0, 1, 1, 2}));
}

TEST(DecoderTest, StripAfterFuseHoldsBackTrailingContent) {
  const nlohmann::json decoder = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
        {{"type", "Fuse"}},
        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 2}}}}};
  auto tok = MustLoad(SplitJson(nullptr, decoder), "");
  ASSERT_NE(tok, nullptr);
  // "▁▁a▁b▁▁▁" -> "  a b   " -> one leading and two trailing spaces stripped.
  const Ids ids = {5, 5, 0, 5, 2, 5, 5, 5};
  EXPECT_EQ(tok->Decode(ids, false), " a b ");
  IncrementalDetokenizer detok(*tok, false);
  std::string out;
  for (int32_t id : ids) out += detok.Push(id);
  EXPECT_EQ(out, " a b");  // the trailing spaces wait: a later piece could follow them
  EXPECT_EQ(out + detok.Flush(), " a b ");
  EXPECT_EQ(Streamed(*tok, Ids{5, 0, 5, 5, 2}, false), "a  b");
  EXPECT_EQ(tok->Decode(Ids{5, 0, 5, 5, 2}, false), "a  b");
}

}  // namespace
}  // namespace llmux

namespace llmux::tokenizer_internal {
namespace {

TEST(UnicodeNormalizerTest, NfcComposesAndLowercaseFollowsUnicode) {
#ifndef LLMUX_HAVE_ICU
  GTEST_SKIP() << "SKIPPED: built without ICU";
#endif
  auto nfc = ParseNormalizer(nlohmann::json::parse(R"({"type": "NFC"})"));
  ASSERT_TRUE(nfc.ok()) << nfc.status().ToString();
  std::string text = "Cafe\xCC\x81 A\xCC\x8A";  // "Café Å" with combining accents
  (*nfc)->Normalize(text);
  EXPECT_EQ(text, "Caf\xC3\xA9 \xC3\x85");        // precomposed é, Å
  auto nfkd = ParseNormalizer(nlohmann::json::parse(R"({"type": "NFKD"})"));
  ASSERT_TRUE(nfkd.ok());
  std::string lig = "\xEF\xAC\x81";  // U+FB01 "ﬁ" ligature
  (*nfkd)->Normalize(lig);
  EXPECT_EQ(lig, "fi");
  auto lower = ParseNormalizer(nlohmann::json::parse(R"({"type": "Lowercase"})"));
  ASSERT_TRUE(lower.ok());
  std::string mixed = "HeLLo \xC3\x89T\xC3\x89 \xCE\xA3";  // "HeLLo ÉTÉ Σ"
  (*lower)->Normalize(mixed);
  EXPECT_EQ(mixed, "hello \xC3\xA9t\xC3\xA9 \xCF\x83");
  EXPECT_FALSE(ParseNormalizer(nlohmann::json::parse(R"({"type": "BertNormalizer"})")).ok());
}

}  // namespace
}  // namespace llmux::tokenizer_internal
