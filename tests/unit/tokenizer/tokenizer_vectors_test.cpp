// Conformance against llama.cpp's tokenizer vectors (expected ids from HF tokenizers):
// Llama-2 (SentencePiece-style BPE with byte fallback) and Llama-3 (byte-level BPE).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_data.h"
#include "llmux/tokenizer.h"

namespace llmux {
namespace {

struct Vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<int32_t>> ids;
};

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Format: see shared/tokenizers/README.md.
Vectors LoadVectors(const std::filesystem::path& stem) {
  Vectors v;
  const std::string inp = Slurp(stem.string() + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    v.inputs.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::istringstream out(Slurp(stem.string() + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    v.ids.push_back(ids);
  }
  return v;
}

std::string Streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detok(tok, skip);
  std::string text;
  for (int32_t id : ids) text += detok.Push(id);
  return text + detok.Flush();
}

class VectorsTest : public ::testing::Test {
 protected:
  void Check(const std::filesystem::path& tokenizer_json, const std::filesystem::path& stem,
             bool expect_round_trip) {
    auto tok =
        Tokenizer::FromFile(tokenizer_json, tokenizer_json.parent_path() / "tokenizer_config.json");
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    const Vectors v = LoadVectors(stem);
    ASSERT_EQ(v.inputs.size(), 46u);
    ASSERT_EQ(v.ids.size(), v.inputs.size());
    for (size_t i = 0; i < v.inputs.size(); ++i) {
      const auto ids = (*tok)->Encode(v.inputs[i], /*add_special_tokens=*/false);
      EXPECT_EQ(ids, v.ids[i]) << "input " << i << ": '" << v.inputs[i] << "'";
      const std::string decoded = (*tok)->Decode(ids, /*skip_special_tokens=*/false);
      if (expect_round_trip) {
        EXPECT_EQ(decoded, v.inputs[i]) << "input " << i;
      }
      EXPECT_EQ(Streamed(**tok, ids, false), decoded) << "input " << i;
      // With BOS in front, skipping specials must give the same text.
      ASSERT_TRUE((*tok)->bos_id().has_value());
      std::vector<int32_t> with_bos = ids;
      with_bos.insert(with_bos.begin(), *(*tok)->bos_id());
      EXPECT_EQ((*tok)->Decode(with_bos, /*skip_special_tokens=*/true), decoded) << i;
      EXPECT_EQ(Streamed(**tok, with_bos, true), decoded) << "input " << i;
      EXPECT_EQ(Streamed(**tok, with_bos, false), (*tok)->Decode(with_bos, false)) << i;
    }
  }
};

TEST_F(VectorsTest, LlamaSpm) {
  LLMUX_REQUIRE_DATA(json, testing::SharedDataDir() / "tokenizers/llama-spm/tokenizer.json");
  Check(json, testing::SharedDataDir() / "tokenizers/vectors/ggml-vocab-llama-spm.gguf",
        /*expect_round_trip=*/true);
}

TEST_F(VectorsTest, Llama3Bpe) {
  LLMUX_REQUIRE_DATA(json, testing::FetchedDataDir() / "llama3/tokenizer.json");
  LLMUX_REQUIRE_DATA(stem_inp,
                     testing::SharedDataDir() / "tokenizers/vectors/ggml-vocab-llama-bpe.gguf.inp");
  // NOTE: Llama-3's config sets clean_up_tokenization_spaces, so decoding is not always the
  // identity (checked separately); the ids and the streaming property are checked here.
  Check(json, testing::SharedDataDir() / "tokenizers/vectors/ggml-vocab-llama-bpe.gguf",
        /*expect_round_trip=*/false);
}

}  // namespace
}  // namespace llmux
