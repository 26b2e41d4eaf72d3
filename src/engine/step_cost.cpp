#include "engine/step_cost.h"

namespace llmux {

StepCostModel StepCostModel::ForModel(const ModelConfig& c) {
  const double h = c.hidden_size;
  const double q = static_cast<double>(c.num_heads) * c.head_dim;
  const double kv = static_cast<double>(c.num_kv_heads) * c.head_dim;
  const double ffn = c.intermediate_size;
  StepCostModel m;
  // Per layer: q and o projections (h x q each), k and v (h x kv each), gate/up/down (h x ffn).
  m.per_token = 2.0 * c.num_layers * (2 * h * q + 2 * h * kv + 3 * h * ffn);
  m.per_context = 4.0 * c.num_layers * q;
  m.per_sample = 2.0 * h * c.vocab_size;
  if (m.per_token <= 0) m.per_token = 1;  // a degenerate config: split by tokens
  return m;
}

double StepCostModel::Work(const ScheduledSeq& seq) const {
  const double n = seq.num_new_tokens;
  const double c = seq.num_computed_tokens;
  const double attended = n * c + n * (n + 1) / 2;
  return per_token * n + per_context * attended + (seq.samples ? per_sample : 0);
}

std::vector<double> SplitStepSeconds(const StepCostModel& model,
                                     std::span<const ScheduledSeq> seqs, double seconds) {
  std::vector<double> shares(seqs.size(), 0);
  if (seqs.empty()) return shares;
  double total = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    shares[i] = model.Work(seqs[i]);
    total += shares[i];
  }
  for (double& s : shares) {
    s = total > 0 ? seconds * (s / total) : seconds / static_cast<double>(seqs.size());
  }
  return shares;
}

}  // namespace llmux
