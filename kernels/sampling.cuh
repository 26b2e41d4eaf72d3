// Token sampling on the device: greedy, temperature, top-k, top-p, per-row seeds.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace llmux::kernels {

// One row's sampling parameters. temperature <= 0 or top_k == 1: greedy (argmax, lowest id
// on ties). top_k <= 0 or >= vocab: no top-k cut. top_p <= 0 or >= 1: no top-p cut.
struct SamplingRow {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint32_t reserved = 0;
  uint64_t seed = 0;
};

// The definition the kernel implements (the tests' reference follows it):
//   w_i = exp((l_i - max_j l_j) / temperature).
//   top-k keeps the tokens whose logit is >= the k-th largest logit (ties at the cut are kept).
//   top-p then keeps the tokens whose logit is >= the largest threshold t for which the kept
//   mass sum_{l_i >= t} w_i is still >= top_p * (mass kept by top-k).
//   u = SamplingUniform(seed) * (kept mass); the token is the first id, in id order, whose
//   running kept mass exceeds u.
// logits: [rows, vocab] f32, row stride in elements; params: [rows] (device); out: [rows].
cudaError_t LaunchSampling(const float* logits, int64_t stride, const SamplingRow* params,
                           int32_t* out, int rows, int vocab, cudaStream_t stream);

// splitmix64(seed) mapped to [0, 1) with 24 bits (what the kernel draws).
float SamplingUniform(uint64_t seed);

}  // namespace llmux::kernels
