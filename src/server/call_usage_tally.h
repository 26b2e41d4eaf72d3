// The usage of one call's choices as their engine events arrive, for settling the call's
// admission (quota reservations, in-flight leases) with what it really used.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "llmux/admission.h"
#include "llmux/engine.h"
#include "llmux/tenant_policy.h"
#include "llmux/usage_ledger.h"

namespace llmux::server {

// Thread-safe: Observe on the engine thread (the sink), Total on whichever thread records.
class CallUsageTally {
 public:
  CallUsageTally(size_t num_choices, Prices prices) : prices_(prices), choices_(num_choices) {}

  // Any event of choice `i` (its counts are cumulative).
  void Observe(size_t i, const EngineOutput& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (i >= choices_.size()) return;
    choices_[i] = Choice{out.prompt_tokens, out.cached_tokens, out.completion_tokens};
  }

  // Tokens (prompt + completion) and cost over every choice seen so far, priced as the ledger
  // prices them.
  AdmissionUsage Total() {
    std::lock_guard<std::mutex> lock(mutex_);
    AdmissionUsage u;
    for (const Choice& c : choices_) {
      u.tokens += c.prompt + c.completion;
      u.cost_nano += CostNano(prices_, c.prompt, c.cached, c.completion);
    }
    return u;
  }

 private:
  struct Choice {
    int64_t prompt = 0;
    int64_t cached = 0;
    int64_t completion = 0;
  };
  const Prices prices_;
  std::mutex mutex_;
  std::vector<Choice> choices_;  // Guarded by mutex_
};

}  // namespace llmux::server
