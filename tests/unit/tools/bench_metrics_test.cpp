// llmux-bench's report: vLLM's metric definitions on hand-made records, goodput, failures by
// status, fairness and the scenario checks.
#include <gtest/gtest.h>

#include "../../../benchmarks/llmux-bench/run_report.h"
#include "../../../benchmarks/llmux-bench/scenario_parse.h"
#include "../../../benchmarks/llmux-bench/server_log.h"

namespace llmux::bench {
namespace {

RequestRecord Req(size_t tenant, double start, std::vector<double> chunks, double end,
                  int64_t prompt, int64_t out) {
  RequestRecord r;
  r.tenant = tenant;
  r.start = start;
  r.chunks = std::move(chunks);
  r.end = end;
  r.status = 200;
  r.prompt_tokens = prompt;
  r.output_tokens = out;
  return r;
}

TEST(BenchMetrics, VllmDefinitions) {
  std::vector<RequestRecord> recs;
  recs.push_back(Req(0, 0.0, {0.1, 0.2, 0.4}, 0.4, 10, 3));  // TTFT 100, TPOT 150, ITL 100,200
  recs.push_back(Req(0, 1.0, {1.3}, 1.3, 20, 1));            // TTFT 300, no TPOT, no ITL
  RequestRecord rejected;
  rejected.status = 429;
  rejected.error = "HTTP 429";
  recs.push_back(rejected);
  RequestRecord cut;
  cut.status = 0;
  cut.error = "cancelled";
  recs.push_back(cut);
  const Slo slo{.ttft_ms = 200, .tpot_ms = std::nullopt, .e2el_ms = std::nullopt};
  const Summary s = Summarize(recs, 2.0, {slo}, [](const RequestRecord&) { return true; });
  EXPECT_EQ(s.completed, 2);
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.failures.at("429"), 1);
  EXPECT_EQ(s.failures.at("unfinished"), 1);
  EXPECT_EQ(s.prompt_tokens, 30);
  EXPECT_EQ(s.output_tokens, 4);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(s.output_throughput, 2.0);
  EXPECT_DOUBLE_EQ(s.total_throughput, 17.0);
  EXPECT_NEAR(s.ttft.mean, 200, 1e-9);
  EXPECT_NEAR(s.ttft.median, 200, 1e-9);
  EXPECT_NEAR(s.ttft.p99, 298, 1e-9);  // 100 + 0.99 * 200
  EXPECT_NEAR(s.tpot.mean, 150, 1e-9);
  EXPECT_NEAR(s.itl.mean, 150, 1e-9);
  EXPECT_NEAR(s.itl.p99, 199, 1e-9);
  EXPECT_NEAR(s.e2el.median, 350, 1e-9);
  EXPECT_EQ(s.good, 1);  // only the first meets TTFT <= 200 ms
  EXPECT_DOUBLE_EQ(s.goodput, 0.5);
}

TEST(BenchMetrics, FairnessOverTheCommonBackloggedWindow) {
  // Tenant 0 (weight 1) and tenant 1 (weight 2), both busy over [0, 10).
  std::vector<RequestRecord> recs;
  recs.push_back(Req(0, 0, {1, 2}, 10, 2, 2));  // prompt 2 at t=1, one token per chunk
  recs.push_back(Req(1, 0, {1, 2, 3, 4}, 10, 4, 4));
  const Fairness f = ComputeFairness(recs, 2, {1, 2}, /*prefill=*/1, /*decode=*/1);
  EXPECT_DOUBLE_EQ(f.window.start, 0);
  EXPECT_DOUBLE_EQ(f.window.end, 10);
  EXPECT_EQ(f.service, (std::vector<double>{4, 8}));  // 2+2 and 4+4
  EXPECT_DOUBLE_EQ(f.share[0], 1.0 / 3);
  EXPECT_DOUBLE_EQ(f.weight_share[1], 2.0 / 3);
  EXPECT_DOUBLE_EQ(f.jain, 1.0);
  // t=1: normalised {3, 2.5}; t=2: {4, 3}; t=3: {4, 3.5}; t=4: {4, 4} -> max gap 1.
  EXPECT_DOUBLE_EQ(f.max_service_gap, 1.0);
}

TEST(BenchMetrics, ChecksPassAndFailWithTheirFigures) {
  StatusOr<Scenario> sc = ParseScenario(R"(
name: c
tenants:
  p: { key: k1, rate: 1, weight: 1 }
  q: { key: k2, rate: 1, weight: 3 }
runs: [ { name: idle, tenants: [p] }, { name: loaded } ]
checks:
  - { kind: ttft_p99_ratio, tenant: p, run: loaded, baseline: idle, max: 1.2 }
  - { kind: errors, tenant: p, run: loaded, max: 0 }
  - { kind: fair_share, run: loaded, tolerance: 0.05 }
  - { kind: throughput_ratio, run: loaded, baseline: idle, min: 2 }
  - { kind: inflight_high_water, tenant: q, run: loaded, max: 100 }
)");
  ASSERT_TRUE(sc.ok()) << sc.status().ToString();
  RunData idle;
  idle.tenants = {"p"};
  idle.duration_s = 1;
  idle.records = {Req(0, 0, {0.1}, 0.1, 1, 1)};
  RunData loaded;
  loaded.tenants = {"p", "q"};
  loaded.duration_s = 1;
  loaded.records = {Req(0, 0, {0.11}, 1, 1, 1), Req(1, 0, {0.5, 0.6, 0.7}, 1, 0, 3)};
  loaded.inflight_high_water = {{"q", 120}};
  std::map<std::string, RunReport> runs;
  runs["idle"] = BuildRunReport(*sc, "idle", idle);
  runs["loaded"] = BuildRunReport(*sc, "loaded", loaded);
  const std::vector<CheckResult> r = EvaluateChecks(*sc, runs);
  ASSERT_EQ(r.size(), 5u);
  EXPECT_TRUE(r[0].pass) << r[0].what;  // 110 / 100 ms
  EXPECT_NEAR(r[0].value, 1.1, 1e-9);
  EXPECT_TRUE(r[1].pass) << r[1].what;
  // Service (prefill 1, decode 2): p = 1 + 2 = 3, q = 0 + 6 = 6 -> 1/3 vs the wanted 1/4.
  EXPECT_FALSE(r[2].pass) << r[2].what;
  EXPECT_NEAR(r[2].value, 1.0 / 3, 1e-9);
  EXPECT_TRUE(r[3].pass) << r[3].what;  // 4 tok/s vs 1 tok/s
  EXPECT_DOUBLE_EQ(r[3].value, 4);
  EXPECT_FALSE(r[4].pass) << r[4].what;
  EXPECT_EQ(r[4].what, "q inflight_high_water in loaded = 120 <= 100");
}

TEST(BenchMetrics, ServerSideTtftComesFromTheDaemonsAccessLines) {
  const std::string log =
      "llmuxd: serving stories on http://127.0.0.1:4000\n"
      R"({"event":"access","tenant":"premium","status":200,"full_ttft_us":2500})" "\n"
      R"({"event":"access","tenant":"premium","status":429})" "\n"  // refused: no first byte
      R"({"event":"policy_reload","tenant":"premium","full_ttft_us":1})" "\n"
      R"({"event":"access","tenant":"flooder","status":200,"full_ttft_us":40000})" "\n"
      R"({"event":"access","tenant":"premium","status":200,"full_ttft_us":3100})" "\n"
      R"({"event":"access","tenant":"premium","full_tt)";  // torn last line
  const auto ms = ServerFullTtftMs(log);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms.at("premium"), (std::vector<double>{2.5, 3.1}));
  EXPECT_EQ(ms.at("flooder"), (std::vector<double>{40.0}));
}

TEST(BenchMetrics, ServerTtftCheckComparesTheDaemonsP99) {
  StatusOr<Scenario> sc = ParseScenario(R"(
name: c
tenants:
  p: { key: k1, rate: 1 }
  q: { key: k2, rate: 1 }
runs: [ { name: idle, tenants: [p] }, { name: loaded } ]
checks:
  - { kind: server_ttft_p99_ratio, tenant: p, run: loaded, baseline: idle, max: 1.2 }
  - { kind: server_ttft_p99_ratio, tenant: q, run: loaded, baseline: idle, max: 1.2 }
)");
  ASSERT_TRUE(sc.ok()) << sc.status().ToString();
  RunData idle;
  idle.tenants = {"p"};
  idle.duration_s = 1;
  idle.server_full_ttft_ms = {{"p", {2, 2, 2, 4}}};  // p99 3.94
  RunData loaded;
  loaded.tenants = {"p", "q"};
  loaded.duration_s = 1;
  loaded.server_full_ttft_ms = {{"p", {2, 3, 4, 4.5}}, {"q", {50}}};  // p99 4.485
  std::map<std::string, RunReport> runs;
  runs["idle"] = BuildRunReport(*sc, "idle", idle);
  runs["loaded"] = BuildRunReport(*sc, "loaded", loaded);
  const std::vector<CheckResult> r = EvaluateChecks(*sc, runs);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_NEAR(r[0].value, 4.485 / 3.94, 1e-9);
  EXPECT_TRUE(r[0].pass) << r[0].what;
  EXPECT_EQ(r[0].what,
            "p server-side full-path p99 TTFT loaded/idle = 4.485/3.94 ms = 1.138x <= 1.2x");
  // q has no server-side figures in the baseline run: a failure that says so.
  EXPECT_FALSE(r[1].pass);
  EXPECT_NE(r[1].what.find("no server-side TTFT of q in both runs"), std::string::npos) << r[1].what;
}

}  // namespace
}  // namespace llmux::bench
