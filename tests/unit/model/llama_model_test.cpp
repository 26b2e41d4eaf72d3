// End-to-end forward-pass tests on real weights (stories260K-hf) with the CPU backend.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <random>

#include "common/batch_builder.h"
#include "common/cpu_model.h"
#include "common/forwarding_backend.h"
#include "common/test_data.h"
#include "llmux/backend.h"
#include "llmux/model.h"

namespace llmux {
namespace {

using testing::Argmax;
using testing::BatchBuilder;
using testing::CpuModel;
using testing::LogitsLog;
using testing::ReferenceSequence;

constexpr int kBlockSize = 16;

CpuModel LoadStories(const std::filesystem::path& dir, int num_blocks, int threads = 2) {
  return testing::LoadCpuModel(dir, num_blocks, kBlockSize, threads);
}

// Greedy decoding of one sequence: prompt in one prefill step, then one token per step.
std::vector<int32_t> Greedy(Model& model, std::vector<int32_t> prompt, int new_tokens,
                            int prefill_chunk = 1 << 30) {
  BatchBuilder bb(1, static_cast<int>(prompt.size()) + new_tokens + 1, kBlockSize);
  bb.Append(0, prompt);
  std::vector<int32_t> out;
  while (static_cast<int>(out.size()) < new_tokens) {
    const int remaining = static_cast<int>(bb.tokens(0).size()) - bb.computed(0);
    ForwardBatch b = bb.Build({{0, std::min(remaining, prefill_chunk)}});
    auto logits = model.Forward(b);
    EXPECT_TRUE(logits.ok()) << logits.status().ToString();
    if (!logits.ok()) return out;
    bb.Commit();
    if (!b.logits_indices.empty()) {
      const int32_t next = Argmax(*logits);
      out.push_back(next);
      bb.Append(0, {next});
    }
  }
  return out;
}

TEST(LlamaModelTest, GreedyFromBosReproducesReference) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  CpuModel l = LoadStories(dir, 64);
  const std::vector<int32_t> expected = ReferenceSequence(dir);
  ASSERT_EQ(expected.size(), 201u);
  std::vector<int32_t> got = Greedy(*l.model, {1}, 200);
  std::vector<int32_t> want(expected.begin() + 1, expected.end());
  EXPECT_EQ(got, want);
}

TEST(LlamaModelTest, AnyPrefixContinuesWithTheRest) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  CpuModel l = LoadStories(dir, 64);
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  for (int prefix_len : {5, 17, 64, 150}) {
    std::vector<int32_t> prompt(seq.begin(), seq.begin() + prefix_len);
    const int n = std::min(24, static_cast<int>(seq.size()) - prefix_len);
    // Chunked prefill (chunk 7) must not change the result.
    std::vector<int32_t> got = Greedy(*l.model, prompt, n, /*prefill_chunk=*/7);
    std::vector<int32_t> want(seq.begin() + prefix_len, seq.begin() + prefix_len + n);
    EXPECT_EQ(got, want) << "prefix length " << prefix_len;
  }
}

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int len) {
  std::vector<int32_t> p{1};
  std::uniform_int_distribution<int> tok(3, 511);
  for (int i = 1; i < len; ++i) p.push_back(tok(rng));
  return p;
}

TEST(LlamaModelTest, LogitsAreBitIdenticalAtBatch1And8And64) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  constexpr int kNew = 6;
  std::mt19937 rng(1234);
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < 64; ++s) prompts.push_back(RandomPrompt(rng, 3 + (s * 37) % 90));

  // Batch 1: each of the first 8 sequences alone, prompt in one step.
  std::map<int, std::vector<std::vector<float>>> alone;
  for (int s = 0; s < 8; ++s) {
    CpuModel l = LoadStories(dir, 16, /*threads=*/1);
    BatchBuilder bb(1, 128, kBlockSize);
    bb.Append(0, prompts[s]);
    alone[s] = testing::RunGreedyBatch(*l.model, bb, 1, kNew, 1 << 20, /*stagger=*/5)[0];
  }
  for (int batch : {8, 64}) {
    CpuModel l = LoadStories(dir, batch * 8, /*threads=*/2);
    BatchBuilder bb(batch, 128, kBlockSize, /*shuffle_seed=*/batch);
    for (int s = 0; s < batch; ++s) bb.Append(s, prompts[s]);
    // Chunked prefill (chunk 13) with staggered starts (sequence s joins at step s % 5): steps
    // mix prefill chunks and decodes.
    LogitsLog log = testing::RunGreedyBatch(*l.model, bb, batch, kNew, 13, /*stagger=*/5);
    for (int s = 0; s < 8; ++s) {
      ASSERT_EQ(log[s].size(), alone[s].size()) << "seq " << s << " batch " << batch;
      for (size_t i = 0; i < log[s].size(); ++i) {
        ASSERT_EQ(0, std::memcmp(log[s][i].data(), alone[s][i].data(),
                                 log[s][i].size() * sizeof(float)))
            << "logits differ for seq " << s << " token " << i << " at batch " << batch;
      }
    }
  }
}

// Records the weight shape of every MatMul the forward pass issues.
class GemmRecorder final : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) override {
    weights.push_back({w.rows, w.cols});
    out_strides.push_back(out.stride);
    ForwardingBackend::MatMul(x, w, bias, out);
  }
  std::vector<std::pair<int64_t, int64_t>> weights;
  std::vector<int64_t> out_strides;
};

// The model runs on fused weights: per layer one q/k/v GEMM, o_proj, one gate/up GEMM and
// down_proj (4, not 7), then lm_head; q/k/v and gate/up come out of one buffer each.
TEST(LlamaModelTest, RunsFourGemmsPerLayerOnFusedWeights) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  auto cpu = CreateCpuBackend(CpuBackendOptions{.threads = 1});
  ASSERT_TRUE(cpu.ok());
  GemmRecorder rec(std::move(*cpu));
  auto model = Model::Load(dir, &rec, 64);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelConfig& c = (*model)->config();
  ASSERT_TRUE(rec.InitKvCache({c.num_layers, 4, kBlockSize, c.num_heads, c.num_kv_heads,
                               c.head_dim, DType::kF32})
                  .ok());
  BatchBuilder bb(1, 64, kBlockSize);
  bb.Append(0, {1, 403, 407});
  auto logits = (*model)->Forward(bb.Build({{0, 3}}));
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  const int64_t dim = c.hidden_size, qkv = c.q_size() + 2 * c.kv_size();
  const int64_t ffn = c.intermediate_size;
  ASSERT_EQ(rec.weights.size(), static_cast<size_t>(4 * c.num_layers + 1));
  for (int l = 0; l < c.num_layers; ++l) {
    const auto* w = &rec.weights[4 * l];
    EXPECT_EQ(w[0], std::make_pair(qkv, dim)) << "layer " << l << " qkv_proj";
    EXPECT_EQ(w[1], std::make_pair(dim, static_cast<int64_t>(c.q_size()))) << "o_proj";
    EXPECT_EQ(w[2], std::make_pair(2 * ffn, dim)) << "layer " << l << " gate_up_proj";
    EXPECT_EQ(w[3], std::make_pair(dim, ffn)) << "layer " << l << " down_proj";
    EXPECT_EQ(rec.out_strides[4 * l], qkv);
    EXPECT_EQ(rec.out_strides[4 * l + 2], 2 * ffn);
  }
  EXPECT_EQ(rec.weights.back(), std::make_pair(static_cast<int64_t>(c.vocab_size), dim));
}

TEST(LlamaModelTest, RejectsMalformedBatches) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  CpuModel l = LoadStories(dir, 8);
  BatchBuilder bb(1, 32, kBlockSize);
  bb.Append(0, {1, 600});  // 600 is outside the 512-token vocabulary
  auto r = l.model->Forward(bb.Build({{0, 2}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("600"), std::string::npos);
}

}  // namespace
}  // namespace llmux
