// Cost attribution: splitting one engine step's measured duration among the sequences in it in
// proportion to their work in that step, by a cost model whose constants are fitted online to
// the backend's measured step durations. See docs/billing.md ("Engine time: the cost model").
//
// Thread ownership: the engine thread owns its StepCostModel (Split and Observe run there);
// other threads see its constants only through the engine's stats snapshot.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "llmux/engine.h"
#include "llmux/model_config.h"
#include "llmux/scheduler.h"

namespace llmux {

// What a step is made of, the features of the fit. A sequence with one new token is a decode
// (its cost shape: one row through the layers); a longer chunk is prefill. A chunk of n new
// tokens after c computed ones attends n*c + n(n+1)/2 positions (a decode: c + 1).
struct StepShape {
  double prefill_tokens = 0;
  double decode_tokens = 0;
  double attended = 0;  // attention positions, all sequences
  double sampled = 0;   // rows through the LM head (sequences that sample)

  static StepShape Of(const ScheduledSeq& seq);
  static StepShape Of(std::span<const ScheduledSeq> seqs);
};

// step seconds ~= step_s + prefill_token_s * prefill tokens + decode_token_s * decode tokens
//                 + context_s * attended positions + sample_s * sampled rows
// Fitted by ridge regression toward a prior derived from the model's FLOPs (StepCostModel),
// or fixed (EngineConfig::step_cost).
class StepCostModel {
 public:
  // The number of parameters: the per-step constant and the four per-unit costs.
  static constexpr int kTerms = 5;
  // How many (average) steps of evidence the prior is worth, per coefficient.
  static constexpr double kPriorSteps = 1;
  // Each step's evidence is multiplied by this at every later step (older steps fade with a
  // half-life of ~700 steps), so the fit follows a backend whose speed drifts.
  static constexpr double kForgetting = 0.999;

  // Fits online, with the prior of `config`'s FLOPs. `fixed`: use these constants as they are
  // and never fit (tests, or measured constants given by an operator).
  StepCostModel(const ModelConfig& config, std::optional<StepCostConstants> fixed);

  // Splits `seconds` (the step's measured busy time) among `seqs`: each sequence's weight is
  // its own terms (prefill/decode tokens, attended positions, sampled row at the current
  // constants) plus an equal part of the per-step constant; the shares are seconds times weight
  // over total weight, so they sum to `seconds` (up to rounding of doubles). Equal shares when
  // no sequence has weight. Call before Observe for the same step: a step is split by the
  // constants fitted on the steps before it.
  std::vector<double> Split(std::span<const ScheduledSeq> seqs, double seconds) const;

  // Adds one measured step to the fit and refits. The first step of a non-fixed model also
  // sets the prior's scale (see docs/billing.md). Ignores empty steps and seconds <= 0.
  void Observe(std::span<const ScheduledSeq> seqs, double seconds);

  // The constants Split uses now; all 0 before the first step of a fitted model (Split then
  // weighs by the FLOPs of the shape).
  const StepCostConstants& constants() const { return constants_; }
  bool fixed() const { return fixed_; }
  int64_t observed_steps() const { return observed_steps_; }

  // The FLOPs of the shape's forward pass per unit (the prior's proportions):
  //   per_token   = 2 * layers * (2*hidden*q + 2*hidden*kv + 3*hidden*ffn)  (linear layers)
  //   per_context = 4 * layers * q                           (QK^T and AV per attended position)
  //   per_sample  = 2 * hidden * vocab                       (the LM head row)
  struct Flops {
    double per_token = 1;
    double per_context = 0;
    double per_sample = 0;
  };
  static Flops FlopsOf(const ModelConfig& config);

 private:
  using Vec = std::array<double, kTerms>;
  static Vec Features(const StepShape& shape);
  double Weight(const StepShape& shape, double step_part) const;

  const Flops flops_;
  const bool fixed_;
  StepCostConstants constants_;
  int64_t observed_steps_ = 0;
  // The fit, in units of the prior's scale: coefficient j = scale_[j] * u_j, where u solves
  // (P + data_a_) u = P u0 + data_b_, P the prior's diagonal weights (Observe).
  Vec scale_{};
  double floor_ = 0;                 // the least prior weight (a feature not seen yet)
  std::array<Vec, kTerms> data_a_{};  // sum over steps of z z^T (faded), z = features * scale_
  Vec data_b_{};                     // sum over steps of z * seconds (faded)
  double data_n_ = 0;                // the number of steps (faded)
};

}  // namespace llmux
