// A Llama-family model's configuration, parsed from an HF config.json.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/dtype.h"
#include "llmux/status.h"

namespace llmux {

enum class Architecture { kLlama, kMistral, kQwen2 };

std::string_view ArchitectureName(Architecture a);  // "LlamaForCausalLM", ...

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  int original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  int vocab_size = 0;
  int hidden_size = 0;        // dim
  int intermediate_size = 0;  // FFN hidden
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // hidden_size / num_heads unless config.json says otherwise
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projection biases (Qwen2: true)
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  DType torch_dtype = DType::kF32;  // as declared; the tensors' own dtypes are authoritative

  int q_size() const { return num_heads * head_dim; }
  int kv_size() const { return num_kv_heads * head_dim; }
};

// Parses config.json text. `source` names the file in error messages. Returns
// InvalidArgument for missing/inconsistent fields and Unimplemented for unsupported
// architectures, each a one-line message naming the field and what is supported.
StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);

// Reads DIR/config.json. NotFound when the file is missing.
StatusOr<ModelConfig> LoadModelConfig(const std::filesystem::path& dir);

// The inverse frequencies RoPE uses for one head: [head_dim / 2], with rope_scaling applied.
std::vector<float> RopeInvFreq(const ModelConfig& config);

}  // namespace llmux
