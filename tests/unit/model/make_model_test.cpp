#include "model/make_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "llmux/model_config.h"
#include "llmux/safetensors.h"
#include "model/bpe_builder.h"
#include "model/model_shapes.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class MakeModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("make_model_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  MakeModelResult Make(const std::string& sub, const std::string& shape, DType dtype, uint64_t seed,
                       int threads = 2, uint64_t shard = 5'000'000'000ull) {
    MakeModelOptions opt;
    opt.shape = shape;
    opt.dtype = dtype;
    opt.seed = seed;
    opt.out_dir = root_ / sub;
    opt.threads = threads;
    opt.max_shard_bytes = shard;
    auto r = MakeModel(opt);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : MakeModelResult{};
  }

  fs::path root_;
};

TEST_F(MakeModelTest, TinyLoadsWithExactShapes) {
  const MakeModelResult r = Make("a", "tiny", DType::kF32, 7);
  EXPECT_EQ(r.files, (std::vector<std::string>{"config.json", "tokenizer.json",
                                               "tokenizer_config.json", "model.safetensors"}));
  auto config = LoadModelConfig(root_ / "a");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->arch, Architecture::kLlama);
  EXPECT_EQ(config->vocab_size, 512);
  EXPECT_EQ(config->hidden_size, 128);
  EXPECT_EQ(config->intermediate_size, 352);
  EXPECT_EQ(config->num_layers, 4);
  EXPECT_EQ(config->num_heads, 4);
  EXPECT_EQ(config->num_kv_heads, 2);
  EXPECT_EQ(config->head_dim, 32);
  EXPECT_EQ(config->max_position_embeddings, 2048);
  EXPECT_EQ(config->rms_norm_eps, 1e-5f);
  EXPECT_FALSE(config->tie_word_embeddings);
  EXPECT_EQ(config->bos_token_id, 508);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int>{509, 511}));
  EXPECT_EQ(config->torch_dtype, DType::kF32);

  auto store = WeightStore::Open(root_ / "a");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Names().size(), 4u * 9 + 3);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"model.embed_tokens.weight", {512, 128}},
      {"lm_head.weight", {512, 128}},
      {"model.norm.weight", {128}},
      {"model.layers.3.input_layernorm.weight", {128}},
      {"model.layers.3.post_attention_layernorm.weight", {128}},
      {"model.layers.0.self_attn.q_proj.weight", {128, 128}},
      {"model.layers.0.self_attn.k_proj.weight", {64, 128}},
      {"model.layers.0.self_attn.v_proj.weight", {64, 128}},
      {"model.layers.0.self_attn.o_proj.weight", {128, 128}},
      {"model.layers.2.mlp.gate_proj.weight", {352, 128}},
      {"model.layers.2.mlp.up_proj.weight", {352, 128}},
      {"model.layers.2.mlp.down_proj.weight", {128, 352}},
  };
  for (const auto& [name, shape] : expected) {
    const HostTensor* t = (*store)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, shape) << name;
    EXPECT_EQ(t->dtype, DType::kF32) << name;
  }
  EXPECT_EQ((*store)->Find("model.layers.0.self_attn.q_proj.bias"), nullptr);

  // Values are the documented generator's; projections small, norms near 1.
  const HostTensor* q = (*store)->Find("model.layers.0.self_attn.q_proj.weight");
  const HostTensor* n = (*store)->Find("model.norm.weight");
  for (uint64_t i : {0ull, 1ull, 12345ull}) {
    float v;
    std::memcpy(&v, q->data + 4 * i, 4);
    EXPECT_EQ(v, MakeModelWeight(7, q->name, false, i)) << i;
    EXPECT_LE(std::fabs(v), 0.0693f);
  }
  double sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < q->numel(); ++i) {
    float v;
    std::memcpy(&v, q->data + 4 * i, 4);
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  EXPECT_NEAR(sum / q->numel(), 0.0, 0.001);
  EXPECT_NEAR(std::sqrt(sum_sq / q->numel()), 0.02, 0.001);
  for (int64_t i = 0; i < n->numel(); ++i) {
    float v;
    std::memcpy(&v, n->data + 4 * i, 4);
    EXPECT_NEAR(v, 1.0f, 0.0693f);
  }
}

TEST_F(MakeModelTest, SameSeedSameBytesOtherwiseDifferent) {
  Make("a", "tiny", DType::kBF16, 1, /*threads=*/1);
  Make("b", "tiny", DType::kBF16, 1, /*threads=*/3);
  Make("c", "tiny", DType::kBF16, 2, /*threads=*/1);
  for (const char* f :
       {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_EQ(ReadAll(root_ / "a" / f), ReadAll(root_ / "b" / f)) << f;
  }
  EXPECT_NE(ReadAll(root_ / "a" / "model.safetensors"), ReadAll(root_ / "c" / "model.safetensors"));
  EXPECT_EQ(ReadAll(root_ / "a" / "tokenizer.json"), ReadAll(root_ / "c" / "tokenizer.json"));
  auto store = WeightStore::Open(root_ / "a");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Find("model.embed_tokens.weight")->dtype, DType::kBF16);
  EXPECT_EQ((*store)->Find("model.embed_tokens.weight")->nbytes, 512u * 128 * 2);
}

TEST_F(MakeModelTest, ShardsWhenAboveTheLimitAndLoadsTheSame) {
  const MakeModelResult single = Make("one", "tiny", DType::kF16, 3);
  const MakeModelResult sharded = Make("many", "tiny", DType::kF16, 3, 2, /*shard=*/1'000'000);
  ASSERT_EQ(sharded.files.size(), 3u + 2 + 1);  // 1.74 MB of F16 -> 2 shards + index
  EXPECT_EQ(sharded.files[3], "model-00001-of-00002.safetensors");
  EXPECT_EQ(sharded.files[4], "model-00002-of-00002.safetensors");
  EXPECT_FALSE(fs::exists(root_ / "many" / "model.safetensors"));
  EXPECT_EQ(sharded.files.back(), "model.safetensors.index.json");
  auto a = WeightStore::Open(root_ / "one");
  auto b = WeightStore::Open(root_ / "many");
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().ToString();
  ASSERT_EQ((*a)->Names(), (*b)->Names());
  for (const std::string& name : (*a)->Names()) {
    const HostTensor* x = (*a)->Find(name);
    const HostTensor* y = (*b)->Find(name);
    ASSERT_EQ(x->nbytes, y->nbytes) << name;
    EXPECT_EQ(std::memcmp(x->data, y->data, x->nbytes), 0) << name;
  }
}

TEST_F(MakeModelTest, Qwen2ShapeHasBiasesAndTiedEmbeddings) {
  // Checked on the tensor list and config rather than by writing 1 GB.
  const ModelShape* s = FindModelShape("qwen2-0.5b");
  ASSERT_NE(s, nullptr);
  const ModelConfig c = ShapeConfig(*s);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  const auto specs = ModelTensors(c);
  EXPECT_EQ(specs.size(), 1u + 24 * 12 + 1);
  uint64_t params = 0;
  for (const TensorSpec& t : specs) params += t.numel();
  EXPECT_EQ(params, 494032768u);  // Qwen2-0.5B's published parameter count
  EXPECT_EQ(specs[5].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(specs[6].shape, (std::vector<int64_t>{128}));  // k bias: 2 kv heads x 64
}

TEST_F(MakeModelTest, KnownParameterCounts) {
  auto params = [](const char* name) {
    uint64_t n = 0;
    for (const TensorSpec& t : ModelTensors(ShapeConfig(*FindModelShape(name)))) n += t.numel();
    return n;
  };
  EXPECT_EQ(params("smollm-135m"), 134515008u);
  EXPECT_EQ(params("tinyllama-1.1b"), 1100048384u);
  EXPECT_EQ(params("llama3-8b"), 8030261248u);
  const ModelConfig l3 = ShapeConfig(*FindModelShape("llama3-8b"));
  EXPECT_EQ(l3.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(l3.rope_theta, 500000.0f);
}

TEST_F(MakeModelTest, TokenizerIsAFullByteLevelBpe) {
  Make("a", "tiny", DType::kBF16, 0);
  const auto tok = nlohmann::json::parse(ReadAll(root_ / "a" / "tokenizer.json"));
  const auto& vocab = tok["model"]["vocab"];
  const auto& merges = tok["model"]["merges"];
  ASSERT_EQ(vocab.size(), 508u);
  ASSERT_EQ(merges.size(), 252u);
  EXPECT_EQ(vocab["!"], 0);
  EXPECT_EQ(vocab["Ġ"], 220);  // the space byte, as in GPT-2
  EXPECT_EQ(merges[0], "h e");
  // Every merge joins two tokens into the next id.
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string m = merges[i];
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos);
    const std::string l = m.substr(0, sp), r = m.substr(sp + 1);
    ASSERT_TRUE(vocab.contains(l) && vocab.contains(r)) << m;
    ASSERT_EQ(vocab[l + r], 256 + i) << m;
  }
  ASSERT_EQ(tok["added_tokens"].size(), 4u);
  EXPECT_EQ(tok["added_tokens"][0]["content"], "<|begin_of_text|>");
  EXPECT_EQ(tok["added_tokens"][0]["id"], 508);
  EXPECT_EQ(tok["added_tokens"][3]["content"], "<|im_end|>");
  EXPECT_EQ(tok["added_tokens"][3]["id"], 511);
  const auto cfg = nlohmann::json::parse(ReadAll(root_ / "a" / "tokenizer_config.json"));
  EXPECT_THAT(cfg["chat_template"].get<std::string>(), HasSubstr("<|im_start|>"));
  EXPECT_EQ(cfg["bos_token"], "<|begin_of_text|>");
}

TEST(MakeModelConfigTest, EveryShapeRoundTripsThroughTheParser) {
  for (const ModelShape& shape : ModelShapes()) {
    const ModelConfig want = MakeModelConfig(shape, DType::kBF16);
    auto got = ParseModelConfig(MakeModelConfigJson(shape, DType::kBF16, 9), shape.name);
    ASSERT_TRUE(got.ok()) << shape.name << ": " << got.status().ToString();
    EXPECT_EQ(got->arch, want.arch) << shape.name;
    EXPECT_EQ(got->vocab_size, want.vocab_size) << shape.name;
    EXPECT_EQ(got->hidden_size, want.hidden_size) << shape.name;
    EXPECT_EQ(got->intermediate_size, want.intermediate_size) << shape.name;
    EXPECT_EQ(got->num_layers, want.num_layers) << shape.name;
    EXPECT_EQ(got->num_heads, want.num_heads) << shape.name;
    EXPECT_EQ(got->num_kv_heads, want.num_kv_heads) << shape.name;
    EXPECT_EQ(got->head_dim, want.head_dim) << shape.name;
    EXPECT_EQ(got->max_position_embeddings, want.max_position_embeddings) << shape.name;
    EXPECT_EQ(got->rms_norm_eps, want.rms_norm_eps) << shape.name;
    EXPECT_EQ(got->rope_theta, want.rope_theta) << shape.name;
    EXPECT_EQ(got->rope_scaling.type, want.rope_scaling.type) << shape.name;
    EXPECT_EQ(got->rope_scaling.factor, want.rope_scaling.factor) << shape.name;
    EXPECT_EQ(got->rope_scaling.original_max_position_embeddings,
              want.rope_scaling.original_max_position_embeddings)
        << shape.name;
    EXPECT_EQ(got->tie_word_embeddings, want.tie_word_embeddings) << shape.name;
    EXPECT_EQ(got->attention_bias, want.attention_bias) << shape.name;
    EXPECT_EQ(got->bos_token_id, want.bos_token_id) << shape.name;
    EXPECT_EQ(got->eos_token_ids, want.eos_token_ids) << shape.name;
    EXPECT_EQ(got->torch_dtype, DType::kBF16) << shape.name;
  }
  const ModelConfig l3 = MakeModelConfig(*FindModelShape("llama3-8b"), DType::kBF16);
  EXPECT_EQ(l3.bos_token_id, 128252);
  EXPECT_EQ(l3.eos_token_ids, (std::vector<int>{128253, 128255}));
}

TEST(BpeBuilderTest, FillsLargeVocabulariesWithConstructedMerges) {
  const ByteLevelBpe bpe = BuildByteLevelBpe(32000 - 4);
  ASSERT_EQ(bpe.vocab.size(), 31996u);
  ASSERT_EQ(bpe.merges.size(), 31996u - 256);
  std::set<std::string> unique(bpe.vocab.begin(), bpe.vocab.end());
  EXPECT_EQ(unique.size(), bpe.vocab.size());
  const auto& last = bpe.merges.back();
  EXPECT_EQ(last.first + last.second, bpe.vocab.back());
}

TEST(MakeModelErrorsTest, RejectsUnknownShapeAndDtype) {
  MakeModelOptions opt;
  opt.shape = "gpt-5";
  opt.out_dir = ::testing::TempDir();
  auto r = MakeModel(opt);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("unknown shape 'gpt-5' (shapes: tiny, stories15m"));
  opt.shape = "tiny";
  opt.dtype = DType::kI32;
  EXPECT_EQ(MakeModel(opt).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llmux
