// Default scheduling policies: weighted VTC fair share, victim order, prefill chunking.
#include <algorithm>
#include <limits>
#include <vector>

#include "llmux/scheduler.h"

namespace llmux {
namespace {

class VtcFairShare final : public FairSharePolicy {
 public:
  VtcFairShare(double prefill_weight, double decode_weight)
      : prefill_weight_(prefill_weight), decode_weight_(decode_weight) {}

  void OnActivate(TenantId t, std::span<const TenantId> active_peers) override {
    Grow(t);
    // NOTE: lifting to the active minimum means an idle tenant banks no credit: it cannot
    // return and monopolise the lane with service it did not ask for while away.
    double lowest = std::numeric_limits<double>::infinity();
    for (TenantId p : active_peers) lowest = std::min(lowest, Counter(p));
    if (lowest != std::numeric_limits<double>::infinity()) {
      counters_[t] = std::max(counters_[t], lowest);
    }
  }

  void Charge(TenantId t, double weight, int64_t prefill_tokens, int64_t decode_tokens) override {
    Grow(t);
    counters_[t] += (prefill_weight_ * static_cast<double>(prefill_tokens) +
                     decode_weight_ * static_cast<double>(decode_tokens)) /
                    weight;
  }

  double Counter(TenantId t) const override {
    return t < static_cast<TenantId>(counters_.size()) ? counters_[t] : 0.0;
  }

 private:
  void Grow(TenantId t) {
    if (t >= static_cast<TenantId>(counters_.size())) counters_.resize(t + 1, 0.0);
  }

  const double prefill_weight_;
  const double decode_weight_;
  std::vector<double> counters_;  // [num_tenants]
};

class DefaultVictimPolicy final : public VictimPolicy {
 public:
  bool PreemptFirst(const VictimCandidate& a, const VictimCandidate& b) const override {
    if (a.lane != b.lane) return a.lane > b.lane;
    if (a.fair_share != b.fair_share) return a.fair_share > b.fair_share;
    if (a.num_computed_tokens != b.num_computed_tokens) {
      return a.num_computed_tokens < b.num_computed_tokens;
    }
    return a.admit_order > b.admit_order;
  }
};

class DefaultChunkPolicy final : public ChunkPolicy {
 public:
  explicit DefaultChunkPolicy(int32_t long_prefill_chunk) : limit_(long_prefill_chunk) {}
  int32_t ChunkTokens(int32_t remaining, int32_t budget_left) const override {
    int32_t n = std::min(remaining, budget_left);
    if (limit_ > 0) n = std::min(n, limit_);
    return std::max(n, 0);
  }

 private:
  const int32_t limit_;
};

}  // namespace

std::unique_ptr<FairSharePolicy> MakeVtcFairShare(double prefill_weight, double decode_weight) {
  return std::make_unique<VtcFairShare>(prefill_weight, decode_weight);
}

std::unique_ptr<VictimPolicy> MakeDefaultVictimPolicy() {
  return std::make_unique<DefaultVictimPolicy>();
}

std::unique_ptr<ChunkPolicy> MakeDefaultChunkPolicy(int32_t long_prefill_chunk) {
  return std::make_unique<DefaultChunkPolicy>(long_prefill_chunk);
}

}  // namespace llmux
