// The token sampler: one F32 logits row of one sequence -> the next token (and logprobs).
//
// Order of application (docs/sampling.md): logit_bias -> min_tokens suppression ->
// repetition/presence/frequency penalties -> logprobs -> temperature -> top-k -> top-p ->
// min-p -> inverse-CDF draw with the counter-based RNG keyed by (seed, output index).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "llmux/sampling.h"

namespace llmux {

// What the sampler needs to know about the sequence being sampled. Non-owning; valid for
// the duration of the call.
struct SequenceView {
  std::span<const int32_t> prompt_token_ids;
  std::span<const int32_t> output_token_ids;  // generated so far (this step's not included)
  // The effective seed: SamplingParams::seed when given, else the one the engine drew at
  // submit. SamplingParams::seed itself is not read by the sampler.
  uint64_t seed = 0;
};

// Not thread-safe: holds scratch buffers sized to the vocabulary so that a step allocates
// nothing. Owned and used by one engine thread; one instance serves every sequence.
class Sampler {
 public:
  // `eos_token_ids` are the model's EOS ids (suppressed by min_tokens unless ignore_eos).
  // Every id must be in [0, vocab_size).
  Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids);

  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  int32_t vocab_size() const { return vocab_size_; }

  // Samples the next token of `seq`. `logits` is [vocab_size]. `params` must have passed
  // Validate() for this vocabulary and every token id in `seq` must be in [0, vocab_size)
  // (both are checked invariants). The result depends only on the arguments: the draw for
  // output index i uses UniformAt(seq.seed, i) with i = seq.output_token_ids.size().
  // NaN logits count as -inf. When every logit is -inf after processing (e.g. min_tokens
  // suppressed the only finite ones), the processing is dropped and the raw argmax returned.
  // `allowed`, when not empty, is a packed bitmask ([ceil(vocab_size / 32)] words, bit id%32
  // of word id/32; the layout GrammarMatcher fills and a device kernel can read): tokens
  // whose bit is clear get -inf before any other processing, greedy included, and stay
  // excluded even when everything else was suppressed.
  SampledToken Sample(std::span<const float> logits, const SamplingParams& params,
                      const SequenceView& seq, std::span<const uint32_t> allowed = {});

  // The logits-processing stage of Sample, in place on `logits` ([vocab_size]): logit_bias,
  // then min_tokens suppression (-inf on EOS unless ignore_eos, and on stop_token_ids, while
  // fewer than min_tokens outputs exist), then the repetition penalty (tokens in prompt or
  // output, each once), the frequency penalty and the presence penalty (output tokens).
  // Exposed for tests.
  void ProcessLogits(std::span<float> logits, const SamplingParams& params,
                     const SequenceView& seq);

 private:
  // Fills top_ with the min(k, vocab) largest entries of work_ by (value desc, id asc).
  void SelectTopK(int32_t k);
  // Inverse-CDF draw at temperature `temperature` over the whole vocabulary filtered by
  // top_p and min_p (no top-k); `argmax` is the best token of work_. Returns the chosen token.
  int32_t DrawFromVocab(float temperature, float top_p, float min_p, double u, int32_t argmax);
  // Same over the candidates in top_ (already sorted by logit desc, id asc).
  int32_t DrawFromTopK(float temperature, float top_p, float min_p, double u);
  struct Crossing {
    int32_t token;  // the first token, in (logit desc, id asc) order, whose ...
    double prefix;  // ... inclusive prefix weight (sum of exps_ up to it) crosses the target
  };
  // Over exps_/keys_ of the whole vocabulary: the first token whose inclusive prefix weight
  // is >= target (inclusive) or > target (!inclusive); the last token with weight when
  // rounding keeps the total short of it. A radix select: O(vocab), no full sort.
  Crossing FindCrossing(double target, bool inclusive);
  void FillLogprobs(const SamplingParams& params, SampledToken& out);
  // work_[id] = -inf where bit id of `allowed` is clear.
  void ApplyAllowed(std::span<const uint32_t> allowed);

  int32_t vocab_size_;
  std::vector<int32_t> eos_token_ids_;

  std::vector<float> work_;     // [vocab] processed logits of the current call
  std::vector<float> exps_;     // [vocab] exp((work_ - max) / temperature)
  std::vector<uint32_t> keys_;  // [vocab] DescendingKey(work_): ascending = logit descending
  std::vector<double> hist_;    // [2048] weight per radix bucket
  std::vector<int32_t> cand_;   // token ids in the current radix bucket
  std::vector<int32_t> next_;
  std::vector<int32_t> top_;     // top-k candidates, sorted
  std::vector<uint32_t> stamp_;  // [vocab] generation marks for the penalty passes
  std::vector<int32_t> counts_;  // [vocab] output counts, valid where stamp_ is current
  uint32_t generation_ = 0;
};

}  // namespace llmux
