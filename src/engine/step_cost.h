// Cost attribution: splitting one engine step's duration among the sequences in it in
// proportion to their work in that step. See docs/metrics.md ("Engine time per tenant").
#pragma once

#include <span>
#include <vector>

#include "llmux/model_config.h"
#include "llmux/scheduler.h"

namespace llmux {

// The work of a sequence in a step, in floating-point operations of the forward pass:
//   work = per_token * new tokens + per_context * attended positions (+ per_sample if it samples)
// where a prefill chunk of n tokens after c computed ones attends n*c + n(n+1)/2 positions and
// a decode 1 * (c + 1). NOTE: FLOPs are what both backends' time scales with in their
// compute-bound parts (the GEMMs and the attention kernels); a decode token costs the same
// FLOPs as a prefill token, so a step of decodes that is memory-bound is split by the same
// proportions (every sequence of it pays alike), which is the fair split of a shared weight read.
struct StepCostModel {
  double per_token = 1;    // 2 * parameters of the linear layers (q, k, v, o, gate, up, down)
  double per_context = 0;  // 4 * layers * heads * head_dim (QK^T and AV per attended position)
  double per_sample = 0;   // 2 * hidden * vocab: the LM head row of a sampling sequence

  static StepCostModel ForModel(const ModelConfig& config);

  // The work of `seq` in its step.
  double Work(const ScheduledSeq& seq) const;
};

// Splits `seconds` among `seqs` in proportion to their work; the shares sum to `seconds`
// (up to rounding of doubles). Equal shares when no sequence has work.
std::vector<double> SplitStepSeconds(const StepCostModel& model,
                                     std::span<const ScheduledSeq> seqs, double seconds);

}  // namespace llmux
