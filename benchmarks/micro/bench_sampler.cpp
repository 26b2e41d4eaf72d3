// Sampler::Sample time for one logits row: vocab 32000 (Llama 2) and 128256 (Llama 3),
// greedy / top-p 0.9 / top-k 50, on two synthetic logit shapes:
//  - peaked: N(0, 2) background with 20 tokens 8-14 above it, like an LM mid-sentence;
//  - flat:   N(0, 1), the worst case for top-p (the nucleus holds most of the vocabulary).
// Target: top-p on 128k peaked logits under 1 ms.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "sampling/sampler.h"

namespace llmux {
namespace {

enum Mode : int64_t { kGreedy, kTopP, kTopK, kTopPLogprobs };
enum Shape : int64_t { kPeaked, kFlat };

std::vector<float> MakeLogits(int32_t vocab, Shape shape) {
  std::mt19937 gen(1234);
  std::normal_distribution<float> normal(0.0f, shape == kPeaked ? 2.0f : 1.0f);
  std::vector<float> v(vocab);
  for (float& x : v) x = normal(gen);
  if (shape == kPeaked) {
    std::uniform_int_distribution<int32_t> id(0, vocab - 1);
    for (int j = 0; j < 20; ++j) v[id(gen)] = 14.0f - 0.3f * static_cast<float>(j);
  }
  return v;
}

void BM_Sample(benchmark::State& state) {
  const auto vocab = static_cast<int32_t>(state.range(0));
  const auto mode = static_cast<Mode>(state.range(1));
  const auto shape = static_cast<Shape>(state.range(2));
  const std::vector<float> logits = MakeLogits(vocab, shape);
  SamplingParams params;
  switch (mode) {
    case kGreedy:
      params.temperature = 0.0f;
      break;
    case kTopP:
      params.top_p = 0.9f;
      break;
    case kTopK:
      params.top_k = 50;
      break;
    case kTopPLogprobs:
      params.top_p = 0.9f;
      params.logprobs = 5;
      break;
  }
  // A realistic decode: a 200-token prompt and 50 outputs, with a repetition penalty.
  params.repetition_penalty = 1.1f;
  std::vector<int32_t> prompt(200);
  std::vector<int32_t> output(50);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(i * 37 % vocab);
  for (size_t i = 0; i < output.size(); ++i) output[i] = static_cast<int32_t>(i * 101 % vocab);

  Sampler sampler(vocab, {2});
  uint64_t seed = 0;
  for (auto _ : state) {
    SampledToken t = sampler.Sample(logits, params, {prompt, output, seed++});
    benchmark::DoNotOptimize(t);
  }
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"vocab", "mode", "flat"});
  for (int64_t vocab : {32000, 128256}) {
    for (int64_t mode : {kGreedy, kTopP, kTopK, kTopPLogprobs}) {
      for (int64_t shape : {kPeaked, kFlat}) b->Args({vocab, mode, shape});
    }
  }
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_Sample)->Apply(Args);

}  // namespace
}  // namespace llmux

BENCHMARK_MAIN();
