// Generates a complete HF model directory with deterministic random weights: the library
// behind `llmux make-model`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "llmux/dtype.h"
#include "llmux/model_config.h"
#include "llmux/status.h"

namespace llmux {

struct MakeModelOptions {
  std::string shape;           // a ModelShapes() name
  DType dtype = DType::kBF16;  // F32, F16 or BF16
  uint64_t seed = 0;
  std::filesystem::path out_dir;  // created when missing; our files in it are replaced
  // Weights above this size are split into model-0000K-of-0000N.safetensors shards plus
  // model.safetensors.index.json (HF's save_pretrained default is 5 GB).
  uint64_t max_shard_bytes = 5'000'000'000ull;
  int threads = 0;  // weight generation threads; 0 = hardware concurrency (at most 16)
};

struct MakeModelResult {
  ModelConfig config;
  uint64_t weight_bytes = 0;       // tensor data, all shards
  std::vector<std::string> files;  // written, relative to out_dir
};

// Writes config.json, tokenizer.json, tokenizer_config.json and the weights. The output is a
// pure function of (shape, dtype, seed, max_shard_bytes): thread count and machine do not
// change a byte. InvalidArgument for an unknown shape or dtype; Internal on I/O errors.
//
// Weights stream to disk chunk by chunk: memory use is about threads x 8 MiB whatever the
// model size.
StatusOr<MakeModelResult> MakeModel(const MakeModelOptions& options);

struct ModelShape;

// The config a generated model of SHAPE has (special token ids included), and its
// config.json text.
ModelConfig MakeModelConfig(const ModelShape& shape, DType dtype);
std::string MakeModelConfigJson(const ModelShape& shape, DType dtype, uint64_t seed);

// The deterministic value of element INDEX of the tensor named NAME (before dtype rounding):
// mean 0, standard deviation 0.02, bounded by +-0.0693; RMSNorm weights add 1.
float MakeModelWeight(uint64_t seed, std::string_view name, bool norm, uint64_t index);

}  // namespace llmux
