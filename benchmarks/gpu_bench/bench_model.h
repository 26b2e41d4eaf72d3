// A Llama-shaped decoder with synthetic BF16 weights, driven through the Backend interface,
// for gpu_bench. Not a model implementation: no tokenizer, no sampling, fixed contexts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "llmux/backend.h"

namespace llmux::bench {

struct ModelShape {  // Llama-3-8B
  int vocab = 128256;
  int dim = 4096;
  int ffn = 14336;
  int layers = 32;
  int heads = 32;
  int kv_heads = 8;
  int head_dim = 128;
};

struct GemmCase {
  std::string name;
  int n = 0;
  int k = 0;
  bool f32_out = false;
  Tensor w;
};

class BenchModel {
 public:
  // `max_batch` decode sequences of `context` tokens each (the KV pool is sized for them).
  BenchModel(Backend* backend, ModelShape shape, int max_batch, int context);

  // Uploads weights, allocates the KV pool and activation buffers.
  Status Init();
  // One full decode step of `batch` sequences at position context - 1, logits copied to the
  // host (which waits for the step).
  void DecodeStep(int batch);
  // Makes a decode batch of `batch` sequences current (for TimeAttention).
  void BeginDecode(int batch);
  // Seconds per paged-attention call on layer 0 of the current batch (warm, averaged).
  double TimeAttention(int iters);
  // Seconds per GEMM of M = m rows against the case's weight (warm, averaged).
  double TimeGemm(const GemmCase& g, int m, int iters);

  const std::vector<GemmCase>& GemmShapes() const { return gemms_; }
  // Bytes a decode step must read at least: every weight once, plus the KV of the batch.
  double WeightBytes() const;
  double KvBytesPerStep(int batch) const;

 private:
  StatusOr<Tensor> Weight(int rows, int cols, WeightKind kind, uint64_t seed);
  ForwardBatch MakeBatch(int batch) const;

  Backend* b_;
  ModelShape s_;
  int max_batch_;
  int context_;
  int blocks_per_seq_;

  struct Layer {
    Tensor attn_norm, qkv, o, ffn_norm, gate_up, down;
  };
  Tensor embedding_, lm_head_, final_norm_, inv_freq_;
  std::vector<Layer> layers_;
  std::vector<GemmCase> gemms_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  int current_batch_ = 0;
  Tensor h_, x_, qkv_, attn_, gate_up_, act_, last_, logits_;
  std::vector<float> host_logits_;
};

}  // namespace llmux::bench
