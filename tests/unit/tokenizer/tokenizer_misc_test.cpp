// stories260K-hf (the tiny Llama used end to end), Metaspace pre-tokenizer variants, load
// errors, and encode speed.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/test_data.h"
#include "tokenizer_test_util.h"

namespace llmux {
namespace {

using testing::MustLoad;
using testing::Streamed;
using Ids = std::vector<int32_t>;

TEST(Stories260KTokenizerTest, EncodeAndDecodeGreedyText) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models/stories260K-hf");
  auto tok = Tokenizer::FromModelDir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const Tokenizer& t = **tok;
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.Encode("Once upon a time", true), (Ids{1, 403, 407, 261, 378}));
  EXPECT_EQ(t.Encode("<s>Once upon a time", false, true), (Ids{1, 403, 407, 261, 378}));
  EXPECT_NE(t.Encode("<s>Once upon a time", false, false).front(), 1);

  std::ifstream in(dir / "expected_greedy.json");
  const auto expected = nlohmann::json::parse(in);
  const auto greedy = expected.at("greedy_ids").get<Ids>();
  const auto text = expected.at("text").get<std::string>();
  EXPECT_EQ(t.Decode(greedy, true), text);
  EXPECT_EQ(Streamed(t, greedy, true), text);
  Ids with_prompt = expected.at("prompt_ids").get<Ids>();
  with_prompt.insert(with_prompt.end(), greedy.begin(), greedy.end());
  EXPECT_EQ(t.Decode(with_prompt, true), text);
  EXPECT_EQ(Streamed(t, with_prompt, true), text);
}

// A SentencePiece-style vocab with the Metaspace pre-tokenizer and decoder. Expected ids were
// checked against @huggingface/tokenizers.
std::string MetaspaceJson(const char* scheme) {
  const nlohmann::json metaspace = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", scheme}, {"split", true}};
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", nlohmann::json::array({{{"id", 1},
                                               {"content", "<s>"},
                                               {"single_word", false},
                                               {"lstrip", false},
                                               {"rstrip", false},
                                               {"normalized", false},
                                               {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", metaspace},
      {"post_processor", nullptr},
      {"decoder", metaspace},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", false},
        {"vocab",
         {{"<unk>", 0}, {"<s>", 1}, {"▁", 2}, {"a", 3}, {"b", 4}, {"▁a", 5}, {"▁b", 6}, {"▁▁", 7}}},
        // NOTE: explicit arrays: nlohmann would read {{"▁", "a"}, ...} as an object.
        {"merges", nlohmann::json::array({nlohmann::json::array({"▁", "a"}),
                                          nlohmann::json::array({"▁", "b"}),
                                          nlohmann::json::array({"▁", "▁"})})}}}};
  return j.dump();
}

TEST(MetaspaceTokenizerTest, PrependSchemes) {
  struct Row {
    const char* text;
    Ids first, always, never;
  };
  const Row rows[] = {
      {"a b", {5, 6}, {5, 6}, {3, 6}},
      {"<s>a b", {1, 3, 6}, {1, 5, 6}, {1, 3, 6}},
      {"<s> a", {1, 5}, {1, 5}, {1, 5}},
      {"  a", {2, 5}, {2, 5}, {2, 5}},
      {"ab  b", {5, 4, 2, 6}, {5, 4, 2, 6}, {3, 4, 2, 6}},
      {"a xyz b", {5, 2, 0, 6}, {5, 2, 0, 6}, {3, 2, 0, 6}},  // unknown chars fuse into one unk
  };
  auto first = MustLoad(MetaspaceJson("first"), "");
  auto always = MustLoad(MetaspaceJson("always"), "");
  auto never = MustLoad(MetaspaceJson("never"), "");
  ASSERT_TRUE(first && always && never);
  for (const Row& r : rows) {
    EXPECT_EQ(first->Encode(r.text, false), r.first) << r.text;
    EXPECT_EQ(always->Encode(r.text, false), r.always) << r.text;
    EXPECT_EQ(never->Encode(r.text, false), r.never) << r.text;
  }
  // The decoder drops every "▁" of the first token (unless never) and maps the rest to spaces.
  EXPECT_EQ(first->Decode(Ids{2, 5}, false), " a");
  EXPECT_EQ(first->Decode(Ids{5, 6}, false), "a b");
  EXPECT_EQ(never->Decode(Ids{5, 6}, false), " a b");
  EXPECT_EQ(first->Decode(Ids{1, 5, 6}, false), "<s> a b");
  EXPECT_EQ(first->Decode(Ids{5, 2, 0, 6}, false), "a <unk> b");
  EXPECT_EQ(Streamed(*first, Ids{5, 2, 0, 6}, false), "a <unk> b");
}

TEST(TokenizerLoadTest, Errors) {
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Tokenizer::FromJson("{not json", "").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(Tokenizer::FromJson(R"({"model": {"type": "BPE"}})", "").status().code(),
            StatusCode::kDataLoss);

  auto j = nlohmann::json::parse(MetaspaceJson("first"));
  j["normalizer"] = {{"type", "BertNormalizer"}};
  EXPECT_EQ(Tokenizer::FromJson(j.dump(), "").status().code(), StatusCode::kUnimplemented);
  j = nlohmann::json::parse(MetaspaceJson("first"));
  j["model"]["type"] = "Unigram";
  EXPECT_EQ(Tokenizer::FromJson(j.dump(), "").status().code(), StatusCode::kUnimplemented);
  j = nlohmann::json::parse(MetaspaceJson("first"));
  j["model"]["merges"].push_back(nlohmann::json::array({"b", "zz"}));
  EXPECT_EQ(Tokenizer::FromJson(j.dump(), "").status().code(), StatusCode::kDataLoss);
  j = nlohmann::json::parse(MetaspaceJson("first"));
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  EXPECT_EQ(Tokenizer::FromJson(j.dump(), "").status().code(), StatusCode::kInvalidArgument);
  // add_bos_token without a known bos_token is inconsistent.
  EXPECT_EQ(
      Tokenizer::FromJson(MetaspaceJson("first"), R"({"add_bos_token": true})").status().code(),
      StatusCode::kDataLoss);
}

double SecondsToEncode(const Tokenizer& tok, const std::string& text, size_t* n) {
  const auto start = std::chrono::steady_clock::now();
  *n = tok.Encode(text, false).size();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// 100 KB of mixed text, once per family; well under a second each (it takes a few tens of
// milliseconds in a Release build).
TEST(TokenizerSpeedTest, Encodes100KBWellUnderASecond) {
  LLMUX_REQUIRE_DATA(spm, testing::SharedDataDir() / "tokenizers/llama-spm/tokenizer.json");
  LLMUX_REQUIRE_DATA(bpe, testing::FetchedDataDir() / "llama3/tokenizer.json");
  std::string text;
  const char* parts[] = {"The quick brown fox jumps over the lazy dog. ",
                         "Once upon a time, ",
                         "こんにちは世界 ",
                         "1234567 + 89 = ?\n",
                         "def f(x):\n    return x\n",
                         "Привет, мир! ",
                         "🦙 "};
  for (size_t i = 0; text.size() < 100 * 1024; ++i) text += parts[(i * 7 + i / 3) % 7];
  for (const auto& path : {spm, bpe}) {
    auto tok = Tokenizer::FromFile(path);
    ASSERT_TRUE(tok.ok());
    size_t n = 0;
    const double s = SecondsToEncode(**tok, text, &n);
    EXPECT_LT(s, 1.0) << path;
    EXPECT_GT(n, text.size() / 8);
    std::printf("%s: %zu bytes -> %zu tokens in %.3f s\n", path.c_str(), text.size(), n, s);
  }
}

}  // namespace
}  // namespace llmux
