// The engine on real weights (stories260K-hf, CPU backend): scheduling latency of lanes in
// engine steps, preemption correctness, prefix-cache isolation, zero_kv_on_free.
#include "llmux/engine.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "common/test_data.h"

namespace llmux {
namespace {

struct Result {
  std::vector<int32_t> tokens;
  int64_t first_token_step = -1;
  bool finished = false;
  EngineOutput final_event;
};

class EngineTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir, int32_t kv_blocks, int32_t max_seqs,
            int32_t max_batched_tokens = 256, std::vector<LaneConfig> lanes = {{"premium", 0}, {"standard", 0}, {"batch", 0}}) {
    CpuBackendOptions o;
    o.threads = 1;
    auto backend = CreateCpuBackend(o);
    ASSERT_TRUE(backend.ok());
    auto model = Model::Load(dir, backend->get(), max_batched_tokens);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EngineConfig c;
    c.scheduler.num_kv_blocks = kv_blocks;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = max_seqs;
    c.scheduler.max_batched_tokens = max_batched_tokens;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = std::move(lanes);
    auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
  }

  void Tenant(const std::string& name, int lane, TenantLimits l = {}) {
    l.lane = lane;
    ASSERT_TRUE(engine_->UpsertTenant(name, l).ok());
  }

  void Submit(uint64_t id, const std::string& tenant, std::vector<int32_t> prompt, int max_tokens,
              bool ignore_eos = true) {
    EngineRequest r;
    r.id = id;
    r.tenant = tenant;
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = ignore_eos;
    ASSERT_TRUE(engine_->Submit(std::move(r), [this, id](EngineOutput&& out) {
      Result& res = results_[id];
      if (!out.tokens.empty() && res.first_token_step < 0) res.first_token_step = out.step;
      res.tokens.insert(res.tokens.end(), out.tokens.begin(), out.tokens.end());
      if (out.finished) {
        res.finished = true;
        res.final_event = out;
      }
    }).ok());
  }

  int64_t Steps() { return engine_->Stats().steps; }

  std::unique_ptr<Engine> engine_;
  std::map<uint64_t, Result> results_;
};

std::vector<int32_t> ReferenceSequence(const std::filesystem::path& dir) {
  std::ifstream in(dir / "expected_greedy.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<int32_t> seq = j["prompt_ids"].get<std::vector<int32_t>>();
  for (int32_t t : j["greedy_ids"].get<std::vector<int32_t>>()) seq.push_back(t);
  return seq;
}

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
  EXPECT_EQ(run(1, "a"), 0);
  EXPECT_EQ(run(2, "b"), 0) << "tenant b hit tenant a's cache";
  EXPECT_EQ(run(3, "a"), 32);
  EXPECT_EQ(run(4, "s1"), 0);
  EXPECT_EQ(run(5, "s2"), 32) << "the shared group did not share";
  EXPECT_EQ(results_[3].tokens, results_[1].tokens);
  EXPECT_EQ(results_[5].tokens, results_[1].tokens);
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
