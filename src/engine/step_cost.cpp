#include "engine/step_cost.h"

#include <algorithm>
#include <cmath>

namespace llmux {

StepShape StepShape::Of(const ScheduledSeq& seq) {
  const double n = seq.num_new_tokens;
  const double c = seq.num_computed_tokens;
  StepShape s;
  (seq.num_new_tokens == 1 ? s.decode_tokens : s.prefill_tokens) = n;
  s.attended = n * c + n * (n + 1) / 2;
  s.sampled = seq.samples ? 1 : 0;
  return s;
}

StepShape StepShape::Of(std::span<const ScheduledSeq> seqs) {
  StepShape total;
  for (const ScheduledSeq& seq : seqs) {
    const StepShape s = Of(seq);
    total.prefill_tokens += s.prefill_tokens;
    total.decode_tokens += s.decode_tokens;
    total.attended += s.attended;
    total.sampled += s.sampled;
  }
  return total;
}

StepCostModel::Flops StepCostModel::FlopsOf(const ModelConfig& c) {
  const double h = c.hidden_size;
  const double q = static_cast<double>(c.num_heads) * c.head_dim;
  const double kv = static_cast<double>(c.num_kv_heads) * c.head_dim;
  const double ffn = c.intermediate_size;
  Flops f;
  // Per layer: q and o projections (h x q each), k and v (h x kv each), gate/up/down (h x ffn).
  f.per_token = 2.0 * c.num_layers * (2 * h * q + 2 * h * kv + 3 * h * ffn);
  f.per_context = 4.0 * c.num_layers * q;
  f.per_sample = 2.0 * h * c.vocab_size;
  if (!(f.per_token > 0)) f.per_token = 1;  // a degenerate config: weigh by tokens
  f.per_context = std::max(f.per_context, 0.0);
  f.per_sample = std::max(f.per_sample, 0.0);
  return f;
}

StepCostModel::StepCostModel(const ModelConfig& config, std::optional<StepCostConstants> fixed)
    : flops_(FlopsOf(config)), fixed_(fixed.has_value()) {
  if (fixed) {
    const StepCostConstants& k = *fixed;
    auto cost = [](double v) { return std::isfinite(v) ? std::max(v, 0.0) : 0.0; };
    constants_ = {cost(k.step_s), cost(k.prefill_token_s), cost(k.decode_token_s),
                  cost(k.context_s), cost(k.sample_s)};
  }
}

StepCostModel::Vec StepCostModel::Features(const StepShape& s) {
  return {1.0, s.prefill_tokens, s.decode_tokens, s.attended, s.sampled};
}

double StepCostModel::Weight(const StepShape& s, double step_part) const {
  if (!fixed_ && observed_steps_ == 0) {
    // No measurement yet: the FLOPs of the shape (the prior's proportions).
    return flops_.per_token * (s.prefill_tokens + s.decode_tokens) +
           flops_.per_context * s.attended + flops_.per_sample * s.sampled;
  }
  const StepCostConstants& k = constants_;
  return k.step_s * step_part + k.prefill_token_s * s.prefill_tokens +
         k.decode_token_s * s.decode_tokens + k.context_s * s.attended + k.sample_s * s.sampled;
}

std::vector<double> StepCostModel::Split(std::span<const ScheduledSeq> seqs,
                                         double seconds) const {
  std::vector<double> shares(seqs.size(), 0);
  if (seqs.empty()) return shares;
  const double step_part = 1.0 / static_cast<double>(seqs.size());
  double total = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    shares[i] = Weight(StepShape::Of(seqs[i]), step_part);
    total += shares[i];
  }
  for (double& s : shares) {
    s = total > 0 ? seconds * (s / total) : seconds * step_part;
  }
  return shares;
}

namespace {

// Solves A x = b for a symmetric positive definite A (Cholesky, A = L L^T). A is well
// conditioned here (a positive multiple of the identity plus a Gram matrix), so no pivoting.
template <size_t N>
std::array<double, N> SolveSpd(std::array<std::array<double, N>, N> a, std::array<double, N> b) {
  for (size_t j = 0; j < N; ++j) {
    double d = a[j][j];
    for (size_t k = 0; k < j; ++k) d -= a[j][k] * a[j][k];
    a[j][j] = std::sqrt(std::max(d, 1e-300));
    for (size_t i = j + 1; i < N; ++i) {
      double v = a[i][j];
      for (size_t k = 0; k < j; ++k) v -= a[i][k] * a[j][k];
      a[i][j] = v / a[j][j];
    }
  }
  for (size_t i = 0; i < N; ++i) {  // L y = b
    for (size_t k = 0; k < i; ++k) b[i] -= a[i][k] * b[k];
    b[i] /= a[i][i];
  }
  for (size_t i = N; i-- > 0;) {  // L^T x = y
    for (size_t k = i + 1; k < N; ++k) b[i] -= a[k][i] * b[k];
    b[i] /= a[i][i];
  }
  return b;
}

}  // namespace

void StepCostModel::Observe(std::span<const ScheduledSeq> seqs, double seconds) {
  if (fixed_ || seqs.empty() || !(seconds > 0) || !std::isfinite(seconds)) return;
  const StepShape shape = StepShape::Of(seqs);
  if (observed_steps_ == 0) {
    // The prior: the FLOPs proportions at the rate the first step ran (seconds per FLOP) and
    // no per-step constant. Each coefficient is fitted as a multiple u_j of its scale: its
    // prior value, the per-step one's the first step's duration.
    const double flops = flops_.per_token * (shape.prefill_tokens + shape.decode_tokens) +
                         flops_.per_context * shape.attended + flops_.per_sample * shape.sampled;
    if (!(flops > 0)) return;  // no tokens in the step: nothing to scale the prior by
    const double rate = seconds / flops;
    scale_ = {seconds, flops_.per_token * rate, flops_.per_token * rate,
              flops_.per_context * rate, flops_.per_sample * rate};
    floor_ = 1e-9 * seconds * seconds;
  }
  ++observed_steps_;
  Vec z = Features(shape);
  for (int j = 0; j < kTerms; ++j) z[j] *= scale_[j];
  for (int i = 0; i < kTerms; ++i) {
    for (int j = 0; j < kTerms; ++j) data_a_[i][j] = kForgetting * data_a_[i][j] + z[i] * z[j];
    data_b_[i] = kForgetting * data_b_[i] + z[i] * seconds;
  }
  data_n_ = kForgetting * data_n_ + 1;
  // Prior mean u0 = (0, 1, 1, 1, 1): no per-step constant, the FLOPs proportions. Its weight on
  // u_j is kPriorSteps average steps' worth of feature j (the mean of z_j^2 over the steps
  // fitted), so the prior counts like kPriorSteps more steps whatever the feature's scale: it
  // decides while the data says nothing (a feature never seen keeps its prior value, by the
  // floor) and fades as steps accumulate.
  std::array<Vec, kTerms> a = data_a_;
  Vec b = data_b_;
  for (int j = 0; j < kTerms; ++j) {
    const double weight = kPriorSteps * data_a_[j][j] / data_n_ + floor_;
    a[j][j] += weight;
    if (j > 0) b[j] += weight;
  }
  const Vec u = SolveSpd<kTerms>(a, b);
  // NOTE: a cost is never negative; a coefficient the data pulls below 0 (features that move
  // together, e.g. decodes and sampled rows) is used as 0.
  auto cost = [&](int j) { return std::max(scale_[j] * u[j], 0.0); };
  constants_ = {cost(0), cost(1), cost(2), cost(3), cost(4)};
}

}  // namespace llmux
