// llmux-bench's scenario format: a full file parses to exact values; typos and contradictions
// are errors naming the key; every shipped scenario parses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "../../../benchmarks/llmux-bench/scenario_parse.h"

namespace llmux::bench {
namespace {

constexpr const char* kScenario = R"(
name: demo
seed: 7
model: stories15m
drain: 500ms
flood_nice: 10
admin_key: sk-admin
server:
  llmux_yaml: "engine: {}"
  tenants_yaml: "tenants: {}"
tenants:
  gold:
    key: sk-gold
    rate: 2.5
    prompt_len: 64
    output_len: { uniform: [8, 16] }
    slo: { ttft_ms: 200, tpot_ms: 50 }
    weight: 4
  bulk:
    key: sk-bulk
    concurrency: 8
    prompt_len: { sharegpt: { mean: 210, max: 2048 } }
    ignore_eos: false
    start: 2s
runs:
  - { name: idle, tenants: [gold], duration: 1m }
  - { name: loaded, duration: 30s, max_requests: 100, engine: { batching: static, max_seqs: 8 } }
checks:
  - { kind: ttft_p99_ratio, tenant: gold, run: loaded, baseline: idle, max: 1.2 }
  - { kind: fair_share, run: loaded, tolerance: 0.1 }
)";

TEST(BenchScenario, ParsesEveryField) {
  StatusOr<Scenario> s = ParseScenario(kScenario);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "demo");
  EXPECT_EQ(s->seed, 7u);
  EXPECT_EQ(s->model_shape, "stories15m");
  EXPECT_DOUBLE_EQ(s->drain_s, 0.5);
  EXPECT_EQ(s->flood_nice, 10);
  EXPECT_EQ(s->admin_key, "sk-admin");
  EXPECT_EQ(s->llmux_yaml, "engine: {}");
  ASSERT_EQ(s->tenants.size(), 2u);
  const TenantLoad& gold = s->tenants[0];
  EXPECT_EQ(gold.name, "gold");  // document order is kept
  EXPECT_DOUBLE_EQ(gold.rate, 2.5);
  EXPECT_EQ(gold.prompt_len.kind, LengthDist::Kind::kFixed);
  EXPECT_EQ(gold.prompt_len.value, 64);
  EXPECT_EQ(gold.output_len.kind, LengthDist::Kind::kUniform);
  EXPECT_EQ(gold.output_len.min, 8);
  EXPECT_EQ(gold.output_len.max, 16);
  EXPECT_EQ(*gold.slo.ttft_ms, 200);
  EXPECT_EQ(*gold.slo.tpot_ms, 50);
  EXPECT_FALSE(gold.slo.e2el_ms.has_value());
  EXPECT_DOUBLE_EQ(gold.weight, 4);
  EXPECT_TRUE(gold.ignore_eos);
  const TenantLoad& bulk = s->tenants[1];
  EXPECT_EQ(bulk.concurrency, 8);
  EXPECT_EQ(bulk.prompt_len.kind, LengthDist::Kind::kShareGpt);
  EXPECT_DOUBLE_EQ(bulk.prompt_len.mean, 210);
  EXPECT_EQ(bulk.prompt_len.min, 4);
  EXPECT_EQ(bulk.prompt_len.max, 2048);
  EXPECT_FALSE(bulk.ignore_eos);
  EXPECT_DOUBLE_EQ(bulk.start_s, 2);
  ASSERT_EQ(s->runs.size(), 2u);
  EXPECT_EQ(s->runs[0].tenants, std::vector<std::string>{"gold"});
  EXPECT_DOUBLE_EQ(s->runs[0].duration_s, 60);
  EXPECT_EQ(s->runs[1].tenants, (std::vector<std::string>{"gold", "bulk"}));
  EXPECT_EQ(s->runs[1].max_requests, 100);
  EXPECT_EQ(s->runs[1].engine.at("batching"), "static");
  EXPECT_EQ(s->runs[1].engine.at("max_seqs"), "8");
  ASSERT_EQ(s->checks.size(), 2u);
  EXPECT_EQ(s->checks[0].baseline, "idle");
  EXPECT_DOUBLE_EQ(s->checks[0].max, 1.2);
  EXPECT_DOUBLE_EQ(s->checks[1].tolerance, 0.1);
}

void ExpectError(const std::string& yaml, const std::string& fragment) {
  StatusOr<Scenario> s = ParseScenario(yaml);
  ASSERT_FALSE(s.ok()) << "accepted:\n" << yaml;
  EXPECT_NE(s.status().message().find(fragment), std::string::npos) << s.status().message();
}

TEST(BenchScenario, ErrorsNameTheKey) {
  const std::string t = "tenants: { a: { key: k, rate: 1 } }\n";
  ExpectError("name: x\nseeed: 1\n" + t, "(scenario).seeed: unknown key");
  ExpectError(t, "name: is required");
  ExpectError("name: x\ntenants: { a: { key: k } }\n", "tenants.a: needs exactly one of rate");
  ExpectError("name: x\ntenants: { a: { key: k, rate: 1, concurrency: 2 } }\n", "needs exactly one");
  ExpectError("name: x\ntenants: { a: { rate: 1 } }\n", "tenants.a.key: is required");
  ExpectError("name: x\ntenants: { a: { key: k, rate: 1, prompt_len: { uniform: [9, 3] } } }\n",
              "tenants.a.prompt_len: needs 1 <= min <= max");
  ExpectError("name: x\ntenants: { a: { key: k, rate: 1, prompt_len: zero } }\n",
              "tenants.a.prompt_len: has the wrong type");
  ExpectError("name: x\n" + t + "runs: [ { name: r, tenants: [b] } ]\n", "unknown tenant \"b\"");
  ExpectError("name: x\n" + t + "runs: [ { name: r, duration: 10x } ]\n", "invalid duration unit");
  ExpectError("name: x\n" + t + "runs: [ { name: r }, { name: r } ]\n", "duplicate run name");
  ExpectError("name: x\n" + t + "checks: [ { kind: speed, run: main } ]\n", "unknown check");
  ExpectError("name: x\n" + t + "checks: [ { kind: errors, run: main, tenant: z } ]\n",
              "checks[0].tenant: unknown tenant");
  ExpectError("name: x\n" + t + "checks: [ { kind: throughput_ratio, run: main, baseline: q } ]\n",
              "checks[0].baseline: unknown run");
  ExpectError("name: x\napi: chat\n" + t, "token-id prompts need api: completions");
  ExpectError("name: [\n", "scenario YAML");
  ExpectError("name: x\nflood_nice: 20\n" + t, "flood_nice: must be 0..19");
  ExpectError("name: x\nflood_nice: -1\n" + t, "flood_nice: must be 0..19");
  StatusOr<Scenario> plain = ParseScenario("name: x\n" + t);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->flood_nice, 0);
}

TEST(BenchScenario, ShippedScenariosParse) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(LLMUX_SOURCE_DIR "/benchmarks/scenarios")) {
    if (e.path().extension() != ".yaml") continue;
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    StatusOr<Scenario> s = ParseScenario(ss.str());
    EXPECT_TRUE(s.ok()) << e.path() << ": " << s.status().ToString();
    if (s.ok()) {
      EXPECT_EQ(s->name, e.path().stem().string());
    }
    ++n;
  }
  EXPECT_EQ(n, 6);
}

}  // namespace
}  // namespace llmux::bench
