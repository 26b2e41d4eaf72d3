// The usage of one call's choices as their engine events arrive, for settling the call's
// admission (quota counters, in-flight leases) with what it really used. Counted as the usage
// ledger bills the call (CallAccounting): each prompt once (from its first started choice),
// every choice's completion tokens, the cost over the totals.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "llmux/admission.h"
#include "llmux/engine.h"
#include "llmux/tenant_policy.h"
#include "llmux/thread_annotations.h"
#include "llmux/usage_ledger.h"

namespace llmux::server {

// Thread-safe: Observe on the engine thread (the sink), Total on whichever thread records.
class CallUsageTally {
 public:
  // Choice i belongs to prompt i / n.
  CallUsageTally(size_t num_choices, int n, Prices prices)
      : n_(static_cast<size_t>(std::max(1, n))), prices_(prices), choices_(num_choices) {}

  // Any event of choice `i`; only final events carry the counts that are billed.
  void Observe(size_t i, const EngineOutput& out) {
    if (!out.finished) return;
    MutexLock lock(mutex_);
    if (i >= choices_.size()) return;
    choices_[i] = Choice{out.started, out.prompt_tokens, out.cached_tokens, out.completion_tokens};
  }

  // Tokens (prompt + completion) and cost of the choices finished so far.
  AdmissionUsage Total() {
    MutexLock lock(mutex_);
    int64_t prompt = 0, cached = 0, completion = 0;
    for (size_t p = 0; p * n_ < choices_.size(); ++p) {
      for (size_t k = p * n_; k < std::min(choices_.size(), (p + 1) * n_); ++k) {
        if (!choices_[k].started) continue;
        prompt += choices_[k].prompt;
        cached += choices_[k].cached;
        break;
      }
    }
    for (const Choice& c : choices_) completion += c.completion;
    return AdmissionUsage{prompt + completion, CostNano(prices_, prompt, cached, completion)};
  }

 private:
  struct Choice {
    bool started = false;
    int64_t prompt = 0;
    int64_t cached = 0;
    int64_t completion = 0;
  };
  const size_t n_;
  const Prices prices_;
  Mutex mutex_;
  std::vector<Choice> choices_ GUARDED_BY(mutex_);
};

}  // namespace llmux::server
