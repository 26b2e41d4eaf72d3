// Cost attribution: the step cost model's exact split, and on a real engine (stories260K-hf,
// CPU backend) the per-request engine seconds and the per-tenant shares summing to the
// engine's busy time.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>

#include "common/test_data.h"
#include "engine/step_cost.h"
#include "llmux/engine.h"

namespace llmux {
namespace {

ScheduledSeq Seq(int32_t computed, int32_t new_tokens, bool samples) {
  ScheduledSeq s;
  s.num_computed_tokens = computed;
  s.num_new_tokens = new_tokens;
  s.samples = samples;
  return s;
}

TEST(StepCostTest, FlopsOfTheModelShape) {
  ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_layers = 5;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 8;
  c.vocab_size = 512;
  const StepCostModel m = StepCostModel::ForModel(c);
  // 2 * 5 layers * (2*64*64 + 2*64*32 + 3*64*172) = 10 * (8192 + 4096 + 33024)
  EXPECT_DOUBLE_EQ(m.per_token, 453120);
  EXPECT_DOUBLE_EQ(m.per_context, 4.0 * 5 * 64);
  EXPECT_DOUBLE_EQ(m.per_sample, 2.0 * 64 * 512);
  // A 4-token chunk after 10 computed tokens attends 4*10 + 4*5/2 = 50 positions.
  EXPECT_DOUBLE_EQ(m.Work(Seq(10, 4, false)), 4 * 453120.0 + 50 * 1280.0);
  EXPECT_DOUBLE_EQ(m.Work(Seq(99, 1, true)), 453120.0 + 100 * 1280.0 + 65536.0);
}

TEST(StepCostTest, SplitIsProportionalToWorkAndSumsToTheStep) {
  StepCostModel m;
  m.per_token = 10;
  m.per_context = 1;
  m.per_sample = 0;
  // Works: 3 decodes at context 10 -> 10 + 10 = 20 each; a 20-token prefill from 0 ->
  // 200 + 210 = 410. Total 470.
  const std::vector<ScheduledSeq> seqs = {Seq(9, 1, true), Seq(9, 1, true), Seq(9, 1, true),
                                          Seq(0, 20, true)};
  const std::vector<double> shares = SplitStepSeconds(m, seqs, 0.047);
  ASSERT_EQ(shares.size(), 4u);
  EXPECT_NEAR(shares[0], 0.002, 1e-15);
  EXPECT_NEAR(shares[3], 0.041, 1e-15);
  EXPECT_NEAR(std::accumulate(shares.begin(), shares.end(), 0.0), 0.047, 1e-15);
  StepCostModel none;
  none.per_token = 0;
  EXPECT_EQ(SplitStepSeconds(none, seqs, 1.0), (std::vector<double>{0.25, 0.25, 0.25, 0.25}));
}

class Recorder final : public EngineObserver {
 public:
  void OnStep(const StepInfo& step) override {
    busy += step.busy_seconds;
    wall += step.seconds;
    double sum = 0;
    for (const auto& [tenant, s] : step.tenant_seconds) {
      tenants[tenant] += s;
      sum += s;
    }
    worst_step_gap = std::max(worst_step_gap, std::fabs(sum - step.busy_seconds));
  }
  double busy = 0, wall = 0, worst_step_gap = 0;
  std::map<std::string, double> tenants;
};

TEST(EngineCostTest, TenantSharesSumToBusyTimeAndFollowTheWork) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  CpuBackendOptions o;
  o.threads = 1;
  auto backend = CreateCpuBackend(o);
  ASSERT_TRUE(backend.ok());
  auto model = Model::Load(dir, backend->get(), 512);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Recorder rec;
  EngineConfig c;
  c.scheduler.num_kv_blocks = 64;
  c.scheduler.block_size = 16;
  c.scheduler.max_seqs = 8;
  c.scheduler.max_batched_tokens = 512;
  c.scheduler.max_model_len = 512;
  c.scheduler.lanes = {{"standard", 0}};
  c.observer = &rec;
  auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  for (const char* t : {"long", "short"}) ASSERT_TRUE((*engine)->UpsertTenant(t, {}).ok());
  std::map<uint64_t, EngineOutput> finals;
  // "long" sends 200-token prompts, "short" 10-token ones; all generate 16 tokens, in the same
  // steps (one lane, room for all four).
  for (uint64_t id = 1; id <= 4; ++id) {
    EngineRequest r;
    r.id = id;
    r.tenant = id <= 2 ? "long" : "short";
    r.prompt.assign(id <= 2 ? 200 : 10, static_cast<int32_t>(20 + id));
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 16;
    r.sampling.ignore_eos = true;
    ASSERT_TRUE((*engine)->Submit(std::move(r), [&finals, id](EngineOutput&& out) {
      if (out.finished) finals[id] = out;
    }).ok());
  }
  ASSERT_TRUE((*engine)->RunUntilIdle().ok());
  ASSERT_EQ(finals.size(), 4u);
  ASSERT_GT(rec.busy, 0);
  EXPECT_LE(rec.busy, rec.wall);
  // Every step's shares sum to its busy time, and so over the run, within 1%.
  EXPECT_LT(rec.worst_step_gap, 1e-9);
  const double tenants = rec.tenants["long"] + rec.tenants["short"];
  EXPECT_NEAR(tenants, rec.busy, rec.busy * 0.01);
  // The calls' engine seconds (what the ledger records) add up to the same.
  double calls = 0;
  for (const auto& [id, out] : finals) {
    EXPECT_TRUE(out.error.ok()) << out.error.ToString();
    EXPECT_GT(out.engine_seconds, 0) << "request " << id;
    calls += out.engine_seconds;
  }
  EXPECT_NEAR(calls, rec.busy, rec.busy * 0.01);
  EXPECT_NEAR(finals[1].engine_seconds + finals[2].engine_seconds, rec.tenants["long"], 1e-9);
  // 200-token prompts cost more than 10-token ones in the same steps.
  EXPECT_GT(rec.tenants["long"], 2 * rec.tenants["short"]);
}

}  // namespace
}  // namespace llmux
