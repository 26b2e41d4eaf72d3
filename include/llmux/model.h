// A loaded Llama-family model bound to a backend: weights + the forward pass.
#pragma once

#include <filesystem>
#include <memory>
#include <span>

#include "llmux/backend.h"
#include "llmux/forward_batch.h"
#include "llmux/model_config.h"
#include "llmux/status.h"

namespace llmux {

struct ModelLoadOptions {
  // Quantize the projection and embedding matrices to Q8_0 at load (dtype.h); norm weights and
  // biases stay F32, and so does a matrix whose rows are not a multiple of 32 long.
  bool quantize_q8_0 = false;
};

class Model {
 public:
  virtual ~Model() = default;

  // `dir` is a Hugging Face model folder, or a .gguf file of the Llama architecture (its
  // metadata stands for config.json; F32/F16/BF16/Q8_0 tensors; src/model/gguf_llama.h).
  // Loads config.json and the safetensors weights of `dir` onto `backend` (not owned; must
  // outlive the model), checking every tensor the architecture needs by name, shape and dtype.
  // `max_batch_tokens` sizes the activation buffers (the largest ForwardBatch::num_tokens).
  static StatusOr<std::unique_ptr<Model>> Load(const std::filesystem::path& dir,
                                               Backend* backend, int max_batch_tokens,
                                               const ModelLoadOptions& options = {});

  // Like Load, but only config.json is read: every weight the architecture needs is generated
  // (BF16, seeded by `seed`; src/model/synthetic_weights.h). For benchmarks of a model's
  // shape (time does not depend on the values) without writing or reading its checkpoint.
  static StatusOr<std::unique_ptr<Model>> LoadSynthetic(const std::filesystem::path& dir,
                                                        Backend* backend, int max_batch_tokens,
                                                        uint64_t seed);

  virtual const ModelConfig& config() const = 0;

  // Runs one step. Returns logits [batch.logits_indices.size(), vocab_size] (F32, host memory
  // owned by the model, valid until the next call). InvalidArgument on a malformed batch.
  // The KV cache must have been initialised on the backend (Backend::InitKvCache).
  virtual StatusOr<std::span<const float>> Forward(const ForwardBatch& batch) = 0;

  // Runs one step like Forward but leaves the logits in backend memory: a tensor
  // [batch.logits_indices.size(), vocab_size] F32 owned by the model, valid until the next call,
  // for Backend::SampleTokens (which may overwrite it). No sync point: a device error of the
  // step is reported by SampleTokens (rows == 0: by the next step's BeginBatch).
  virtual StatusOr<Tensor> ForwardLogits(const ForwardBatch& batch) = 0;
};

}  // namespace llmux
