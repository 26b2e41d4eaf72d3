// A model-free engine loop for scheduler tests: Schedule, check the plan against what the
// driver knows of each request, "sample" a deterministic token, Update.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmux/scheduler.h"

namespace llmux::testing {

// A scheduler made from `config`; the test fails (and gets null) if Create refuses it.
inline std::unique_ptr<Scheduler> MakeScheduler(const SchedulerConfig& config) {
  auto s = Scheduler::Create(config);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Limits that put a tenant in `lane` with an in-flight token budget (0: none).
inline TenantLimits InLane(int32_t lane, int64_t max_inflight_tokens = 0) {
  TenantLimits l;
  l.lane = lane;
  l.max_inflight_tokens = max_inflight_tokens;
  return l;
}

// Token sampled for request `id` as its n-th output (never collides with prompt tokens < 10^6).
inline int32_t FakeToken(uint64_t id, int32_t n) {
  return 1000000 + static_cast<int32_t>(id % 1000) * 1000 + n;
}

inline std::vector<int32_t> Iota(int32_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

class Driver {
 public:
  Driver(Scheduler* sched, int32_t block_size) : sched_(sched), block_size_(block_size) {}

  Status Submit(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt,
                int32_t max_new, int64_t arrival = -1) {
    SchedRequest r{id, tenant, prompt, max_new, arrival < 0 ? step_ : arrival};
    Status st = sched_->Submit(std::move(r));
    if (st.ok()) known_[id] = std::move(prompt);
    return st;
  }
  // As Submit, with a per-request lane (SchedRequest::lane).
  Status SubmitInLane(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt,
                      int32_t max_new, int32_t lane) {
    SchedRequest r{id, tenant, prompt, max_new, step_};
    r.lane = lane;
    Status st = sched_->Submit(std::move(r));
    if (st.ok()) known_[id] = std::move(prompt);
    return st;
  }
  // The engine stops `id` (EOS) when it samples its n-th output token (1-based).
  void StopAt(uint64_t id, int32_t n) { stop_at_[id] = n; }
  void Abort(uint64_t id) {
    if (sched_->Abort(id)) known_.erase(id);
  }

  // Runs one step; checks every scheduled chunk's tokens against the request's known tokens
  // (prompt + everything sampled so far) and that its block table covers the step.
  SchedulerOutput Step() {
    SchedulerOutput out = sched_->Schedule(step_);
    std::vector<SampleResult> results;
    for (const ScheduledSeq& s : out.seqs) {
      auto it = known_.find(s.id);
      EXPECT_NE(it, known_.end()) << "unknown id " << s.id << " at step " << step_;
      if (it == known_.end()) continue;
      const std::vector<int32_t>& toks = it->second;
      EXPECT_EQ(s.samples, s.num_computed_tokens + s.num_new_tokens ==
                               static_cast<int32_t>(toks.size()))
          << "id " << s.id << " at step " << step_;
      for (int32_t i = 0; i < s.num_new_tokens; ++i) {
        EXPECT_EQ(s.new_token_ids[i], toks[s.num_computed_tokens + i])
            << "id " << s.id << " token " << i << " at step " << step_;
      }
      EXPECT_GE(static_cast<int64_t>(s.block_table.size()) * block_size_,
                s.num_computed_tokens + s.num_new_tokens)
          << "id " << s.id << " at step " << step_;
      SampleResult r{s.id, kNoToken, false};
      if (s.samples) {
        const int32_t n = outputs_[s.id];
        r.token = FakeToken(s.id, n);
        auto st = stop_at_.find(s.id);
        r.finished = st != stop_at_.end() && st->second == n + 1;
      }
      results.push_back(r);
    }
    UpdateResult upd = sched_->Update(out, results);
    for (const SampleResult& r : results) {
      if (r.token == kNoToken) continue;
      known_[r.id].push_back(r.token);
      ++outputs_[r.id];
      served_tokens_[r.id] += 1;
    }
    for (const FinishedSeq& f : upd.finished) {
      finished_[f.id] = f;
      EXPECT_EQ(f.num_output_tokens, outputs_[f.id]) << "id " << f.id << " at step " << step_;
      known_.erase(f.id);
    }
    last_finished_ = upd.finished;
    ++step_;
    return out;
  }

  // Plans a step that never runs (the engine stopped its forward pass): Schedule, then
  // CancelStep. Nothing is sampled and the driver's clock does not advance.
  SchedulerOutput Cancel() {
    SchedulerOutput out = sched_->Schedule(step_);
    sched_->CancelStep(out);
    return out;
  }

  int64_t step() const { return step_; }
  const std::map<uint64_t, FinishedSeq>& finished() const { return finished_; }
  const std::vector<FinishedSeq>& last_finished() const { return last_finished_; }
  int32_t outputs(uint64_t id) const {
    auto it = outputs_.find(id);
    return it == outputs_.end() ? 0 : it->second;
  }
  bool known(uint64_t id) const { return known_.count(id) != 0; }

 private:
  Scheduler* sched_;
  int64_t step_ = 0;
  int32_t block_size_;
  std::map<uint64_t, std::vector<int32_t>> known_;
  std::map<uint64_t, int32_t> outputs_;
  std::map<uint64_t, int32_t> stop_at_;
  std::map<uint64_t, int64_t> served_tokens_;
  std::map<uint64_t, FinishedSeq> finished_;
  std::vector<FinishedSeq> last_finished_;
};

// "id:computed+new" for each scheduled sequence, for exact batch-composition assertions.
inline std::vector<std::string> Plan(const SchedulerOutput& out) {
  std::vector<std::string> v;
  for (const ScheduledSeq& s : out.seqs) {
    v.push_back(std::to_string(s.id) + ":" + std::to_string(s.num_computed_tokens) + "+" +
                std::to_string(s.num_new_tokens));
  }
  return v;
}

}  // namespace llmux::testing
