#include "llmux/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "common/test_data.h"

namespace llmux {
namespace {

using ::testing::HasSubstr;

// A complete Llama-3-8B config.json as published.
constexpr const char* kLlama3 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

constexpr const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151645,
  "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864,
  "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_sliding_window": false,
  "vocab_size": 151936})";

// A minimal valid config; tests patch one key at a time.
std::string Minimal(const std::string& extra = "") {
  return R"({"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,)"
         R"("intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,)"
         R"("max_position_embeddings":256)" +
         extra + "}";
}

StatusOr<ModelConfig> Parse(const std::string& text) { return ParseModelConfig(text, "cfg.json"); }

TEST(ModelConfigTest, ParsesLlama3) {
  auto c = Parse(kLlama3);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->vocab_size, 128256);
  EXPECT_EQ(c->hidden_size, 4096);
  EXPECT_EQ(c->intermediate_size, 14336);
  EXPECT_EQ(c->num_layers, 32);
  EXPECT_EQ(c->num_heads, 32);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_size(), 4096);
  EXPECT_EQ(c->kv_size(), 1024);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c->torch_dtype, DType::kBF16);
}

TEST(ModelConfigTest, ParsesQwen2WithBiasAndTiedEmbeddings) {
  auto c = Parse(kQwen2);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kQwen2);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->max_position_embeddings, 32768);  // use_sliding_window false: no cap
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{151645}));
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(ArchitectureName(c->arch), "Qwen2ForCausalLM");
}

TEST(ModelConfigTest, DefaultsFollowHf) {
  auto c = Parse(Minimal());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_EQ(c->rms_norm_eps, 1e-6f);
  EXPECT_EQ(c->rope_theta, 10000.0f);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_EQ(c->torch_dtype, DType::kF32);
}

TEST(ModelConfigTest, OptionalKeysOverride) {
  auto c = Parse(Minimal(R"(,"head_dim":32,"num_key_value_heads":2,"attention_bias":true,)"
                         R"("eos_token_id":7,"bos_token_id":null,"dtype":"float16",)"
                         R"("rope_scaling":{"type":"linear","factor":2.0})"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->q_size(), 128);
  EXPECT_TRUE(c->attention_bias);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{7}));
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_EQ(c->torch_dtype, DType::kF16);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ(c->rope_scaling.factor, 2.0f);
}

TEST(ModelConfigTest, MistralSlidingWindowCapsContext) {
  auto c = Parse(R"({"architectures":["MistralForCausalLM"],"vocab_size":32000,)"
                 R"("hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,)"
                 R"("num_attention_heads":32,"num_key_value_heads":8,)"
                 R"("max_position_embeddings":32768,"sliding_window":4096})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kMistral);
  EXPECT_EQ(c->max_position_embeddings, 4096);
}

struct Bad {
  std::string text;
  StatusCode code;
  std::string key;
};

TEST(ModelConfigTest, RejectsBadConfigsNamingTheKey) {
  const std::vector<Bad> cases = {
      {"not json", StatusCode::kInvalidArgument, "not valid JSON"},
      {"[1]", StatusCode::kInvalidArgument, "not a JSON object"},
      {R"({"vocab_size":1})", StatusCode::kInvalidArgument, "\"architectures\" is required"},
      {R"({"architectures":["GPT2LMHeadModel"]})", StatusCode::kUnimplemented,
       "'GPT2LMHeadModel' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
       "Qwen2ForCausalLM)"},
      {R"({"architectures":"LlamaForCausalLM"})", StatusCode::kInvalidArgument, "architectures"},
      {R"({"architectures":["LlamaForCausalLM"]})", StatusCode::kInvalidArgument,
       "\"vocab_size\" is required"},
      {Minimal(R"(,"hidden_size":0)"), StatusCode::kInvalidArgument,
       "\"hidden_size\" must be >= 1"},
      {Minimal(R"(,"vocab_size":-5)"), StatusCode::kInvalidArgument, "\"vocab_size\""},
      {Minimal(R"(,"num_hidden_layers":"2")"), StatusCode::kInvalidArgument,
       "\"num_hidden_layers\" must be an integer"},
      {Minimal(R"(,"intermediate_size":1.5)"), StatusCode::kInvalidArgument,
       "\"intermediate_size\" must be an integer"},
      {Minimal(R"(,"vocab_size":4294967296)"), StatusCode::kInvalidArgument,
       "\"vocab_size\" is too large"},
      {Minimal(R"(,"num_attention_heads":5)"), StatusCode::kInvalidArgument,
       "\"hidden_size\" (64) must be divisible by num_attention_heads (5)"},
      {Minimal(R"(,"num_key_value_heads":3)"), StatusCode::kInvalidArgument,
       "\"num_key_value_heads\" (3) must divide num_attention_heads (4)"},
      {Minimal(R"(,"head_dim":15)"), StatusCode::kInvalidArgument, "\"head_dim\" must be even"},
      {Minimal(R"(,"rms_norm_eps":-1)"), StatusCode::kInvalidArgument, "\"rms_norm_eps\""},
      {Minimal(R"(,"rope_theta":"big")"), StatusCode::kInvalidArgument, "\"rope_theta\""},
      {Minimal(R"(,"tie_word_embeddings":1)"), StatusCode::kInvalidArgument,
       "\"tie_word_embeddings\" must be true or false"},
      {Minimal(R"(,"eos_token_id":[1,"x"])"), StatusCode::kInvalidArgument, "\"eos_token_id\""},
      {Minimal(R"(,"eos_token_id":100)"), StatusCode::kInvalidArgument, "\"eos_token_id\""},
      {Minimal(R"(,"torch_dtype":"float64")"), StatusCode::kInvalidArgument, "\"torch_dtype\""},
      {Minimal(R"(,"hidden_act":"gelu")"), StatusCode::kUnimplemented, "\"hidden_act\""},
      {Minimal(R"(,"rope_scaling":{"rope_type":"yarn","factor":4.0})"), StatusCode::kUnimplemented,
       "'yarn' is not supported (supported: linear, llama3, default)"},
      {Minimal(R"(,"rope_scaling":{"rope_type":"llama3","factor":8.0})"),
       StatusCode::kInvalidArgument, "\"rope_scaling.low_freq_factor\" is required"},
      {Minimal(R"(,"rope_scaling":{"type":"linear"})"), StatusCode::kInvalidArgument,
       "\"rope_scaling.factor\" is required"},
      {Minimal(R"(,"rope_scaling":{"factor":2.0})"), StatusCode::kInvalidArgument,
       "\"rope_scaling.rope_type\" is required"},
      {Minimal(R"(,"rope_scaling":[1])"), StatusCode::kInvalidArgument, "\"rope_scaling\""},
  };
  for (const Bad& b : cases) {
    auto c = Parse(b.text);
    ASSERT_FALSE(c.ok()) << b.text;
    EXPECT_EQ(c.status().code(), b.code) << b.text << " -> " << c.status().ToString();
    EXPECT_THAT(c.status().message(), HasSubstr(b.key)) << b.text;
    EXPECT_THAT(c.status().message(), HasSubstr("cfg.json")) << b.text;
    EXPECT_EQ(c.status().message().find('\n'), std::string::npos) << b.text;
  }
}

TEST(ModelConfigTest, RopeInvFreqDefault) {
  ModelConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000.0f;
  // 1 / 10000^(i/8) for i = 0, 2, 4, 6, in float32.
  EXPECT_EQ(RopeInvFreq(c),
            (std::vector<float>{1.0f, 0x1.99999ap-4f, 0x1.47ae14p-7f, 0x1.0624dep-10f}));
  c.rope_scaling.type = RopeScaling::Type::kLinear;
  c.rope_scaling.factor = 2.0f;
  EXPECT_EQ(RopeInvFreq(c),
            (std::vector<float>{0x1p-1f, 0x1.99999ap-5f, 0x1.47ae14p-8f, 0x1.0624dep-11f}));
}

// Expected values: transformers' _compute_llama3_parameters evaluated in float32
// (Llama-3.1: dim 128, theta 500000, factor 8, low 1, high 4, original context 8192).
TEST(ModelConfigTest, RopeInvFreqLlama3MatchesHf) {
  auto c = Parse(kLlama3);
  ASSERT_TRUE(c.ok());
  const std::vector<float> inv = RopeInvFreq(*c);
  ASSERT_EQ(inv.size(), 64u);
  EXPECT_EQ(inv[0], 1.0f);  // high frequency: unchanged
  EXPECT_EQ(inv[1], 0x1.a11582p-1f);
  EXPECT_EQ(inv[20], 0x1.0f5386p-6f);
  EXPECT_EQ(inv[28], 0x1.a4ee4p-9f);   // last high-frequency one
  EXPECT_EQ(inv[29], 0x1.1bfa0cp-9f);  // smooth interpolation band: 29..34
  EXPECT_EQ(inv[31], 0x1.c12f3cp-11f);
  EXPECT_EQ(inv[34], 0x1.765ba4p-13f);
  EXPECT_EQ(inv[35], 0x1.90d10cp-14f);  // low frequency: divided by 8
  EXPECT_EQ(inv[40], 0x1.1f91fp-15f);
  EXPECT_EQ(inv[63], 0x1.4985fep-22f);
}

TEST(ModelConfigTest, LoadsStories260K) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models/stories260K-hf");
  auto c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Architecture::kLlama);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{2}));
  EXPECT_EQ(c->torch_dtype, DType::kF32);
}

TEST(ModelConfigTest, LoadReportsMissingFile) {
  auto c = LoadModelConfig("/nonexistent/model");
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/nonexistent/model/config.json"));
}

}  // namespace
}  // namespace llmux
