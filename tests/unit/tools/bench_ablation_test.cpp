// llmux-bench's FIFO ablation: the tenants.yaml it derives (one lane, equal weights, no
// budgets), the twin runs it adds, and the checks comparing a run with its FIFO twin.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "../../../benchmarks/llmux-bench/ablation.h"
#include "../../../benchmarks/llmux-bench/run_report.h"
#include "../../../benchmarks/llmux-bench/scenario_parse.h"

namespace llmux::bench {
namespace {

constexpr const char* kScenario = R"(
name: nn
server:
  tenants_yaml: |
    lanes: [ { name: premium }, { name: batch, max_wait: 5s } ]
    tenants:
      premium:
        api_keys: [ { sha256: aa } ]
        lane: premium
        weight: 4
        max_inflight_tokens: 32768
        prices: { input_per_mtok: 1 }
      flooder:
        api_keys: [ { sha256: bb } ]
        lane: batch
        max_inflight_tokens: 4096
        max_queued_requests: 8
        max_queue_wait: 10s
        rate_limit: { requests_per_minute: 600 }
        reserved: { kv_tokens: 512 }
      bare:
tenants:
  premium: { key: k1, rate: 4, process: own }
  flooder: { key: k2, concurrency: 8 }
runs:
  - { name: idle, tenants: [premium] }
  - { name: loaded }
ablate: [fifo]
checks:
  - { kind: fifo_ttft_p99_ratio, tenant: premium, run: loaded, min: 20 }
  - { kind: fifo_throughput_ratio, tenant: flooder, run: loaded, min: 0.95 }
)";

TEST(BenchAblation, FifoTenantsHaveOneLaneEqualWeightsAndNoBudgets) {
  StatusOr<Scenario> sc = ParseScenario(kScenario);
  ASSERT_TRUE(sc.ok()) << sc.status().ToString();
  EXPECT_TRUE(sc->FindTenant("premium")->own_process);
  EXPECT_FALSE(sc->FindTenant("flooder")->own_process);
  EXPECT_EQ(sc->ablate, std::vector<std::string>{"fifo"});
  StatusOr<std::string> fifo = FifoTenantsYaml(sc->tenants_yaml);
  ASSERT_TRUE(fifo.ok()) << fifo.status().ToString();
  const YAML::Node root = YAML::Load(*fifo);
  ASSERT_EQ(root["lanes"].size(), 1u);
  EXPECT_EQ(root["lanes"][0]["name"].as<std::string>(), "fifo");
  EXPECT_FALSE(root["lanes"][0]["max_wait"]);
  EXPECT_EQ(root["lanes"][0]["order"].as<std::string>(), "arrival");
  ASSERT_EQ(root["tenants"].size(), 3u);
  for (const char* name : {"premium", "flooder", "bare"}) {
    const YAML::Node t = root["tenants"][name];
    EXPECT_EQ(t["lane"].as<std::string>(), "fifo") << name;
    EXPECT_EQ(t["max_inflight_tokens"].as<int64_t>(), 1000000000) << name;
    EXPECT_EQ(t["max_queued_requests"].as<int64_t>(), 1000000) << name;
    for (const char* gone : {"weight", "max_queue_wait", "rate_limit", "reserved"}) {
      EXPECT_FALSE(t[gone]) << name << " keeps " << gone;
    }
  }
  // What identifies and bills a tenant stays.
  EXPECT_EQ(root["tenants"]["premium"]["api_keys"][0]["sha256"].as<std::string>(), "aa");
  EXPECT_EQ(root["tenants"]["premium"]["prices"]["input_per_mtok"].as<double>(), 1.0);
  EXPECT_FALSE(FifoTenantsYaml("lanes: []").ok());
}

TEST(BenchAblation, EveryRunGetsAFifoTwinOnce) {
  StatusOr<Scenario> sc = ParseScenario(kScenario);
  ASSERT_TRUE(sc.ok()) << sc.status().ToString();
  ASSERT_TRUE(AddFifoAblation(&*sc).ok());
  ASSERT_TRUE(AddFifoAblation(&*sc).ok());  // the flag and the scenario key both asked for it
  ASSERT_EQ(sc->runs.size(), 4u);
  EXPECT_EQ(sc->runs[2].name, "idle@fifo");
  EXPECT_EQ(sc->runs[3].name, "loaded@fifo");
  EXPECT_EQ(sc->runs[2].tenants, std::vector<std::string>{"premium"});
  EXPECT_TRUE(sc->runs[0].tenants_yaml.empty());
  EXPECT_EQ(sc->runs[3].tenants_yaml, *FifoTenantsYaml(sc->tenants_yaml));
  Scenario no_server = *sc;
  no_server.tenants_yaml.clear();
  EXPECT_FALSE(AddFifoAblation(&no_server).ok());
}

RequestRecord Req(size_t tenant, double start, double first, double end, int64_t out) {
  RequestRecord r;
  r.tenant = tenant;
  r.start = start;
  r.chunks = {first};
  r.end = end;
  r.status = 200;
  r.prompt_tokens = 1;
  r.output_tokens = out;
  return r;
}

TEST(BenchAblation, ChecksCompareARunWithItsFifoTwin) {
  StatusOr<Scenario> sc = ParseScenario(kScenario);
  ASSERT_TRUE(sc.ok()) << sc.status().ToString();
  ASSERT_TRUE(AddFifoAblation(&*sc).ok());
  RunData policy;
  policy.tenants = {"premium", "flooder"};
  policy.duration_s = 2;
  policy.records = {Req(0, 0, 0.004, 0.1, 4), Req(1, 0, 0.5, 2, 96)};
  RunData fifo = policy;
  fifo.records = {Req(0, 0, 0.1, 0.3, 4), Req(1, 0, 0.2, 2, 100)};
  std::map<std::string, RunReport> runs;
  runs["loaded"] = BuildRunReport(*sc, "loaded", policy);
  // Without the twin, both checks fail and say why.
  std::vector<CheckResult> r = EvaluateChecks(*sc, runs);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_FALSE(r[0].pass);
  EXPECT_NE(r[0].what.find("loaded@fifo has no result"), std::string::npos) << r[0].what;
  runs["loaded@fifo"] = BuildRunReport(*sc, "loaded@fifo", fifo);
  r = EvaluateChecks(*sc, runs);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r[0].pass) << r[0].what;  // 100 ms under FIFO vs 4 ms: 25x
  EXPECT_NEAR(r[0].value, 25, 1e-9);
  EXPECT_EQ(r[0].what, "premium client-side p99 TTFT loaded@fifo/loaded = 100/4 ms = 25x >= 20x");
  EXPECT_TRUE(r[1].pass) << r[1].what;  // 48 vs 50 tok/s
  EXPECT_NEAR(r[1].value, 0.96, 1e-9);
  runs["loaded@fifo"].per_tenant[1].output_throughput = 60;
  r = EvaluateChecks(*sc, runs);
  EXPECT_FALSE(r[1].pass) << r[1].what;
  EXPECT_NEAR(r[1].value, 0.8, 1e-9);
}

}  // namespace
}  // namespace llmux::bench
