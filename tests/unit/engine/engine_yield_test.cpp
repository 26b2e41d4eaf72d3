// The engine on real weights (stories260K-hf, CPU backend): an arrival stops the step in
// flight — a higher lane's (engine.yield_to_higher_lane), or, inside one lane, the most
// underserved tenant's (engine.yield_to_underserved) — its prefill runs in a step of its own
// (lane-exclusive prefill, underserved exclusive prefill), nothing of the stopped step is
// committed, and each lane has its own bound in the engine inbox.
#include <gtest/gtest.h>

#include <initializer_list>
#include <map>
#include <optional>

#include "common/cpu_model.h"
#include "common/test_data.h"
#include "llmux/engine.h"

namespace llmux {
namespace {

using Result = testing::EngineResult;
using testing::ReferenceSequence;

// The name of the n-th extra tenant of the batch lane.
std::string Bystander(int n) {
  std::string name = "b";  // NOTE: not "b" + to_string(n): GCC 12's -Wrestrict false positive
  name += std::to_string(n);
  return name;
}

struct Options {
  bool yield = true;
  bool exclusive_prefill = true;
  int32_t max_inbox = 4096;
  // engine.yield_to_underserved (the stop and the scheduler's exclusive prefill).
  bool underserved = true;
  int32_t max_seqs = 4;
};

class EngineYieldTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir, Options o) {
    EngineConfig c;
    c.scheduler.num_kv_blocks = 64;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = o.max_seqs;
    c.scheduler.max_batched_tokens = 256;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}};
    c.scheduler.lane_exclusive_prefill = o.exclusive_prefill;
    c.scheduler.underserved_exclusive_prefill = o.underserved;
    c.yield_to_higher_lane = o.yield;
    c.yield_to_underserved = o.underserved;
    c.max_inbox = o.max_inbox;
    engine_ = testing::MakeCpuEngine(dir, c);
    ASSERT_NE(engine_, nullptr);
    TenantLimits batch;
    batch.lane = 2;
    ASSERT_TRUE(engine_->UpsertTenant("batch", batch).ok());
    // A second tenant of the batch lane, idle until it sends one request.
    ASSERT_TRUE(engine_->UpsertTenant("bystander", batch).ok());
    TenantLimits premium;
    premium.lane = 0;
    ASSERT_TRUE(engine_->UpsertTenant("premium", premium).ok());
  }

  EngineRequest Request(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt,
                        int max_tokens) {
    return testing::GreedyRequest(id, tenant, std::move(prompt), max_tokens,
                                  /*ignore_eos=*/true, /*logprobs=*/3);
  }

  Status Submit(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt,
                int max_tokens) {
    return engine_->Submit(Request(id, tenant, std::move(prompt), max_tokens),
                           testing::CollectInto(&results_, id));
  }

  size_t BatchTokens() {
    size_t n = 0;
    for (uint64_t id = 1; id <= 4; ++id) n += results_[id].tokens.size();
    return n;
  }

  // After a drain: no KV block referenced, and no block or in-flight token left to `tenants`.
  void ExpectDrained(std::initializer_list<const char*> tenants) {
    EXPECT_EQ(engine_->Stats().kv_usage, 0) << "a block is still referenced after the drain";
    for (const char* t : tenants) {
      auto ts = engine_->GetTenantStats(t);
      ASSERT_TRUE(ts.has_value()) << t;
      EXPECT_EQ(ts->blocks_in_use, 0) << t;
      EXPECT_EQ(ts->inflight_tokens, 0) << t;
    }
  }

  // Every request of `want` finished in results_ with the same tokens, logprobs (bit for bit,
  // top-k included) and usage.
  void ExpectSameResults(const std::map<uint64_t, Result>& want) {
    for (const auto& [id, w] : want) {
      const Result& got = results_[id];
      ASSERT_TRUE(got.finished) << "request " << id;
      EXPECT_EQ(got.tokens, w.tokens) << "request " << id;
      ASSERT_EQ(got.logprobs.size(), w.logprobs.size()) << "request " << id;
      for (size_t i = 0; i < w.logprobs.size(); ++i) {
        EXPECT_EQ(got.logprobs[i].token, w.logprobs[i].token) << "request " << id << " at " << i;
        // Bit-identical: batch-invariant kernels, and the stopped step left nothing behind.
        EXPECT_EQ(got.logprobs[i].logprob, w.logprobs[i].logprob)
            << "request " << id << " at " << i;
        ASSERT_EQ(got.logprobs[i].top.size(), w.logprobs[i].top.size());
        for (size_t k = 0; k < w.logprobs[i].top.size(); ++k) {
          EXPECT_EQ(got.logprobs[i].top[k].token, w.logprobs[i].top[k].token);
          EXPECT_EQ(got.logprobs[i].top[k].logprob, w.logprobs[i].top[k].logprob);
        }
      }
      EXPECT_EQ(got.final_event.prompt_tokens, w.final_event.prompt_tokens);
      EXPECT_EQ(got.final_event.cached_tokens, w.final_event.cached_tokens);
      EXPECT_EQ(got.final_event.completion_tokens, w.final_event.completion_tokens);
      EXPECT_EQ(got.final_event.preemptions, w.final_event.preemptions);
    }
  }

  // Four batch requests decode; then a premium request is submitted from inside the forward
  // pass of the next step (the before-forward hook runs on the stepping thread once the step's
  // lanes are known to the inbox), i.e. it arrives while a batch-only step is in flight.
  // Returns the step count when it arrived.
  // `arrival_tenant`: premium (a higher lane) or bystander (the batch lane's idle tenant).
  int64_t RunWithMidStepArrival(const std::filesystem::path& dir, Options o,
                                const std::string& arrival_tenant = "premium") {
    Make(dir, o);
    const std::vector<int32_t> seq = ReferenceSequence(dir);
    for (uint64_t id = 1; id <= 4; ++id) {
      // Different prompts (one token changed each), so prefix sharing plays no part.
      std::vector<int32_t> p(seq.begin(), seq.begin() + 9 + 2 * id);
      p[2] = 250 + static_cast<int32_t>(id);
      EXPECT_TRUE(Submit(id, "batch", p, 40).ok());
    }
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(engine_->StepOnce().ok());
    const int64_t arrival = engine_->Stats().steps;
    engine_->SetBeforeForwardHookForTesting(
        [this, prompt = std::vector<int32_t>(seq.begin(), seq.begin() + 30), arrival_tenant,
         sent = false](const SchedulerOutput&) mutable {
          if (sent) return;
          sent = true;
          EXPECT_TRUE(Submit(100, arrival_tenant, prompt, 12).ok());
        });
    return arrival;
  }

  std::unique_ptr<Engine> engine_;
  std::map<uint64_t, Result> results_;
};

TEST_F(EngineYieldTest, PremiumArrivalStopsTheBatchStepAndItsFirstTokenComesNextStep) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const int64_t arrival = RunWithMidStepArrival(dir, Options{});
  const size_t batch_before = BatchTokens();
  // The step the premium request arrived in stops: no step is counted, no token emitted.
  ASSERT_TRUE(engine_->StepOnce().ok());
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.steps_yielded, 1);
  EXPECT_EQ(s.steps_yielded_underserved, 0) << "a higher-lane stop counted as underserved";
  EXPECT_GT(s.yielded_seconds, 0);
  EXPECT_EQ(s.steps, arrival);
  EXPECT_EQ(BatchTokens(), batch_before) << "the stopped step emitted tokens";
  EXPECT_LT(results_[100].first_token_step, 0);
  // The next step is the premium prefill alone (lane-exclusive) and gives its first token.
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_EQ(results_[100].first_token_step, arrival + 1);
  EXPECT_EQ(BatchTokens(), batch_before) << "batch decodes shared the premium prefill's step";
  // From then on every lane decodes together, and nothing stops a step again. (max_seqs 4:
  // the premium admission preempted the latest batch request, which resumes later.)
  EXPECT_EQ(engine_->Stats().num_preemptions, 1);
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_EQ(BatchTokens(), batch_before + 3);
  EXPECT_EQ(results_[100].tokens.size(), 2u);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  s = engine_->Stats();
  EXPECT_EQ(s.steps_yielded, 1);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.waiting, 0);
  ExpectDrained({"batch", "premium"});
  // Every prompt token counted once, every generated token once.
  EXPECT_EQ(s.generation_tokens_total, 4 * 40 + 12);
  EXPECT_EQ(s.prompt_tokens_total, 11 + 13 + 15 + 17 + 30);
}

TEST_F(EngineYieldTest, StoppedStepChangesNoTokenNoLogprobAndNoUsage) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  // Without yielding (and without lane-exclusive prefill): the premium request joins the step
  // after the one it arrived in, next to the batch decodes.
  const int64_t arrival_ref = RunWithMidStepArrival(dir, Options{false, false, 4096, false});
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(engine_->Stats().steps_yielded, 0);
  EXPECT_EQ(results_[100].first_token_step, arrival_ref + 2);
  const std::map<uint64_t, Result> want = results_;
  const EngineStats want_stats = engine_->Stats();
  engine_.reset();
  results_.clear();

  for (Options o : {Options{true, true, 4096}, Options{true, false, 4096}, Options{false, true, 4096}}) {
    o.underserved = false;
    const int64_t arrival = RunWithMidStepArrival(dir, o);
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.steps_yielded, o.yield ? 1 : 0);
    EXPECT_EQ(results_[100].first_token_step, arrival + (o.yield ? 1 : 2));
    ExpectSameResults(want);
    EXPECT_EQ(s.prompt_tokens_total, want_stats.prompt_tokens_total);
    EXPECT_EQ(s.generation_tokens_total, want_stats.generation_tokens_total);
    EXPECT_EQ(s.prefix_query_tokens, want_stats.prefix_query_tokens);
    EXPECT_EQ(s.prefix_hit_tokens, want_stats.prefix_hit_tokens);
    EXPECT_EQ(s.kv_usage, 0);
    engine_.reset();
    results_.clear();
  }
}

TEST_F(EngineYieldTest, StepHoldingThePremiumLaneIsNotStopped) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir, Options{});
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  ASSERT_TRUE(Submit(1, "premium", std::vector<int32_t>(seq.begin(), seq.begin() + 12), 20).ok());
  ASSERT_TRUE(Submit(2, "batch", std::vector<int32_t>(seq.begin(), seq.begin() + 14), 20).ok());
  ASSERT_TRUE(engine_->StepOnce().ok());
  int arrivals = 0;
  engine_->SetBeforeForwardHookForTesting([&](const SchedulerOutput&) {
    // Another premium request and a batch one arrive during each of the next steps: the steps
    // in flight hold premium work (request 1), so none is stopped.
    if (arrivals >= 3) return;
    ++arrivals;
    EXPECT_TRUE(Submit(10 + arrivals, "premium", std::vector<int32_t>(seq.begin(), seq.begin() + 5), 2).ok());
    EXPECT_TRUE(Submit(20 + arrivals, "batch", std::vector<int32_t>(seq.begin(), seq.begin() + 5), 2).ok());
  });
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(arrivals, 3);
  EXPECT_EQ(engine_->Stats().steps_yielded, 0);
}

// Inside one lane: the batch lane's idle tenant is its most underserved, so its arrival
// stops the batch step in flight and its prefill runs without the batch tenant's decodes.
TEST_F(EngineYieldTest, UnderservedArrivalStopsItsOwnLanesStepAndPrefillsAlone) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Options o;
  o.max_seqs = 5;  // a slot for the bystander: no preemption inside a lane
  const int64_t arrival = RunWithMidStepArrival(dir, o, "bystander");
  const size_t batch_before = BatchTokens();
  ASSERT_TRUE(engine_->StepOnce().ok());
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.steps_yielded, 1);
  EXPECT_EQ(s.steps_yielded_underserved, 1);
  EXPECT_EQ(s.steps, arrival);
  EXPECT_EQ(BatchTokens(), batch_before) << "the stopped step emitted tokens";
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_EQ(results_[100].first_token_step, arrival + 1);
  EXPECT_EQ(BatchTokens(), batch_before) << "batch decodes shared the bystander's prefill step";
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_EQ(BatchTokens(), batch_before + 4);
  EXPECT_EQ(results_[100].tokens.size(), 2u);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  s = engine_->Stats();
  EXPECT_EQ(s.steps_yielded, 1);
  EXPECT_EQ(s.num_preemptions, 0);
  ExpectDrained({"batch", "bystander"});
  EXPECT_EQ(s.generation_tokens_total, 4 * 40 + 12);
  EXPECT_EQ(s.prompt_tokens_total, 11 + 13 + 15 + 17 + 30);
}

TEST_F(EngineYieldTest, UnderservedStopChangesNoTokenNoLogprobAndNoUsage) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Options off;
  off.underserved = false;
  off.max_seqs = 5;
  const int64_t arrival_ref = RunWithMidStepArrival(dir, off, "bystander");
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(engine_->Stats().steps_yielded, 0);
  EXPECT_EQ(results_[100].first_token_step, arrival_ref + 2);
  const std::map<uint64_t, Result> want = results_;
  const EngineStats want_stats = engine_->Stats();
  engine_.reset();
  results_.clear();

  Options on = off;
  on.underserved = true;
  const int64_t arrival = RunWithMidStepArrival(dir, on, "bystander");
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  const EngineStats s = engine_->Stats();
  EXPECT_EQ(s.steps_yielded, 1);
  EXPECT_EQ(results_[100].first_token_step, arrival + 1);
  ExpectSameResults(want);
  EXPECT_EQ(s.prompt_tokens_total, want_stats.prompt_tokens_total);
  EXPECT_EQ(s.generation_tokens_total, want_stats.generation_tokens_total);
  EXPECT_EQ(s.prefix_query_tokens, want_stats.prefix_query_tokens);
  EXPECT_EQ(s.prefix_hit_tokens, want_stats.prefix_hit_tokens);
  EXPECT_EQ(s.kv_usage, 0);
}

// The rule is fair-share standing, not idleness: the bystander has a request decoding (one
// decode a step against the batch tenant's four, so its counter stays the lane's lowest) when
// it sends another from inside a batch-lane step. That step stops; the next holds the
// bystander's decode and its new prefill and none of the batch tenant's decodes; then all
// decode. Outputs, usage and KV are those of a run without the rule.
TEST_F(EngineYieldTest, DecodingTenantsNewRequestStopsTheStepAndRunsWithItsOwnDecodeOnly) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  std::map<uint64_t, Result> want;
  EngineStats want_stats;
  for (bool underserved : {false, true}) {
    SCOPED_TRACE(underserved ? "underserved on" : "off");
    Options o;
    o.underserved = underserved;
    o.max_seqs = 6;
    Make(dir, o);
    const std::vector<int32_t> seq = ReferenceSequence(dir);
    for (uint64_t id = 1; id <= 4; ++id) {
      std::vector<int32_t> p(seq.begin(), seq.begin() + 9 + 2 * id);
      p[2] = 250 + static_cast<int32_t>(id);
      ASSERT_TRUE(Submit(id, "batch", p, 40).ok());
    }
    std::vector<int32_t> first(seq.begin(), seq.begin() + 10);
    first[3] = 240;
    ASSERT_TRUE(Submit(50, "bystander", first, 40).ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(engine_->StepOnce().ok());
    const int64_t arrival = engine_->Stats().steps;
    engine_->SetBeforeForwardHookForTesting(
        [this, prompt = std::vector<int32_t>(seq.begin(), seq.begin() + 30),
         sent = false](const SchedulerOutput&) mutable {
          if (sent) return;
          sent = true;
          EXPECT_TRUE(Submit(100, "bystander", prompt, 12).ok());
        });
    const size_t batch_before = BatchTokens();
    const size_t decoding_before = results_[50].tokens.size();
    ASSERT_EQ(decoding_before, 5u);
    if (underserved) {
      ASSERT_TRUE(engine_->StepOnce().ok());
      EXPECT_EQ(engine_->Stats().steps_yielded, 1);
      EXPECT_EQ(engine_->Stats().steps, arrival);
      EXPECT_EQ(BatchTokens(), batch_before) << "the stopped step emitted tokens";
      EXPECT_EQ(results_[50].tokens.size(), decoding_before) << "the stopped step emitted";
      ASSERT_TRUE(engine_->StepOnce().ok());
      EXPECT_EQ(results_[100].first_token_step, arrival + 1);
      EXPECT_EQ(results_[50].tokens.size(), decoding_before + 1) << "its own decode is in";
      EXPECT_EQ(BatchTokens(), batch_before) << "batch decodes shared the bystander's step";
      ASSERT_TRUE(engine_->StepOnce().ok());
      EXPECT_EQ(BatchTokens(), batch_before + 4);
      EXPECT_EQ(results_[100].tokens.size(), 2u);
    }
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.steps_yielded, underserved ? 1 : 0);
    EXPECT_EQ(s.num_preemptions, 0);
    ExpectDrained({"batch", "bystander"});
    if (underserved) {
      EXPECT_EQ(results_[100].first_token_step, arrival + 1);
      ExpectSameResults(want);
      EXPECT_EQ(s.prompt_tokens_total, want_stats.prompt_tokens_total);
      EXPECT_EQ(s.generation_tokens_total, want_stats.generation_tokens_total);
    } else {
      EXPECT_EQ(results_[100].first_token_step, arrival + 2);
      want = results_;
      want_stats = s;
    }
    engine_.reset();
    results_.clear();
  }
}

// Six idle tenants of the batch lane arrive one after another, each during a batch-only step:
// the bound (SchedulerConfig defaults: a credit per 25 completed steps, 4 banked, a stop and
// an exclusive prefill one credit each) lets the first two stop a step and prefill alone; the
// others join the batch lane's steps. Every output equals a run without the feature.
TEST_F(EngineYieldTest, UnderservedStopsAreBoundedAndTheFloodKeepsDecoding) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  std::map<uint64_t, Result> want;
  for (bool underserved : {false, true}) {
    SCOPED_TRACE(underserved ? "underserved on" : "off");
    Options o;
    o.underserved = underserved;
    o.max_seqs = 6;
    Make(dir, o);
    TenantLimits lane2;
    lane2.lane = 2;
    for (int b = 1; b <= 6; ++b) {
      ASSERT_TRUE(engine_->UpsertTenant(Bystander(b), lane2).ok());
    }
    const std::vector<int32_t> seq = ReferenceSequence(dir);
    for (uint64_t id = 1; id <= 4; ++id) {
      std::vector<int32_t> p(seq.begin(), seq.begin() + 9 + 2 * id);
      p[2] = 250 + static_cast<int32_t>(id);
      ASSERT_TRUE(Submit(id, "batch", p, 40).ok());
    }
    ASSERT_TRUE(engine_->StepOnce().ok());
    int next = 1;
    engine_->SetBeforeForwardHookForTesting([&](const SchedulerOutput& plan) {
      if (next > 6) return;
      for (const ScheduledSeq& q : plan.seqs) {
        if (q.id >= 100) return;  // a bystander's work is in this step
      }
      std::vector<int32_t> p(seq.begin(), seq.begin() + 8);
      p[1] = 200 + next;
      EXPECT_TRUE(Submit(100 + next, Bystander(next), p, 2).ok());
      ++next;
    });
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    EXPECT_EQ(next, 7);
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.steps_yielded, underserved ? 2 : 0);
    EXPECT_EQ(s.kv_usage, 0);
    if (underserved) {
      ExpectSameResults(want);
    } else {
      want = results_;
    }
    engine_.reset();
    results_.clear();
  }
}

TEST_F(EngineYieldTest, FullBatchLaneInTheInboxDoesNotRefuseAPremiumSubmit) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir, Options{true, true, 3});
  const std::vector<int32_t> prompt = ReferenceSequence(dir);
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(Submit(id, "batch", std::vector<int32_t>(prompt.begin(), prompt.begin() + 6), 2).ok());
  }
  // The batch lane is full ...
  const Status full = Submit(4, "batch", std::vector<int32_t>(prompt.begin(), prompt.begin() + 6), 2);
  EXPECT_EQ(full.code(), StatusCode::kUnavailable);
  EXPECT_NE(full.message().find("lane 2"), std::string::npos) << full.message();
  // ... a request of a batch tenant asking for the premium lane counts there, and so does the
  // premium tenant's own: the premium lane has its own bound.
  EngineRequest tiered = Request(5, "batch", std::vector<int32_t>(prompt.begin(), prompt.begin() + 6), 2);
  tiered.lane = 0;
  ASSERT_TRUE(engine_->Submit(std::move(tiered), [this](EngineOutput&& out) {
    results_[5].finished |= out.finished;
  }).ok());
  for (uint64_t id = 6; id <= 7; ++id) {
    ASSERT_TRUE(Submit(id, "premium", std::vector<int32_t>(prompt.begin(), prompt.begin() + 6), 2).ok());
  }
  EXPECT_EQ(Submit(8, "premium", std::vector<int32_t>(prompt.begin(), prompt.begin() + 6), 2).code(),
            StatusCode::kUnavailable);
  // The engine taking the inbox frees both lanes.
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_TRUE(Submit(9, "batch", std::vector<int32_t>(prompt.begin(), prompt.begin() + 6), 2).ok());
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  for (uint64_t id : std::vector<uint64_t>{1, 2, 3, 5, 6, 7, 9}) EXPECT_TRUE(results_[id].finished) << id;
}

}  // namespace
}  // namespace llmux
