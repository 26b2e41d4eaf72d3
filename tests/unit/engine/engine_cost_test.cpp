// Cost attribution: the step cost model's exact split, and on a real engine (stories260K-hf,
// CPU backend) the per-request engine seconds and the per-tenant shares summing to the
// engine's busy time.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <optional>

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

ModelConfig TinyShape() {
  ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_layers = 5;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 8;
  c.vocab_size = 512;
  return c;
}

TEST(StepCostTest, FlopsOfTheModelShape) {
  const StepCostModel::Flops f = StepCostModel::FlopsOf(TinyShape());
  // 2 * 5 layers * (2*64*64 + 2*64*32 + 3*64*172) = 10 * (8192 + 4096 + 33024)
  EXPECT_DOUBLE_EQ(f.per_token, 453120);
  EXPECT_DOUBLE_EQ(f.per_context, 4.0 * 5 * 64);
  EXPECT_DOUBLE_EQ(f.per_sample, 2.0 * 64 * 512);
  // A 4-token chunk after 10 computed tokens attends 4*10 + 4*5/2 = 50 positions; a decode at
  // 99 computed tokens attends 100.
  const StepShape chunk = StepShape::Of(Seq(10, 4, false));
  EXPECT_EQ(chunk.prefill_tokens, 4);
  EXPECT_EQ(chunk.decode_tokens, 0);
  EXPECT_EQ(chunk.attended, 50);
  EXPECT_EQ(chunk.sampled, 0);
  const StepShape decode = StepShape::Of(Seq(99, 1, true));
  EXPECT_EQ(decode.prefill_tokens, 0);
  EXPECT_EQ(decode.decode_tokens, 1);
  EXPECT_EQ(decode.attended, 100);
  EXPECT_EQ(decode.sampled, 1);
}

TEST(StepCostTest, BeforeAnyMeasurementTheSplitIsTheFlopsOfTheShape) {
  const StepCostModel m(TinyShape(), std::nullopt);
  EXPECT_FALSE(m.fixed());
  EXPECT_EQ(m.observed_steps(), 0);
  const std::vector<ScheduledSeq> seqs = {Seq(10, 4, false), Seq(99, 1, true)};
  const double w0 = 4 * 453120.0 + 50 * 1280.0;
  const double w1 = 453120.0 + 100 * 1280.0 + 65536.0;
  const std::vector<double> shares = m.Split(seqs, 1.0);
  EXPECT_NEAR(shares[0], w0 / (w0 + w1), 1e-15);
  EXPECT_NEAR(shares[1], w1 / (w0 + w1), 1e-15);
}

TEST(StepCostTest, FixedConstantsSplitExactlyAndSumToTheStep) {
  StepCostConstants k;
  k.step_s = 0.004;           // 1 ms to each of the 4 sequences below
  k.prefill_token_s = 0.001;
  k.decode_token_s = 0.002;
  k.context_s = 0;
  k.sample_s = 0.001;
  StepCostModel m(TinyShape(), k);
  ASSERT_TRUE(m.fixed());
  // Weights: 3 decodes 1 + 2 + 1 = 4 ms each; a 20-token prefill that samples: 1 + 20 + 1 = 22.
  // Total 34.
  const std::vector<ScheduledSeq> seqs = {Seq(9, 1, true), Seq(9, 1, true), Seq(9, 1, true),
                                          Seq(0, 20, true)};
  const std::vector<double> shares = m.Split(seqs, 0.068);
  ASSERT_EQ(shares.size(), 4u);
  EXPECT_NEAR(shares[0], 0.008, 1e-15);
  EXPECT_NEAR(shares[3], 0.044, 1e-15);
  EXPECT_NEAR(std::accumulate(shares.begin(), shares.end(), 0.0), 0.068, 1e-15);
  m.Observe(seqs, 5.0);  // a fixed model never moves
  EXPECT_EQ(m.constants().prefill_token_s, 0.001);
  EXPECT_EQ(m.observed_steps(), 0);
  // Nothing has weight: equal shares.
  StepCostModel none(TinyShape(), StepCostConstants{});
  EXPECT_EQ(none.Split(seqs, 1.0), (std::vector<double>{0.25, 0.25, 0.25, 0.25}));
}

// A backend whose steps cost differ from the FLOPs' proportions: a large per-step constant
// (launch and weight-read overheads), decodes 4x a prefill token (memory-bound), a costly LM
// head. The online fit finds these constants from measured step durations alone.
TEST(StepCostTest, OnlineFitRecoversTheBackendsMeasuredCosts) {
  StepCostConstants truth;
  truth.step_s = 2e-3;
  truth.prefill_token_s = 20e-6;
  truth.decode_token_s = 80e-6;
  truth.context_s = 0.05e-6;
  truth.sample_s = 150e-6;
  auto measured = [&](const std::vector<ScheduledSeq>& seqs) {
    const StepShape s = StepShape::Of(seqs);
    return truth.step_s + truth.prefill_token_s * s.prefill_tokens +
           truth.decode_token_s * s.decode_tokens + truth.context_s * s.attended +
           truth.sample_s * s.sampled;
  };
  StepCostModel m(TinyShape(), std::nullopt);
  // A deterministic mix of steps: decode batches of 1..16 at contexts up to 2000, with prefill
  // chunks of 16..512 tokens (some ending their prompt and sampling) in every third step.
  uint32_t rng = 12345;
  auto next = [&rng](uint32_t n) {
    rng = rng * 1664525u + 1013904223u;
    return static_cast<int32_t>((rng >> 8) % n);
  };
  for (int step = 0; step < 600; ++step) {
    std::vector<ScheduledSeq> seqs;
    const int decodes = 1 + next(16);
    for (int i = 0; i < decodes; ++i) seqs.push_back(Seq(10 + next(2000), 1, true));
    if (step % 3 == 0) seqs.push_back(Seq(next(1024), 16 + next(497), next(2) == 0));
    m.Observe(seqs, measured(seqs));
  }
  EXPECT_EQ(m.observed_steps(), 600);
  const StepCostConstants& k = m.constants();
  EXPECT_NEAR(k.step_s, truth.step_s, truth.step_s * 0.02);
  EXPECT_NEAR(k.prefill_token_s, truth.prefill_token_s, truth.prefill_token_s * 0.02);
  EXPECT_NEAR(k.context_s, truth.context_s, truth.context_s * 0.05);
  // Every decode samples, so the data pins a decode's whole cost (its token and its sampled
  // row) but tells the two apart only by the prefill chunks that sample: the sum is found, the
  // split stays near the prior's (it only moves the cost of a prompt's last chunk).
  const double decode = truth.decode_token_s + truth.sample_s;
  EXPECT_NEAR(k.decode_token_s + k.sample_s, decode, decode * 0.02);
  // So a step of one decode and one 100-token prefill chunk is split by those costs, not by
  // FLOPs (which would give the decode ~2% of the step; the fitted costs ~28%).
  const std::vector<ScheduledSeq> mixed = {Seq(500, 1, true), Seq(0, 100, false)};
  const std::vector<double> shares = m.Split(mixed, 1.0);
  const double d = truth.step_s / 2 + truth.decode_token_s + truth.context_s * 501 + truth.sample_s;
  const double p = truth.step_s / 2 + truth.prefill_token_s * 100 + truth.context_s * 5050;
  EXPECT_NEAR(shares[0], d / (d + p), 0.01);
  EXPECT_NEAR(shares[0] + shares[1], 1.0, 1e-12);
}

class Recorder final : public EngineObserver {
 public:
  void OnStep(const StepInfo& step) override {
    busy += step.busy_seconds;
    wall += step.seconds;
    double sum = 0;
    std::map<std::string, double> fractions;
    for (const auto& [tenant, s] : step.tenant_seconds) {
      tenants[tenant] += s;
      sum += s;
      fractions[tenant] = s / step.busy_seconds;
    }
    steps.push_back(fractions);
    worst_step_gap = std::max(worst_step_gap, std::fabs(sum - step.busy_seconds));
  }
  double busy = 0, wall = 0, worst_step_gap = 0;
  std::map<std::string, double> tenants;
  std::vector<std::map<std::string, double>> steps;  // per step: each tenant's share / busy
};

// Four requests on stories260K-hf (CPU backend): "long" (ids 1, 2) sends 200-token prompts,
// "short" (ids 3, 4) 10-token ones; all generate 16 tokens, in the same steps (one lane, room
// for all four). `hook` sees each step's plan before its forward pass.
struct CostRun {
  Recorder rec;
  std::map<uint64_t, EngineOutput> finals;
  EngineStats stats;
  std::map<std::string, double> tenant_engine_seconds;  // from GetTenantStats
};

void RunFourRequests(std::optional<StepCostConstants> constants, CostRun& run,
                     std::function<void(const SchedulerOutput&)> hook = nullptr) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  CpuBackendOptions o;
  o.threads = 1;
  auto backend = CreateCpuBackend(o);
  ASSERT_TRUE(backend.ok());
  auto model = Model::Load(dir, backend->get(), 512);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EngineConfig c;
  c.scheduler.num_kv_blocks = 64;
  c.scheduler.block_size = 16;
  c.scheduler.max_seqs = 8;
  c.scheduler.max_batched_tokens = 512;
  c.scheduler.max_model_len = 512;
  c.scheduler.lanes = {{"standard", 0}};
  c.observer = &run.rec;
  c.step_cost = constants;
  auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  if (hook) (*engine)->SetBeforeForwardHookForTesting(hook);
  for (const char* t : {"long", "short"}) ASSERT_TRUE((*engine)->UpsertTenant(t, {}).ok());
  for (uint64_t id = 1; id <= 4; ++id) {
    EngineRequest r;
    r.id = id;
    r.tenant = id <= 2 ? "long" : "short";
    r.prompt.assign(id <= 2 ? 200 : 10, static_cast<int32_t>(20 + id));
    r.sampling.temperature = 0;
    r.sampling.max_tokens = 16;
    r.sampling.ignore_eos = true;
    ASSERT_TRUE((*engine)->Submit(std::move(r), [&run, id](EngineOutput&& out) {
      if (out.finished) run.finals[id] = out;
    }).ok());
  }
  ASSERT_TRUE((*engine)->RunUntilIdle().ok());
  run.stats = (*engine)->Stats();
  for (const char* t : {"long", "short"}) {
    auto ts = (*engine)->GetTenantStats(t);
    ASSERT_TRUE(ts.has_value());
    run.tenant_engine_seconds[t] = ts->engine_seconds;
  }
}

TEST(EngineCostTest, TenantSharesSumToBusyTimeAndFollowTheWork) {
  CostRun run;
  RunFourRequests(std::nullopt, run);
  if (HasFatalFailure() || IsSkipped()) return;
  const Recorder& rec = run.rec;
  ASSERT_EQ(run.finals.size(), 4u);
  ASSERT_GT(rec.busy, 0);
  EXPECT_LE(rec.busy, rec.wall);
  // Every step's shares sum to its busy time, and so over the run, within 1%.
  EXPECT_LT(rec.worst_step_gap, 1e-9);
  const double tenants = rec.tenants.at("long") + rec.tenants.at("short");
  EXPECT_NEAR(tenants, rec.busy, rec.busy * 0.01);
  // The calls' engine seconds (what the ledger records) add up to the same.
  double calls = 0;
  for (const auto& [id, out] : run.finals) {
    EXPECT_TRUE(out.error.ok()) << out.error.ToString();
    EXPECT_GT(out.engine_seconds, 0) << "request " << id;
    calls += out.engine_seconds;
  }
  EXPECT_NEAR(calls, rec.busy, rec.busy * 0.01);
  EXPECT_NEAR(run.finals[1].engine_seconds + run.finals[2].engine_seconds, rec.tenants.at("long"),
              1e-9);
  // 200-token prompts cost more than 10-token ones in the same steps.
  EXPECT_GT(rec.tenants.at("long"), 2 * rec.tenants.at("short"));
  // The engine's own cumulative figures (what /metrics and a process pool's pong carry).
  EXPECT_NEAR(run.stats.busy_seconds, rec.busy, 1e-9);
  EXPECT_NEAR(run.tenant_engine_seconds.at("long"), rec.tenants.at("long"), 1e-9);
  EXPECT_NEAR(run.tenant_engine_seconds.at("short"), rec.tenants.at("short"), 1e-9);
  // The model was fitted on every step, and its constants are published.
  EXPECT_EQ(run.stats.cost_fit_steps, run.stats.steps);
  EXPECT_GT(run.stats.cost_prefill_token_us + run.stats.cost_decode_token_us, 0);
}

// Injected constants make the split deterministic: each step's shares are exactly the
// constants' weights of the step's sequences, whatever the step's measured duration.
TEST(EngineCostTest, InjectedConstantsSplitEveryStepExactly) {
  StepCostConstants k;
  k.step_s = 0.002;
  k.prefill_token_s = 0.0001;
  k.decode_token_s = 0.0005;
  k.context_s = 0;
  k.sample_s = 0.0002;
  std::vector<double> expected_long;  // per step: the "long" tenant's fraction
  CostRun run;
  RunFourRequests(k, run, [&](const SchedulerOutput& plan) {
    double total = 0, long_part = 0;
    for (const ScheduledSeq& seq : plan.seqs) {
      const StepShape s = StepShape::Of(seq);
      const double w = k.step_s / static_cast<double>(plan.seqs.size()) +
                       k.prefill_token_s * s.prefill_tokens + k.decode_token_s * s.decode_tokens +
                       k.sample_s * s.sampled;
      total += w;
      if (seq.id <= 2) long_part += w;
    }
    expected_long.push_back(long_part / total);
  });
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_EQ(run.finals.size(), 4u);
  ASSERT_EQ(run.rec.steps.size(), expected_long.size());
  ASSERT_GE(expected_long.size(), 16u);  // a prefill step and 15 decode steps at least
  for (size_t i = 0; i < expected_long.size(); ++i) {
    const auto it = run.rec.steps[i].find("long");
    const double got = it == run.rec.steps[i].end() ? 0.0 : it->second;
    EXPECT_NEAR(got, expected_long[i], 1e-12) << " at step " << i;
  }
  EXPECT_EQ(run.stats.cost_fit_steps, 0);
  EXPECT_DOUBLE_EQ(run.stats.cost_step_us, 2000);
  EXPECT_DOUBLE_EQ(run.stats.cost_prefill_token_us, 100);
  EXPECT_DOUBLE_EQ(run.stats.cost_decode_token_us, 500);
  EXPECT_DOUBLE_EQ(run.stats.cost_context_us, 0);
  EXPECT_DOUBLE_EQ(run.stats.cost_sample_us, 200);
}

}  // namespace
}  // namespace llmux
