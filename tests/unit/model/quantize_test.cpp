// model.quantize q8_0: output quality against the unquantized weights (perplexity of a fixed
// text, greedy agreement) on real weights (stories260K) and on stories15M-shaped generated
// weights, and batch invariance of the quantized model.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include <unistd.h>

#include "common/batch_builder.h"
#include "common/cpu_model.h"
#include "common/test_data.h"
#include "llmux/backend.h"
#include "llmux/make_model.h"
#include "llmux/model.h"

namespace llmux {
namespace {

using testing::Argmax;
using testing::BatchBuilder;
using testing::CpuModel;

constexpr int kBlockSize = 16;

CpuModel Load(const std::filesystem::path& dir, bool q8, int num_blocks, int threads = 2) {
  ModelLoadOptions lo;
  lo.quantize_q8_0 = q8;
  return testing::LoadCpuModel(dir, num_blocks, kBlockSize, threads, lo);
}

struct Scored {
  double perplexity = 0;
  std::vector<int32_t> argmax;  // the model's top token after each prefix
};

// Teacher-forced over `ids` in one prefill step: perplexity of ids[1..] and each argmax.
Scored Score(Model& model, const std::vector<int32_t>& ids) {
  BatchBuilder bb(1, static_cast<int>(ids.size()) + 1, kBlockSize);
  bb.Append(0, ids);
  ForwardBatch b = bb.Build({{0, static_cast<int>(ids.size())}});
  b.logits_indices.clear();
  for (int i = 0; i + 1 < static_cast<int>(ids.size()); ++i) b.logits_indices.push_back(i);
  auto logits = model.Forward(b);
  EXPECT_TRUE(logits.ok()) << logits.status().ToString();
  Scored s;
  if (!logits.ok()) return s;
  const int vocab = model.config().vocab_size;
  double nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    std::span<const float> row = logits->subspan(i * vocab, vocab);
    const float mx = *std::max_element(row.begin(), row.end());
    double z = 0;
    for (float v : row) z += std::exp(static_cast<double>(v) - mx);
    nll -= static_cast<double>(row[ids[i + 1]]) - mx - std::log(z);
    s.argmax.push_back(Argmax(row));
  }
  s.perplexity = std::exp(nll / static_cast<double>(ids.size() - 1));
  return s;
}

double Agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) same += a[i] == b[i];
  return a.empty() ? 0.0 : static_cast<double>(same) / static_cast<double>(a.size());
}

// Real (trained) weights: the 200-token TinyStories text of expected_greedy.json. Matrices with
// 64-element rows are quantized; down_proj (172-element rows) stays F32.
TEST(QuantizeTest, Stories260KPerplexityWithinOnePercent) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const std::vector<int32_t> text = testing::ReferenceSequence(dir);
  ASSERT_EQ(text.size(), 201u);
  CpuModel f32 = Load(dir, false, 32);
  CpuModel q8 = Load(dir, true, 32);
  ASSERT_TRUE(f32.model && q8.model);
  const Scored a = Score(*f32.model, text);
  const Scored b = Score(*q8.model, text);
  const double agree = Agreement(a.argmax, b.argmax);
  std::printf("stories260K: perplexity f32 %.4f q8_0 %.4f (%+.3f%%), next-token agreement %.1f%%\n",
              a.perplexity, b.perplexity, 100.0 * (b.perplexity / a.perplexity - 1.0),
              100.0 * agree);
  EXPECT_GT(a.perplexity, 1.0);
  EXPECT_LT(a.perplexity, 3.0) << "the model's own greedy text is highly likely under it";
  EXPECT_NE(a.perplexity, b.perplexity) << "q8_0 changed nothing: were the weights quantized?";
  EXPECT_NEAR(b.perplexity / a.perplexity, 1.0, 0.01);
  EXPECT_GE(agree, 0.95);
}

// The quantized model keeps batch invariance: a sequence's logits are bit-identical alone and
// inside a batch of 8 that mixes chunked prefill and decode.
TEST(QuantizeTest, Q8LogitsAreBitIdenticalAloneAndInABatch) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  std::mt19937 rng(77);
  std::uniform_int_distribution<int> tok(3, 511);
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> p{1};
    for (int i = 1; i < 5 + 11 * s; ++i) p.push_back(tok(rng));
    prompts.push_back(p);
  }
  // Chunked prefill (chunk 9) with staggered starts (sequence s joins at step s % 3): steps mix
  // prefill chunks and decodes.
  CpuModel l8 = Load(dir, true, 8 * 8, /*threads=*/2);
  ASSERT_TRUE(l8.model);
  BatchBuilder bb8(8, 128, kBlockSize, /*shuffle_seed=*/8);
  for (int s = 0; s < 8; ++s) bb8.Append(s, prompts[s]);
  const testing::LogitsLog batched =
      testing::RunGreedyBatch(*l8.model, bb8, 8, /*new_tokens=*/4, /*chunk=*/9, /*stagger=*/3);
  for (int s = 0; s < 8; ++s) {
    CpuModel l = Load(dir, true, 16, 1);
    BatchBuilder bb(1, 128, kBlockSize);
    bb.Append(0, prompts[s]);
    for (size_t i = 0; i < batched[s].size(); ++i) {
      ForwardBatch b = bb.Build({{0, static_cast<int>(bb.tokens(0).size()) - bb.computed(0)}});
      auto logits = l.model->Forward(b);
      ASSERT_TRUE(logits.ok());
      bb.Commit();
      ASSERT_EQ(0, std::memcmp(logits->data(), batched[s][i].data(), 4 * batched[s][i].size()))
          << "seq " << s << " token " << i;
      bb.Append(0, {Argmax(*logits)});
    }
  }
}

// stories15M-shaped generated F16 weights (every matrix quantized): perplexity of a fixed token
// sequence within 1% of F16. Random weights give nearly flat distributions, so the logits are
// also compared directly: the Q8_0 error must stay a small fraction of the logits' spread.
TEST(QuantizeTest, Stories15MShapePerplexityWithinOnePercentOfF16) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("llmux_q8_stories15m_" + std::to_string(::getpid()));
  MakeModelOptions mo;
  mo.shape = "stories15m";
  mo.dtype = DType::kF16;
  mo.seed = 15;
  mo.out_dir = dir;
  auto made = MakeModel(mo);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> tok(3, 31999);
  std::vector<int32_t> ids{1};
  for (int i = 0; i < 128; ++i) ids.push_back(tok(rng));
  Scored a, b;
  double max_diff = 0, spread = 0;
  {
    CpuModel f16 = Load(dir, false, 16);
    CpuModel q8 = Load(dir, true, 16);
    ASSERT_TRUE(f16.model && q8.model);
    a = Score(*f16.model, ids);
    b = Score(*q8.model, ids);
    // Last-position logits of both, for the direct comparison.
    BatchBuilder b1(1, 200, kBlockSize), b2(1, 200, kBlockSize);
    b1.Append(0, ids);
    b2.Append(0, ids);
    auto l1 = f16.model->Forward(b1.Build({{0, static_cast<int>(ids.size())}}));
    ASSERT_TRUE(l1.ok());
    std::vector<float> r1(l1->begin(), l1->end());
    auto l2 = q8.model->Forward(b2.Build({{0, static_cast<int>(ids.size())}}));
    ASSERT_TRUE(l2.ok());
    const auto [mn, mx] = std::minmax_element(r1.begin(), r1.end());
    spread = *mx - *mn;
    for (size_t i = 0; i < r1.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(r1[i] - (*l2)[i])));
    }
  }
  std::filesystem::remove_all(dir);
  const double agree = Agreement(a.argmax, b.argmax);
  std::printf("stories15M shape: perplexity f16 %.2f q8_0 %.2f (%+.4f%%), next-token agreement "
              "%.1f%%, max |logit diff| %.4g of a %.4g spread\n",
              a.perplexity, b.perplexity, 100.0 * (b.perplexity / a.perplexity - 1.0),
              100.0 * agree, max_diff, spread);
  EXPECT_NEAR(b.perplexity / a.perplexity, 1.0, 0.01);
  EXPECT_GT(max_diff, 0.0) << "q8_0 changed nothing: were the weights quantized?";
  EXPECT_LT(max_diff, 0.05 * spread);
}

}  // namespace
}  // namespace llmux
