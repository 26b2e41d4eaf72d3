// The engine on real weights (stories260K-hf, CPU backend): a higher-lane arrival stops the
// lower-lane step in flight (engine.yield_to_higher_lane), its prefill runs in a step of its
// own (lane-exclusive prefill), nothing of the stopped step is committed, and each lane has
// its own bound in the engine inbox.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <optional>

#include "common/test_data.h"
#include "llmux/engine.h"

namespace llmux {
namespace {

struct Result {
  std::vector<int32_t> tokens;
  std::vector<SampledToken> logprobs;
  int64_t first_token_step = -1;
  bool finished = false;
  EngineOutput final_event;
};

std::vector<int32_t> ReferenceSequence(const std::filesystem::path& dir) {
  std::ifstream in(dir / "expected_greedy.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<int32_t> seq = j["prompt_ids"].get<std::vector<int32_t>>();
  for (int32_t t : j["greedy_ids"].get<std::vector<int32_t>>()) seq.push_back(t);
  return seq;
}

struct Options {
  bool yield = true;
  bool exclusive_prefill = true;
  int32_t max_inbox = 4096;
};

class EngineYieldTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir, Options o) {
    CpuBackendOptions bo;
    bo.threads = 1;
    auto backend = CreateCpuBackend(bo);
    ASSERT_TRUE(backend.ok());
    auto model = Model::Load(dir, backend->get(), 256);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EngineConfig c;
    c.scheduler.num_kv_blocks = 64;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = 4;
    c.scheduler.max_batched_tokens = 256;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}};
    c.scheduler.lane_exclusive_prefill = o.exclusive_prefill;
    c.yield_to_higher_lane = o.yield;
    c.max_inbox = o.max_inbox;
    auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    TenantLimits batch;
    batch.lane = 2;
    ASSERT_TRUE(engine_->UpsertTenant("batch", batch).ok());
    TenantLimits premium;
    premium.lane = 0;
    ASSERT_TRUE(engine_->UpsertTenant("premium", premium).ok());
  }

  EngineRequest Request(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt,
                        int max_tokens) {
    EngineRequest r;
    r.id = id;
    r.tenant = tenant;
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    r.sampling.logprobs = 3;
    return r;
  }

  Status Submit(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt,
                int max_tokens) {
    return engine_->Submit(Request(id, tenant, std::move(prompt), max_tokens),
                           [this, id](EngineOutput&& out) {
                             Result& res = results_[id];
                             if (!out.tokens.empty() && res.first_token_step < 0) {
                               res.first_token_step = out.step;
                             }
                             res.tokens.insert(res.tokens.end(), out.tokens.begin(),
                                               out.tokens.end());
                             res.logprobs.insert(res.logprobs.end(), out.logprobs.begin(),
                                                 out.logprobs.end());
                             if (out.finished) {
                               res.finished = true;
                               res.final_event = out;
                             }
                           });
  }

  size_t BatchTokens() {
    size_t n = 0;
    for (uint64_t id = 1; id <= 4; ++id) n += results_[id].tokens.size();
    return n;
  }

  // Four batch requests decode; then a premium request is submitted from inside the forward
  // pass of the next step (the before-forward hook runs on the stepping thread once the step's
  // lanes are known to the inbox), i.e. it arrives while a batch-only step is in flight.
  // Returns the step count when it arrived.
  int64_t RunWithMidStepArrival(const std::filesystem::path& dir, Options o) {
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
        [this, prompt = std::vector<int32_t>(seq.begin(), seq.begin() + 30),
         sent = false](const SchedulerOutput&) mutable {
          if (sent) return;
          sent = true;
          EXPECT_TRUE(Submit(100, "premium", prompt, 12).ok());
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
  EXPECT_EQ(s.kv_usage, 0) << "a block is still referenced after the drain";
  for (const char* t : {"batch", "premium"}) {
    auto ts = engine_->GetTenantStats(t);
    ASSERT_TRUE(ts.has_value());
    EXPECT_EQ(ts->blocks_in_use, 0) << t;
    EXPECT_EQ(ts->inflight_tokens, 0) << t;
  }
  // Every prompt token counted once, every generated token once.
  EXPECT_EQ(s.generation_tokens_total, 4 * 40 + 12);
  EXPECT_EQ(s.prompt_tokens_total, 11 + 13 + 15 + 17 + 30);
}

TEST_F(EngineYieldTest, StoppedStepChangesNoTokenNoLogprobAndNoUsage) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  // Without yielding (and without lane-exclusive prefill): the premium request joins the step
  // after the one it arrived in, next to the batch decodes.
  const int64_t arrival_ref = RunWithMidStepArrival(dir, Options{false, false, 4096});
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(engine_->Stats().steps_yielded, 0);
  EXPECT_EQ(results_[100].first_token_step, arrival_ref + 2);
  const std::map<uint64_t, Result> want = results_;
  const EngineStats want_stats = engine_->Stats();
  engine_.reset();
  results_.clear();

  for (Options o : {Options{true, true, 4096}, Options{true, false, 4096}, Options{false, true, 4096}}) {
    const int64_t arrival = RunWithMidStepArrival(dir, o);
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.steps_yielded, o.yield ? 1 : 0);
    EXPECT_EQ(results_[100].first_token_step, arrival + (o.yield ? 1 : 2));
    for (const auto& [id, w] : want) {
      const Result& got = results_[id];
      ASSERT_TRUE(got.finished) << "request " << id;
      EXPECT_EQ(got.tokens, w.tokens) << "request " << id;
      ASSERT_EQ(got.logprobs.size(), w.logprobs.size()) << "request " << id;
      for (size_t i = 0; i < w.logprobs.size(); ++i) {
        EXPECT_EQ(got.logprobs[i].token, w.logprobs[i].token) << "request " << id << " at " << i;
        // Bit-identical: batch-invariant kernels, and the stopped step left nothing behind.
        EXPECT_EQ(got.logprobs[i].logprob, w.logprobs[i].logprob) << "request " << id << " at " << i;
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
