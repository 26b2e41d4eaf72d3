// Llama-2 (llama-spm) and Llama-3 tokenizers beyond the llama.cpp vectors: extra cases whose
// expected ids and texts come from @huggingface/tokenizers 0.2.0 run on the same files,
// special tokens, clean_up_tokenization_spaces, and the streaming property on random ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "common/test_data.h"
#include "tokenizer_test_util.h"

namespace llmux {
namespace {

using testing::Streamed;
using Ids = std::vector<int32_t>;

struct Case {
  const char* text;
  Ids ids;
};

std::unique_ptr<Tokenizer> LoadDir(const std::filesystem::path& json) {
  auto tok = Tokenizer::FromFile(json, json.parent_path() / "tokenizer_config.json");
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

TEST(Llama3TokenizerTest, OracleCases) {
  LLMUX_REQUIRE_DATA(json, testing::FetchedDataDir() / "llama3/tokenizer.json");
  auto tok = LoadDir(json);
  ASSERT_NE(tok, nullptr);
  const Case cases[] = {
      {"I'M DON'T you'll WE'VE it's",
       {40, 28703, 45373, 17773, 499, 3358, 20255, 6, 4592, 433, 596}},
      {"1234567 12 3.14159 1,000,000",
       {4513, 10961, 22, 220, 717, 220, 18, 13, 9335, 2946, 220, 16, 11, 931, 11, 931}},
      {"a\r\nb\r\n\r\n c", {64, 319, 65, 881, 272}},
      {"tabs\t\tand  spaces   ", {32093, 197, 53577, 220, 12908, 262}},
      {"<|begin_of_text|>Hello<|eot_id|>", {128000, 9906, 128009}},
      {"<s>Hello</s> world <s>", {45147, 80597, 524, 82, 29, 1917, 366, 82, 29}},
      {"こんにちは世界、元気ですか？", {90115, 102616, 5486, 24186, 95221, 112130, 11571}},
      {"    def f(x):\n        return x  # comment\n",
       {262, 711, 282, 2120, 997, 286, 471, 865, 220, 674, 4068, 198}},
      {"x=1;y=2;z=x+y//3**4", {87, 28, 16, 71963, 28, 17, 97812, 26459, 44110, 322, 18, 334, 19}},
      {"\u00a0nbsp\u2003em\u3000ideo", {4194, 5792, 116503, 336, 23249, 1926}},
      {"a\u0085b", {64, 116360, 65}},
      {"1\u06602", {16, 109321, 17}},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", {70540, 70540, 70540, 70540, 70540}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(tok->Encode(c.text, false), c.ids) << c.text;
    EXPECT_EQ(tok->Decode(c.ids, false), c.text);
  }
}

TEST(Llama3TokenizerTest, SpecialTokensAndConfig) {
  LLMUX_REQUIRE_DATA(json, testing::FetchedDataDir() / "llama3/tokenizer.json");
  auto tok = LoadDir(json);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(tok->eos_token(), "<|end_of_text|>");
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_id(), 128001);
  EXPECT_EQ(tok->TokenToId("<|eot_id|>"), 128009);
  EXPECT_EQ(tok->IdToPiece(128009), "<|eot_id|>");
  EXPECT_TRUE(tok->IsSpecial(128009));
  EXPECT_FALSE(tok->IsSpecial(9906));
  // NOTE: this release of the file has a ByteLevel post-processor and its config has no
  // add_bos_token, so HF adds no BOS (the chat template writes it).
  EXPECT_FALSE(tok->adds_bos());
  EXPECT_EQ(tok->Encode("Hello", true), (Ids{9906}));
  // parse_special=false: the special token text is ordinary text.
  const Ids plain = tok->Encode("<|eot_id|>", false, /*parse_special=*/false);
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 128009), plain.end());
  EXPECT_EQ(tok->Decode(plain, false), "<|eot_id|>");
  EXPECT_EQ(tok->Decode(Ids{128000, 9906, 128009}, true), "Hello");
}

TEST(Llama3TokenizerTest, DecodeAppliesCleanUpTokenizationSpaces) {
  LLMUX_REQUIRE_DATA(json, testing::FetchedDataDir() / "llama3/tokenizer.json");
  auto tok = LoadDir(json);
  ASSERT_NE(tok, nullptr);
  const Ids ids = {9906, 11,  1917, 758, 220,  3639, 364,  82, 709,
                   949,  358, 364,  76,  7060, 1174, 9523, 662};
  EXPECT_EQ(tok->Encode("Hello, world !  What 's up ? I 'm fine , thanks .", false), ids);
  const std::string expected = "Hello, world!  What's up? I'm fine, thanks.";
  EXPECT_EQ(tok->Decode(ids, false), expected);
  EXPECT_EQ(Streamed(*tok, ids, false), expected);
  // Without the config the same file decodes verbatim.
  auto raw = Tokenizer::FromFile(json);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ((*raw)->Decode(ids, false), "Hello, world !  What 's up ? I 'm fine , thanks .");
}

// Random streams over pieces that exercise clean-up patterns (" '", " n't", " .", ...) and
// split multi-byte characters: streaming must equal one-shot decoding.
TEST(Llama3TokenizerTest, StreamingEqualsDecodeOnAdversarialIds) {
  LLMUX_REQUIRE_DATA(json, testing::FetchedDataDir() / "llama3/tokenizer.json");
  auto tok = LoadDir(json);
  ASSERT_NE(tok, nullptr);
  Ids alphabet;
  for (const char* piece :
       {"Ġ",  "'", "Ġ'", "s",  "m", "n",    "'t", "Ġn", ".", "Ġ.", "Ġ,",
        "Ġ?", "!", "ve", "re", "a", "Ġthe", "ð",  "Ł",  "¦", "Ļ",  "<|eot_id|>"}) {
    auto id = tok->TokenToId(piece);
    ASSERT_TRUE(id.has_value()) << piece;
    alphabet.push_back(*id);
  }
  std::mt19937 rng(1234);
  for (int round = 0; round < 400; ++round) {
    Ids ids(1 + rng() % 24);
    for (auto& id : ids) id = alphabet[rng() % alphabet.size()];
    for (bool skip : {false, true}) {
      ASSERT_EQ(Streamed(*tok, ids, skip), tok->Decode(ids, skip)) << "round " << round;
    }
  }
  for (int round = 0; round < 200; ++round) {
    Ids ids(1 + rng() % 32);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % tok->vocab_size());
    ASSERT_EQ(Streamed(*tok, ids, false), tok->Decode(ids, false)) << "round " << round;
  }
}

TEST(Llama2TokenizerTest, OracleCases) {
  LLMUX_REQUIRE_DATA(json, testing::SharedDataDir() / "tokenizers/llama-spm/tokenizer.json");
  auto tok = LoadDir(json);
  ASSERT_NE(tok, nullptr);
  const Case cases[] = {
      {"I'M DON'T you'll WE'VE it's",
       {306, 29915, 29924, 360, 1164, 29915, 29911, 366, 29915, 645, 399, 29923, 29915, 12064, 372,
        29915, 29879}},
      {"a\r\nb\r\n\r\n c", {263, 30004, 13, 29890, 30004, 13, 30004, 13, 274}},
      {"line1\n\n\nline2  \n  x", {1196, 29896, 13, 13, 13, 1220, 29906, 259, 13, 29871, 921}},
      {"<s>Hello</s> world <s>", {1, 15043, 2, 29871, 3186, 29871, 1}},
      {"🦙🦙 llama", {29871, 243, 162, 169, 156, 243, 162, 169, 156, 11148, 3304}},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       {263, 27137, 27137, 27137, 27137, 27137, 27137, 27137, 27137, 27137, 7340, 29874}},
      {"e\u0301te\u0301 cafe\u0301", {321, 30103, 371, 30103, 5777, 1725, 30103}},
      {"1\u06602", {29871, 29896, 220, 163, 29906}},
      {"\n", {29871, 13}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(tok->Encode(c.text, false), c.ids) << c.text;
  }
  // The decoder strips the one space the normalizer prepended; special tokens stay unless
  // skipped, and the piece after <s> keeps its space.
  EXPECT_EQ(tok->Decode(Ids{1, 15043, 2, 29871, 3186}, false), "<s> Hello</s>  world");
  EXPECT_EQ(tok->Decode(Ids{1, 15043, 2, 29871, 3186}, true), "Hello  world");
  EXPECT_EQ(tok->Encode("Hello", true), (Ids{1, 15043}));
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->IdToPiece(13), "<0x0A>");
}

TEST(Llama2TokenizerTest, ByteFallbackRunsStreamWholeAndInvalidRunsBecomeReplacements) {
  LLMUX_REQUIRE_DATA(json, testing::SharedDataDir() / "tokenizers/llama-spm/tokenizer.json");
  auto tok = LoadDir(json);
  ASSERT_NE(tok, nullptr);
  const Ids ids = tok->Encode("🦙!", false);
  ASSERT_EQ(ids, (Ids{29871, 243, 162, 169, 156, 29991}));
  IncrementalDetokenizer detok(*tok, false);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(detok.Push(id));
  EXPECT_EQ(out, (std::vector<std::string>{"", "", "", "", "", "🦙!"}));
  EXPECT_EQ(detok.Flush(), "");
  // A run ending at the end of the stream is released by Flush.
  IncrementalDetokenizer tail(*tok, false);
  for (int32_t id : Ids{29871, 243, 162, 169}) EXPECT_EQ(tail.Push(id), "");
  EXPECT_EQ(tail.Push(156), "");
  EXPECT_EQ(tail.Flush(), "🦙");
  // HF ByteFallback: a run that is not valid UTF-8 gives one U+FFFD per byte, even for the
  // bytes that would be valid alone (<0x41> is 'A').
  const Ids bad = {243, 162, 68, 15043};  // <0xF0><0x9F><0x41> ▁Hello
  EXPECT_EQ(tok->Decode(bad, false), "\uFFFD\uFFFD\uFFFD Hello");
  EXPECT_EQ(Streamed(*tok, bad, false), "\uFFFD\uFFFD\uFFFD Hello");
  std::mt19937 rng(99);
  for (int round = 0; round < 300; ++round) {
    Ids r(1 + rng() % 24);
    for (auto& id : r)
      id = rng() % 2 ? static_cast<int32_t>(3 + rng() % 256)
                     : static_cast<int32_t>(rng() % tok->vocab_size());
    const bool skip = rng() % 2 == 0;
    ASSERT_EQ(Streamed(*tok, r, skip), tok->Decode(r, skip)) << "round " << round;
  }
}

}  // namespace
}  // namespace llmux
