// The engine on real weights (stories260K-hf, CPU backend): scheduling latency of lanes in
// engine steps, preemption correctness, prefix-cache isolation, zero_kv_on_free.
#include "llmux/engine.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <optional>

#include "common/cpu_model.h"
#include "common/test_data.h"

namespace llmux {
namespace {

using Result = testing::EngineResult;
using testing::ReferenceSequence;

class EngineTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir, int32_t kv_blocks, int32_t max_seqs,
            int32_t max_batched_tokens = 256, std::vector<LaneConfig> lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}},
            std::optional<DType> kv_dtype = std::nullopt) {
    EngineConfig c;
    c.scheduler.num_kv_blocks = kv_blocks;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = max_seqs;
    c.scheduler.max_batched_tokens = max_batched_tokens;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = std::move(lanes);
    c.kv_dtype = kv_dtype;
    engine_ = testing::MakeCpuEngine(dir, c);
    ASSERT_NE(engine_, nullptr);
  }

  void Tenant(const std::string& name, int lane, TenantLimits l = {}) {
    l.lane = lane;
    ASSERT_TRUE(engine_->UpsertTenant(name, l).ok());
  }

  void Submit(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt, int max_tokens,
              bool ignore_eos = true, std::optional<int32_t> logprobs = std::nullopt) {
    ASSERT_TRUE(engine_
                    ->Submit(testing::GreedyRequest(id, tenant, std::move(prompt), max_tokens,
                                                    ignore_eos, logprobs),
                             testing::CollectInto(&results_, id))
                    .ok());
  }

  int64_t Steps() { return engine_->Stats().steps; }

  std::unique_ptr<Engine> engine_;
  std::map<uint64_t, Result> results_;
};

TEST_F(EngineTest, PremiumRequestRunsWithinTwoStepsWhileBatchSaturates) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  // 4 decode slots and KV for exactly 4 batch sequences of 80 tokens (5 blocks each).
  Make(dir, /*kv_blocks=*/20, /*max_seqs=*/4);
  Tenant("batch", 2);
  Tenant("premium", 0);
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  const std::vector<int32_t> prompt(seq.begin(), seq.begin() + 8);
  for (uint64_t id = 1; id <= 8; ++id) Submit(id, "batch", prompt, 72);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(engine_->StepOnce().ok());
  EngineStats s = engine_->Stats();
  ASSERT_EQ(s.running, 4);
  ASSERT_EQ(s.waiting, 4);
  const int64_t arrival = Steps();
  Submit(100, "premium", prompt, 8);
  while (results_[100].first_token_step < 0) ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_LE(results_[100].first_token_step - arrival, 2);
  for (uint64_t id = 5; id <= 8; ++id) {
    EXPECT_LT(results_[id].first_token_step, 0) << "queued batch request " << id << " ran first";
  }
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  // Everyone finished, and the preempted batch work resumed exactly where it stopped.
  const std::vector<int32_t> want(seq.begin() + 8, seq.begin() + 80);
  for (uint64_t id = 1; id <= 8; ++id) {
    ASSERT_TRUE(results_[id].finished);
    EXPECT_EQ(results_[id].tokens, want) << "request " << id;
  }
}

// The inbox is lane-ordered where it matters: the engine takes the whole inbox each step and
// the scheduler admits by lane, so a premium submission that arrived behind a burst of batch
// submissions (all still in the inbox) starts first.
TEST_F(EngineTest, PremiumSubmissionBehindBatchSubmissionsInTheInboxStartsFirst) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir, /*kv_blocks=*/64, /*max_seqs=*/1);
  Tenant("batch", 2);
  Tenant("premium", 0);
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  const std::vector<int32_t> prompt(seq.begin(), seq.begin() + 8);
  for (uint64_t id = 1; id <= 6; ++id) Submit(id, "batch", prompt, 4);
  Submit(100, "premium", prompt, 4);
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_EQ(results_[100].first_token_step, 1);
  for (uint64_t id = 1; id <= 6; ++id) {
    EXPECT_LT(results_[id].first_token_step, 0) << "batch request " << id << " started first";
  }
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  // One slot: the batch requests then start in their arrival order, one after another.
  for (uint64_t id = 2; id <= 6; ++id) {
    EXPECT_GT(results_[id].first_token_step, results_[id - 1].first_token_step) << "request " << id;
  }
  EXPECT_GT(results_[1].first_token_step, results_[100].first_token_step);
}

TEST_F(EngineTest, EightPromptsTogetherEqualEachAlone) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  auto prompt = [&](int i) {
    // Different prompts: reference prefixes with one token changed per prompt.
    std::vector<int32_t> p(seq.begin(), seq.begin() + 4 + 3 * i);
    p[1 + i % 3] = 300 + 11 * i;
    return p;
  };
  std::map<uint64_t, std::vector<int32_t>> alone;
  for (int i = 0; i < 8; ++i) {
    Make(dir, 128, 8);
    Tenant("t", 1);
    Submit(i, "t", prompt(i), 40);
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    alone[i] = results_[i].tokens;
    results_.clear();
  }
  Make(dir, 128, 8, /*max_batched_tokens=*/64);  // chunked prefill mixes with decodes
  Tenant("t", 1);
  for (int i = 0; i < 8; ++i) Submit(i, "t", prompt(i), 40);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(results_[i].tokens.size(), 40u);
    EXPECT_EQ(results_[i].tokens, alone[i]) << "prompt " << i;
  }
}

TEST_F(EngineTest, F16KvCacheKeepsTheGreedyTextAndBatchInvariance) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  std::ifstream in(dir / "expected_greedy.json");
  const size_t prompt_len = nlohmann::json::parse(in)["prompt_ids"].size();
  const std::vector<LaneConfig> lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}};
  // The reference continuation (computed in F32) is reproduced token for token with the KV
  // cache in F16.
  Make(dir, 64, 4, 256, lanes, DType::kF16);
  ASSERT_EQ(engine_->backend_for_testing()->kv_spec().dtype, DType::kF16);
  Tenant("t", 1);
  const std::vector<int32_t> prompt(seq.begin(), seq.begin() + prompt_len);
  const std::vector<int32_t> want(seq.begin() + prompt_len, seq.end());
  Submit(1, "t", prompt, static_cast<int>(want.size()));
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(results_[1].tokens, want);
  // Batch invariance holds with an F16 cache too: three different prompts, alone and
  // together with chunked prefill mixing into decodes.
  auto other = [&](int i) {
    std::vector<int32_t> p(seq.begin(), seq.begin() + 5 + 4 * i);
    p[2] = 290 + 13 * i;
    return p;
  };
  std::map<int, std::vector<int32_t>> alone;
  for (int i = 0; i < 3; ++i) {
    results_.clear();
    Make(dir, 64, 4, 256, lanes, DType::kF16);
    Tenant("t", 1);
    Submit(10 + i, "t", other(i), 30);
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    alone[i] = results_[10 + i].tokens;
  }
  results_.clear();
  Make(dir, 64, 4, /*max_batched_tokens=*/16, lanes, DType::kF16);
  Tenant("t", 1);
  for (int i = 0; i < 3; ++i) Submit(10 + i, "t", other(i), 30);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(results_[10 + i].tokens, alone[i]) << "prompt " << i;
}

TEST_F(EngineTest, KvDtypeTheBackendDoesNotImplementFailsCreate) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  auto backend = CreateCpuBackend(CpuBackendOptions{});
  ASSERT_TRUE(backend.ok());
  auto model = Model::Load(dir, backend->get(), 64);
  ASSERT_TRUE(model.ok());
  EngineConfig c;
  c.scheduler.num_kv_blocks = 8;
  c.kv_dtype = DType::kBF16;
  auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(engine.status().message().find("bf16"), std::string::npos)
      << engine.status().message();
}

TEST_F(EngineTest, PreemptedRequestsResumeWithIdenticalGreedyOutput) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  // KV for ~2 full sequences: six requests of 150 tokens force preemption (recompute).
  Make(dir, /*kv_blocks=*/20, /*max_seqs=*/6);
  Tenant("t", 1);
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  for (uint64_t id = 0; id < 6; ++id) {
    const int plen = 3 + static_cast<int>(id) * 7;
    Submit(id, "t", std::vector<int32_t>(seq.begin(), seq.begin() + plen), 150 - plen);
  }
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  int preemptions = 0;
  for (uint64_t id = 0; id < 6; ++id) {
    const int plen = 3 + static_cast<int>(id) * 7;
    ASSERT_TRUE(results_[id].finished);
    EXPECT_EQ(results_[id].tokens, std::vector<int32_t>(seq.begin() + plen, seq.begin() + 150))
        << "request " << id;
    preemptions += results_[id].final_event.preemptions;
  }
  EXPECT_GT(preemptions, 0) << "the workload did not exercise preemption";
  EXPECT_EQ(engine_->Stats().num_preemptions, preemptions);
}

TEST_F(EngineTest, PrefixCacheIsScopedToTheTenant) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir, 64, 4);
  TenantLimits shared;
  shared.prefix_cache = PrefixCacheMode::kShared;
  shared.prefix_cache_group = "g";
  Tenant("a", 1);
  Tenant("b", 1);
  Tenant("s1", 1, shared);
  Tenant("s2", 1, shared);
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  const std::vector<int32_t> prompt(seq.begin(), seq.begin() + 40);  // 2 full blocks + 8
  auto run = [&](uint64_t id, const std::string& tenant) {
    Submit(id, tenant, prompt, 4);
    EXPECT_TRUE(engine_->RunUntilIdle().ok());
    return results_[id].final_event.cached_tokens;
  };
  // A repeat reuses the 2 full blocks and 7 of the 8 tokens of the first run's partial tail
  // (the last prompt token is always computed).
  EXPECT_EQ(run(1, "a"), 0);
  EXPECT_EQ(run(2, "b"), 0) << "tenant b hit tenant a's cache";
  EXPECT_EQ(run(3, "a"), 39);
  EXPECT_EQ(run(4, "s1"), 0);
  EXPECT_EQ(run(5, "s2"), 39) << "the shared group did not share";
  EXPECT_EQ(results_[3].tokens, results_[1].tokens);
  EXPECT_EQ(results_[5].tokens, results_[1].tokens);
}

// Token-level reuse inside a block gives the same bits as a cold run: tokens and the logprobs
// of the chosen and top-5 tokens (log-softmax of the logits) compared exactly.
TEST_F(EngineTest, PartialBlockPrefixHitsGiveBitIdenticalOutputs) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const std::vector<int32_t> seq = ReferenceSequence(dir);
  auto prompt = [&](int n) { return std::vector<int32_t>(seq.begin(), seq.begin() + n); };
  auto expect_same = [](const Result& got, const Result& want, const char* what) {
    ASSERT_TRUE(got.finished && want.finished) << what;
    EXPECT_EQ(got.tokens, want.tokens) << what;
    ASSERT_EQ(got.logprobs.size(), want.logprobs.size()) << what;
    for (size_t i = 0; i < want.logprobs.size(); ++i) {
      EXPECT_EQ(got.logprobs[i].logprob, want.logprobs[i].logprob) << what << " token " << i;
      ASSERT_EQ(got.logprobs[i].top.size(), want.logprobs[i].top.size()) << what;
      for (size_t k = 0; k < want.logprobs[i].top.size(); ++k) {
        EXPECT_EQ(got.logprobs[i].top[k].token, want.logprobs[i].top[k].token) << what;
        EXPECT_EQ(got.logprobs[i].top[k].logprob, want.logprobs[i].top[k].logprob) << what;
      }
    }
  };
  // Cold references, each on a fresh engine: the 10-token prompt, then a 27-token follow-up
  // made of it and its first 17 generated tokens (a chat's next turn).
  auto run_cold = [&](const std::vector<int32_t>& p) {
    Make(dir, 64, 4);
    Tenant("t", 1);
    Submit(1, "t", p, 20, true, 5);
    EXPECT_TRUE(engine_->RunUntilIdle().ok());
    EXPECT_EQ(results_[1].final_event.cached_tokens, 0);
    Result r = results_[1];
    results_.clear();
    return r;
  };
  std::map<int, Result> cold;
  cold[10] = run_cold(prompt(10));
  ASSERT_EQ(cold[10].tokens.size(), 20u);
  std::vector<int32_t> follow_up = prompt(10);
  follow_up.insert(follow_up.end(), cold[10].tokens.begin(), cold[10].tokens.begin() + 17);
  cold[27] = run_cold(follow_up);
  Make(dir, 64, 4);
  Tenant("t", 1);
  // A one-token request leaves its 10 prompt tokens in a partial tail block.
  Submit(1, "t", prompt(10), 1, true, 5);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(results_[1].final_event.cached_tokens, 0);
  EXPECT_EQ(results_[1].tokens.front(), cold[10].tokens.front());
  // Its repeat reuses 9 and computes the 10th.
  Submit(2, "t", prompt(10), 20, true, 5);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(results_[2].final_event.cached_tokens, 9);
  expect_same(results_[2], cold[10], "repeat of a 10-token prompt");
  // Request 2 computed 29 tokens (10 + 19 generated): a full block and a 13-token tail. A
  // follow-up whose prompt is 27 of those tokens reuses 16 + 10.
  Submit(3, "t", follow_up, 20, true, 5);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  EXPECT_EQ(results_[3].final_event.cached_tokens, 26);
  expect_same(results_[3], cold[27], "follow-up prompt ending inside the tail");
  const EngineStats st = engine_->Stats();
  EXPECT_EQ(st.prefix_hit_tokens, 9 + 26);
}

TEST_F(EngineTest, ZeroKvOnFreeZeroesBlocksBeforeAnotherSequenceGetsThem) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  // Four blocks in all: the second request must reuse the first one's blocks.
  for (bool zero : {true, false}) {
    Make(dir, /*kv_blocks=*/4, /*max_seqs=*/1);
    TenantLimits secure;
    secure.zero_kv_on_free = zero;
    secure.prefix_cache = PrefixCacheMode::kOff;
    Tenant("secure", 1, secure);
    TenantLimits other;
    other.prefix_cache = PrefixCacheMode::kOff;
    Tenant("other", 1, other);
    const std::vector<int32_t> seq = ReferenceSequence(dir);
    Submit(1, "secure", std::vector<int32_t>(seq.begin(), seq.begin() + 40), 20);
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    int nonzero_blocks = 0;
    int checked = 0;
    engine_->SetBeforeForwardHookForTesting([&](const SchedulerOutput& plan) {
      if (checked > 0) return;
      for (const ScheduledSeq& s : plan.seqs) {
        for (int32_t block : s.block_table) {
          std::vector<std::byte> k, v;
          ASSERT_TRUE(engine_->backend_for_testing()->ReadKvBlock(0, block, &k, &v).ok());
          ++checked;
          bool any = false;
          for (std::byte b : k) any |= b != std::byte{0};
          for (std::byte b : v) any |= b != std::byte{0};
          nonzero_blocks += any;
        }
      }
    });
    Submit(2, "other", std::vector<int32_t>(seq.begin() + 100, seq.begin() + 140), 4);
    ASSERT_TRUE(engine_->RunUntilIdle().ok());
    ASSERT_GT(checked, 0);
    if (zero) {
      EXPECT_EQ(nonzero_blocks, 0) << "a freed block of a zero_kv_on_free tenant kept its data";
    } else {
      EXPECT_GT(nonzero_blocks, 0) << "control: without zeroing, reused blocks hold old K/V";
    }
    engine_.reset();
    results_.clear();
  }
}

}  // namespace
}  // namespace llmux
