#include "llmux/model_shapes.h"

namespace llmux {
namespace {

// clang-format off
constexpr ModelShape kShapes[] = {
    // name, like, arch, vocab, hidden, ffn, layers, heads, kv, max_pos, theta, eps, tied, llama3
    {"tiny", "a few-MB test model", Architecture::kLlama,
     512, 128, 352, 4, 4, 2, 2048, 10000.0f, 1e-5f, false, false},
    {"stories15m", "llama2.c stories15M", Architecture::kLlama,
     32000, 288, 768, 6, 6, 6, 1024, 10000.0f, 1e-5f, true, false},
    {"smollm-135m", "HuggingFaceTB/SmolLM-135M", Architecture::kLlama,
     49152, 576, 1536, 30, 9, 3, 2048, 10000.0f, 1e-5f, true, false},
    {"qwen2-0.5b", "Qwen/Qwen2-0.5B", Architecture::kQwen2,
     151936, 896, 4864, 24, 14, 2, 32768, 1000000.0f, 1e-6f, true, false},
    {"tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B", Architecture::kLlama,
     32000, 2048, 5632, 22, 32, 4, 2048, 10000.0f, 1e-5f, false, false},
    {"llama3-8b", "meta-llama/Llama-3.1-8B", Architecture::kLlama,
     128256, 4096, 14336, 32, 32, 8, 131072, 500000.0f, 1e-5f, false, true},
};
// clang-format on

}  // namespace

std::span<const ModelShape> ModelShapes() { return kShapes; }

const ModelShape* FindModelShape(std::string_view name) {
  for (const ModelShape& s : kShapes) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

ModelConfig ShapeConfig(const ModelShape& shape) {
  ModelConfig c;
  c.arch = shape.arch;
  c.vocab_size = shape.vocab_size;
  c.hidden_size = shape.hidden_size;
  c.intermediate_size = shape.intermediate_size;
  c.num_layers = shape.num_layers;
  c.num_heads = shape.num_heads;
  c.num_kv_heads = shape.num_kv_heads;
  c.head_dim = shape.hidden_size / shape.num_heads;
  c.max_position_embeddings = shape.max_position_embeddings;
  c.rms_norm_eps = shape.rms_norm_eps;
  c.rope_theta = shape.rope_theta;
  if (shape.llama3_rope_scaling) {
    c.rope_scaling.type = RopeScaling::Type::kLlama3;
    c.rope_scaling.factor = 8.0f;
    c.rope_scaling.low_freq_factor = 1.0f;
    c.rope_scaling.high_freq_factor = 4.0f;
    c.rope_scaling.original_max_position_embeddings = 8192;
  }
  c.tie_word_embeddings = shape.tie_word_embeddings;
  c.attention_bias = shape.arch == Architecture::kQwen2;
  return c;
}

std::vector<TensorSpec> ModelTensors(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t q = c.q_size();
  const int64_t kv = c.kv_size();
  const int64_t ffn = c.intermediate_size;
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, TensorInit::kNormal});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    t.push_back({p + "input_layernorm.weight", {h}, TensorInit::kNorm});
    t.push_back({p + "self_attn.q_proj.weight", {q, h}, TensorInit::kNormal});
    t.push_back({p + "self_attn.k_proj.weight", {kv, h}, TensorInit::kNormal});
    t.push_back({p + "self_attn.v_proj.weight", {kv, h}, TensorInit::kNormal});
    if (c.attention_bias) {
      t.push_back({p + "self_attn.q_proj.bias", {q}, TensorInit::kNormal});
      t.push_back({p + "self_attn.k_proj.bias", {kv}, TensorInit::kNormal});
      t.push_back({p + "self_attn.v_proj.bias", {kv}, TensorInit::kNormal});
    }
    t.push_back({p + "self_attn.o_proj.weight", {h, q}, TensorInit::kNormal});
    t.push_back({p + "post_attention_layernorm.weight", {h}, TensorInit::kNorm});
    t.push_back({p + "mlp.gate_proj.weight", {ffn, h}, TensorInit::kNormal});
    t.push_back({p + "mlp.up_proj.weight", {ffn, h}, TensorInit::kNormal});
    t.push_back({p + "mlp.down_proj.weight", {h, ffn}, TensorInit::kNormal});
  }
  t.push_back({"model.norm.weight", {h}, TensorInit::kNorm});
  if (!c.tie_word_embeddings) {
    t.push_back({"lm_head.weight", {c.vocab_size, h}, TensorInit::kNormal});
  }
  return t;
}

}  // namespace llmux
