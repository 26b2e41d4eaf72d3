// Model::LoadSynthetic and its SyntheticWeightStore: every tensor of the
// config's model, generated deterministically from the seed, and the real
// forward pass running on them.
#include "model/synthetic_weights.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/batch_builder.h"
#include "common/test_data.h"
#include "llmux/backend.h"
#include "llmux/model.h"
#include "llmux/model_shapes.h"

namespace llmux {
namespace {

ModelConfig TinyConfig() { return ShapeConfig(*FindModelShape("tiny")); }

TEST(SyntheticWeightsTest, HasEveryTensorOfTheModelDeterministically) {
  const ModelConfig c = TinyConfig();
  SyntheticWeightStore a(c, 7, /*keep_all=*/true), b(c, 7, /*keep_all=*/true);
  SyntheticWeightStore other(c, 8, /*keep_all=*/true);
  const std::vector<TensorSpec> specs = ModelTensors(c);
  ASSERT_EQ(a.Names().size(), specs.size());
  for (const TensorSpec& s : specs) {
    const HostTensor* ta = a.Find(s.name);
    ASSERT_NE(ta, nullptr) << s.name;
    EXPECT_EQ(ta->shape, s.shape) << s.name;
    EXPECT_EQ(ta->dtype, DType::kBF16);
    ASSERT_EQ(ta->nbytes, s.numel() * 2);
    const HostTensor* tb = b.Find(s.name);
    EXPECT_EQ(std::memcmp(ta->data, tb->data, ta->nbytes), 0) << s.name;
    EXPECT_NE(std::memcmp(ta->data, other.Find(s.name)->data, ta->nbytes), 0) << s.name;
  }
  EXPECT_EQ(a.Find("model.layers.99.mlp.up_proj.weight"), nullptr);
  // Norm weights sit around 1, matrices around 0.
  uint16_t h;
  std::memcpy(&h, a.Find("model.norm.weight")->data, 2);
  EXPECT_NEAR(Bf16ToFloat(h), 1.0f, 0.05f);
  std::memcpy(&h, a.Find("model.layers.0.self_attn.q_proj.weight")->data, 2);
  EXPECT_LT(std::fabs(Bf16ToFloat(h)), 0.05f);
}

TEST(SyntheticWeightsTest, WindowModeKeepsTheLastFourAndRegeneratesTheSame) {
  const ModelConfig c = TinyConfig();
  SyntheticWeightStore s(c, 3, /*keep_all=*/false);
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  const HostTensor* first = s.Find(q);
  std::vector<std::byte> copy(first->data, first->data + first->nbytes);
  // Three more tensors: `first` is still held (a fused group of 3 is found
  // before loading).
  for (const char* n :
       {"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
        "model.layers.0.mlp.up_proj.weight"}) {
    ASSERT_NE(s.Find(n), nullptr);
  }
  EXPECT_EQ(std::memcmp(first->data, copy.data(), copy.size()), 0);
  ASSERT_NE(s.Find("model.layers.1.mlp.up_proj.weight"),
            nullptr);  // evicts q_proj
  const HostTensor* again = s.Find(q);
  ASSERT_EQ(again->nbytes, copy.size());
  EXPECT_EQ(std::memcmp(again->data, copy.data(), copy.size()), 0);
}

TEST(SyntheticWeightsTest, LoadSyntheticRunsTheRealForwardPassFromConfigAlone) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  std::vector<std::vector<float>> runs;
  for (uint64_t seed : {1, 1, 2}) {
    auto backend = CreateCpuBackend(CpuBackendOptions{.threads = 1});
    ASSERT_TRUE(backend.ok());
    auto model = Model::LoadSynthetic(dir, backend->get(), 32, seed);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelConfig& c = (*model)->config();
    ASSERT_TRUE((*backend)
                    ->InitKvCache(
                        {c.num_layers, 4, 16, c.num_heads, c.num_kv_heads, c.head_dim, DType::kF32})
                    .ok());
    testing::BatchBuilder bb(1, 64, 16);
    bb.Append(0, {1, 20, 30, 40});
    auto logits = (*model)->Forward(bb.Build({{0, 4}}));
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    ASSERT_EQ(logits->size(), static_cast<size_t>(c.vocab_size));
    for (float v : *logits) ASSERT_TRUE(std::isfinite(v));
    runs.emplace_back(logits->begin(), logits->end());
  }
  EXPECT_EQ(runs[0], runs[1]);  // same seed, same weights, same logits
  EXPECT_NE(runs[0], runs[2]);
  EXPECT_FALSE(Model::LoadSynthetic(dir / "missing", CreateCpuBackend({})->get(), 32, 1).ok());
}

}  // namespace
}  // namespace llmux
