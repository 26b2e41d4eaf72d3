// Named model shapes for `llmux make-model`: the dimensions of real Llama-family models,
// and the HF tensor list such a model has.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/model_config.h"

namespace llmux {

struct ModelShape {
  std::string_view name;
  std::string_view like;  // the real model it copies the dimensions of
  Architecture arch = Architecture::kLlama;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int max_position_embeddings = 0;
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  bool llama3_rope_scaling = false;  // factor 8, low 1, high 4, original 8192
};

// All shapes, smallest first.
std::span<const ModelShape> ModelShapes();
// nullptr when NAME is not a shape.
const ModelShape* FindModelShape(std::string_view name);

// The ModelConfig a generated model of SHAPE declares (special token ids excluded).
ModelConfig ShapeConfig(const ModelShape& shape);

enum class TensorInit {
  kNormal,  // N(0, 0.02)-like, as HF's initializer_range
  kNorm,    // RMSNorm weight: 1 + N(0, 0.02)-like
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  TensorInit init = TensorInit::kNormal;

  uint64_t numel() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
  }
};

// The tensors of CONFIG's model in HF names and shapes, in file order: embeddings, layers,
// final norm, then lm_head when untied. Weights are [out_features, in_features].
std::vector<TensorSpec> ModelTensors(const ModelConfig& config);

}  // namespace llmux
