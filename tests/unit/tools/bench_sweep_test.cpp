// llmux-bench sweep's pure parts: reading the engine counters of /metrics, bucket quantiles,
// the knee under SLOs, and the curve's shape check (throughput rises then flattens; latency
// never falls).
#include <gtest/gtest.h>

#include "../../../benchmarks/llmux-bench/sweep.h"

namespace llmux::bench {
namespace {

SweepPoint Point(int c, double tok_s, double e2el_med, double ttft_med, double ttft_p99,
                 double tpot_med, double tpot_p99) {
  SweepPoint p;
  p.concurrency = c;
  p.completed = 10;
  p.total_tokens_per_s = tok_s;
  p.e2el = {0, e2el_med, e2el_med * 2};
  p.ttft = {0, ttft_med, ttft_p99};
  p.tpot = {0, tpot_med, tpot_p99};
  p.batch_seqs_p99 = c;
  p.batch_tokens_p99 = 4 * c;
  return p;
}

TEST(BenchSweepTest, ParsesEngineCountersPerPool) {
  const std::string text =
      "# HELP llmux_engine_step_seconds Engine step duration.\n"
      "llmux_engine_step_seconds_sum{pool=\"shared\"} 1.5\n"
      "llmux_engine_step_seconds_count{pool=\"shared\"} 300\n"
      "llmux_engine_step_seconds_sum{pool=\"gold\"} 0.25\n"
      "llmux_engine_batch_size_bucket{pool=\"shared\",le=\"1\"} 100\n"
      "llmux_engine_batch_size_bucket{pool=\"shared\",le=\"2\"} 250\n"
      "llmux_engine_batch_size_bucket{pool=\"shared\",le=\"+Inf\"} 300\n"
      "llmux_engine_batch_tokens_bucket{pool=\"shared\",le=\"64\"} 300\n"
      "llmux_tenant_engine_seconds_total{tenant=\"a\",pool=\"shared\"} 9\n"
      "llmux_pool_busy_seconds_total{pool=\"shared\"} 1.25\n"
      "llmux_pool_busy_seconds_total{pool=\"gold\"} 0.125\n"
      "vllm:num_requests_running{model_name=\"m\"} 3\n";
  const auto c = ParseEngineCounters(text);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_DOUBLE_EQ(c.at("shared").step_seconds, 1.5);
  EXPECT_DOUBLE_EQ(c.at("shared").steps, 300);
  EXPECT_DOUBLE_EQ(c.at("gold").step_seconds, 0.25);
  EXPECT_DOUBLE_EQ(c.at("shared").busy_seconds, 1.25);
  EXPECT_DOUBLE_EQ(c.at("gold").busy_seconds, 0.125);
  EXPECT_EQ(c.at("shared").batch_size,
            (std::map<double, double>{{1, 100}, {2, 250}, {1e300, 300}}));
  EXPECT_EQ(c.at("shared").batch_tokens, (std::map<double, double>{{64, 300}}));
}

TEST(BenchSweepTest, BucketQuantileCountsOnlyTheLevelsObservations) {
  const std::map<double, double> before = {{1, 100}, {2, 100}, {4, 100}, {1e300, 100}};
  // The level added 100 steps: 10 of one sequence, 80 of two, 10 of four.
  const std::map<double, double> after = {{1, 110}, {2, 190}, {4, 200}, {1e300, 200}};
  EXPECT_EQ(BucketQuantile(before, after, 0.10), 1);
  EXPECT_EQ(BucketQuantile(before, after, 0.50), 2);
  EXPECT_EQ(BucketQuantile(before, after, 0.99), 4);
  EXPECT_EQ(BucketQuantile(after, after, 0.99), 0);  // nothing observed
  EXPECT_EQ(BucketQuantile({}, after, 0.5), 1);  // all 200 steps: 110 of one sequence
}

TEST(BenchSweepTest, KneeIsTheHighestThroughputWithinBothSlos) {
  const std::vector<SweepPoint> pts = {
      Point(1, 100, 50, 10, 20, 5, 6),   Point(2, 180, 55, 12, 30, 5, 7),
      Point(4, 300, 70, 20, 90, 6, 9),   Point(8, 390, 120, 40, 250, 9, 14),
      Point(16, 400, 240, 90, 600, 15, 30)};
  EXPECT_EQ(FindKnee(pts, {100, 10}), 2u);   // c=8 breaks TTFT p99, c=8 also TPOT
  EXPECT_EQ(FindKnee(pts, {300, 20}), 3u);   // c=16 breaks both
  EXPECT_EQ(FindKnee(pts, {0, 0}), 4u);      // no SLO: the highest throughput
  EXPECT_EQ(FindKnee(pts, {5, 0}), std::nullopt);
  std::vector<SweepPoint> failing = pts;
  failing[4].failed = 1;  // a level with failed requests is never the knee
  EXPECT_EQ(FindKnee(failing, {0, 0}), 3u);
  const nlohmann::json j = SweepJson("s", "shared", "a", {300, 20}, pts);
  EXPECT_EQ(j["knee"]["concurrency"], 8);
  EXPECT_EQ(j["knee"]["max_seqs"], 8);
  EXPECT_EQ(j["knee"]["max_batched_tokens"], 32);
  EXPECT_EQ(j["points"].size(), 5u);
  EXPECT_EQ(j["points"][1]["ttft"]["p99_ms"], 30);
  EXPECT_TRUE(SweepJson("s", "shared", "a", {5, 0}, pts)["knee"].is_null());
}

TEST(BenchSweepTest, ShapeCheckNamesEveryFallBeyondTheTolerance) {
  std::vector<SweepPoint> pts = {Point(1, 100, 50, 10, 20, 5, 6), Point(2, 180, 55, 12, 30, 5, 7),
                                 Point(4, 175, 54, 20, 90, 6, 9)};
  // Saturation (180 -> 175) and a small dip in time per request are within 10%.
  EXPECT_TRUE(CheckSweepShape(pts, 0.10).empty());
  pts[2].total_tokens_per_s = 150;
  pts[2].ttft.median = 10;
  EXPECT_EQ(CheckSweepShape(pts, 0.10),
            (std::vector<std::string>{"throughput falls from concurrency 2 to 4",
                                      "median TTFT falls from concurrency 2 to 4"}));
}

}  // namespace
}  // namespace llmux::bench
