// A tiny GPT-2 style byte-level tokenizer.json, the form `llmux make-model` writes: BPE with
// a byte-level vocab, "a b" string merges, ByteLevel pre-tokenizer/decoder, added tokens.
// Expected ids were checked against @huggingface/tokenizers (except single_word, which that
// oracle ignores; those follow the Rust tokenizers rule: no word character on either side).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "tokenizer_test_util.h"

namespace llmux {
namespace {

using testing::MustLoad;
using testing::Streamed;

// GPT-2 bytes_to_unicode(), written out independently of the implementation.
std::vector<std::pair<int, std::string>> ByteOrder() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  }
  std::vector<std::pair<int, std::string>> out;
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string u;
    const int c = cs[i];
    if (c < 0x80) {
      u.push_back(static_cast<char>(c));
    } else {
      u.push_back(static_cast<char>(0xC0 | (c >> 6)));
      u.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
    out.emplace_back(bs[i], u);
  }
  return out;
}

// Ids: 0..255 byte stand-ins in GPT-2 order, 256.. merges, 267.. added tokens.
std::string TinyGpt2Json(bool with_added) {
  nlohmann::json vocab = nlohmann::json::object();
  for (const auto& [b, u] : ByteOrder()) vocab[u] = static_cast<int>(vocab.size());
  const std::vector<std::string> merges = {"h e",   "l l", "he ll",   "hell o", "Ġ w",  "o r",
                                           "Ġw or", "l d", "Ġwor ld", "Ġ Ġ",    "ĠĠ ĠĠ"};
  for (const auto& m : merges) {
    const size_t sp = m.find(' ');
    vocab[m.substr(0, sp) + m.substr(sp + 1)] = static_cast<int>(vocab.size());
  }
  auto added = [](int id, const char* content, bool special, bool strip, bool single_word,
                  bool normalized) {
    return nlohmann::json{{"id", id},          {"content", content}, {"single_word", single_word},
                          {"lstrip", strip},   {"rstrip", strip},    {"normalized", normalized},
                          {"special", special}};
  };
  nlohmann::json added_tokens = nlohmann::json::array();
  if (with_added) {
    added_tokens = {added(267, "<|endoftext|>", true, false, false, false),
                    added(268, "<mask>", true, true, false, false),
                    added(269, "[WORD]", false, false, true, false),
                    added(270, "dog", false, false, false, true)};
  }
  const nlohmann::json byte_level = {{"type", "ByteLevel"},
                                     {"add_prefix_space", false},
                                     {"trim_offsets", true},
                                     {"use_regex", true}};
  nlohmann::json j = {{"version", "1.0"},
                      {"added_tokens", added_tokens},
                      {"normalizer", nullptr},
                      {"pre_tokenizer", byte_level},
                      {"post_processor", byte_level},
                      {"decoder", byte_level},
                      {"model",
                       {{"type", "BPE"},
                        {"dropout", nullptr},
                        {"unk_token", nullptr},
                        {"continuing_subword_prefix", nullptr},
                        {"end_of_word_suffix", nullptr},
                        {"fuse_unk", false},
                        {"byte_fallback", false},
                        {"vocab", vocab},
                        {"merges", merges}}}};
  return j.dump();
}

TEST(ByteLevelTokenizerTest, EncodesWithMergesAndRegexSplit) {
  auto tok = MustLoad(TinyGpt2Json(true), "");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 271);
  EXPECT_EQ(tok->Encode("hello world", false), (std::vector<int32_t>{259, 264}));
  EXPECT_EQ(tok->Encode("hello  world\n", false), (std::vector<int32_t>{259, 220, 264, 198}));
  EXPECT_EQ(tok->Encode("  hello    world", false),
            (std::vector<int32_t>{220, 220, 259, 265, 220, 264}));
  EXPECT_EQ(tok->Encode("héllo wörld 🦙", false),
            (std::vector<int32_t>{71, 127, 102, 257, 78, 260, 127, 114, 81, 263, 220, 172, 253, 99,
                                  247}));
  EXPECT_EQ(tok->IdToPiece(264), "Ġworld");
  EXPECT_EQ(tok->TokenToId("Ġworld"), 264);
  EXPECT_EQ(tok->TokenToId("nope"), std::nullopt);
  // No BOS configured: add_special_tokens adds nothing.
  EXPECT_FALSE(tok->bos_id().has_value());
  EXPECT_FALSE(tok->adds_bos());
  EXPECT_EQ(tok->Encode("hello", true), (std::vector<int32_t>{259}));
}

TEST(ByteLevelTokenizerTest, AddedTokenFlags) {
  auto tok = MustLoad(TinyGpt2Json(true), "");
  ASSERT_NE(tok, nullptr);
  // lstrip/rstrip absorb the surrounding spaces.
  EXPECT_EQ(tok->Encode("a <mask> b", false), (std::vector<int32_t>{64, 268, 65}));
  EXPECT_EQ(tok->Encode("a  <mask>  b c", false), (std::vector<int32_t>{64, 268, 65, 220, 66}));
  // single_word: only matched with no word character on either side.
  EXPECT_EQ(tok->Encode("x [WORD] y", false), (std::vector<int32_t>{87, 220, 269, 220, 88}));
  EXPECT_EQ(tok->Encode("[WORD]", false), (std::vector<int32_t>{269}));
  EXPECT_EQ(tok->Encode("x[WORD]y", false), (std::vector<int32_t>{87, 58, 54, 46, 49, 35, 60, 88}));
  // A normalized, non-special added token matches inside words too.
  EXPECT_EQ(tok->Encode("my dog, hotdog", false),
            (std::vector<int32_t>{76, 88, 220, 270, 11, 220, 71, 78, 83, 270}));
  EXPECT_EQ(tok->Encode("<|endoftext|>hello", false), (std::vector<int32_t>{267, 259}));
  // parse_special=false: special tokens are text, non-special added tokens still match.
  const auto plain = tok->Encode("<|endoftext|>dog", false, /*parse_special=*/false);
  ASSERT_FALSE(plain.empty());
  EXPECT_NE(plain.front(), 267);
  EXPECT_EQ(plain.back(), 270);
  EXPECT_EQ(tok->Decode(plain, false), "<|endoftext|>dog");
  EXPECT_TRUE(tok->IsSpecial(267));
  EXPECT_FALSE(tok->IsSpecial(269));
  EXPECT_FALSE(tok->IsSpecial(259));
}

TEST(ByteLevelTokenizerTest, DecodeRoundTripsAndSkipsSpecials) {
  auto tok = MustLoad(TinyGpt2Json(true), "");
  ASSERT_NE(tok, nullptr);
  for (const std::string s : {"hello world", "  hello    world", "héllo wörld 🦙\n\t\r x",
                              "日本語のテキスト", "a  b   c    "}) {
    const auto ids = tok->Encode(s, false);
    EXPECT_EQ(tok->Decode(ids, false), s);
    EXPECT_EQ(Streamed(*tok, ids, false), s);
  }
  const std::vector<int32_t> ids = {267, 259, 268, 264};
  EXPECT_EQ(tok->Decode(ids, false), "<|endoftext|>hello<mask> world");
  EXPECT_EQ(tok->Decode(ids, true), "hello world");
  EXPECT_EQ(Streamed(*tok, ids, true), "hello world");
  // Unknown ids are skipped.
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{259, 99999, -1, 264}, false), "hello world");
}

TEST(ByteLevelTokenizerTest, InvalidUtf8InputIsReplacedNotFatal) {
  auto tok = MustLoad(TinyGpt2Json(false), "");
  ASSERT_NE(tok, nullptr);
  // \xFF, the truncated \xE2\x82 and a lone continuation byte each become one U+FFFD.
  const auto ids = tok->Encode(
      "a\xFF"
      "b\xE2\x82 c\x80",
      false);
  EXPECT_EQ(ids, tok->Encode("a\uFFFDb\uFFFD c\uFFFD", false));
  EXPECT_EQ(tok->Decode(ids, false), "a\uFFFDb\uFFFD c\uFFFD");
}

TEST(ByteLevelTokenizerTest, DecodesInvalidBytesLossilyAndStreamsWholeCharacters) {
  auto tok = MustLoad(TinyGpt2Json(false), "");
  ASSERT_NE(tok, nullptr);
  // "🦙" is F0 9F A6 99: four byte tokens. Nothing is emitted until the character completes.
  const auto ids = tok->Encode("🦙!", false);
  ASSERT_EQ(ids.size(), 5u);
  IncrementalDetokenizer detok(*tok, false);
  EXPECT_EQ(detok.Push(ids[0]), "");
  EXPECT_EQ(detok.Push(ids[1]), "");
  EXPECT_EQ(detok.Push(ids[2]), "");
  EXPECT_EQ(detok.Push(ids[3]), "🦙");
  EXPECT_EQ(detok.Push(ids[4]), "!");
  EXPECT_EQ(detok.Flush(), "");
  // A truncated character decodes to U+FFFD (lossy), at the end and mid-stream alike.
  const std::vector<int32_t> cut = {ids[0], ids[1], ids[4], ids[0]};
  EXPECT_EQ(tok->Decode(cut, false), "\uFFFD!\uFFFD");
  EXPECT_EQ(Streamed(*tok, cut, false), "\uFFFD!\uFFFD");
}

TEST(ByteLevelTokenizerTest, EncodeIsThreadSafe) {
  auto tok = MustLoad(TinyGpt2Json(true), "");
  ASSERT_NE(tok, nullptr);
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) {
    texts.push_back("hello world " + std::to_string(i * 7919) + " héllo <mask> dog" +
                    std::string(i % 5, ' '));
  }
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(tok->Encode(t, false));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int round = 0; round < 50; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (i + th * 13 + round) % texts.size();
          if (tok->Encode(texts[k], false) != expected[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace llmux
