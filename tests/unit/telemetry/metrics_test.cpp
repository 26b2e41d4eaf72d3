#include "llmux/metrics.h"

#include <gtest/gtest.h>

#include <optional>
#include <sstream>
#include <vector>

namespace llmux {
namespace {

// The exposition line for `series` (name{labels}), or "" when absent.
std::string Line(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return line;
  }
  return "";
}

MetricsSnapshot Snapshot() {
  MetricsSnapshot s;
  EngineStats& e = s.pools.emplace_back(PoolEngineStats{"shared", "stories", {}}).stats;
  e.running = 3;
  e.waiting = 2;
  e.kv_usage = 0.25;
  e.prompt_tokens_total = 100;
  e.generation_tokens_total = 40;
  e.num_preemptions = 1;
  e.prefix_query_tokens = 80;
  e.prefix_hit_tokens = 32;
  MetricsSnapshot::Tenant a;
  a.name = "acme";
  a.inflight_budget = 32768;
  a.queued = 4;
  TenantStats ts;
  ts.inflight_tokens = 1200;
  ts.inflight_high_water = 5000;
  ts.blocks_in_use = 7;
  ts.reserved_blocks = 8;
  ts.waiting = 1;
  ts.running = 2;
  a.stats = ts;
  s.tenants.push_back(a);
  return s;
}

TEST(Metrics, ExposesEngineFiguresUnderVllmNames) {
  auto m = Metrics::Create("stories");
  const std::string text = m->Render(Snapshot());
  EXPECT_EQ(Line(text, R"(vllm:num_requests_running{model_name="stories",pool="shared"})"),
            R"(vllm:num_requests_running{model_name="stories",pool="shared"} 3)");
  EXPECT_EQ(Line(text, R"(vllm:num_requests_waiting{model_name="stories",pool="shared"})"),
            R"(vllm:num_requests_waiting{model_name="stories",pool="shared"} 2)");
  EXPECT_EQ(Line(text, R"(vllm:kv_cache_usage_perc{model_name="stories",pool="shared"})"),
            R"(vllm:kv_cache_usage_perc{model_name="stories",pool="shared"} 0.25)");
  EXPECT_EQ(Line(text, R"(vllm:prompt_tokens_total{model_name="stories",pool="shared"})"),
            R"(vllm:prompt_tokens_total{model_name="stories",pool="shared"} 100)");
  EXPECT_EQ(Line(text, R"(vllm:prefix_cache_hits_total{model_name="stories",pool="shared"})"),
            R"(vllm:prefix_cache_hits_total{model_name="stories",pool="shared"} 32)");
  EXPECT_NE(text.find("# TYPE vllm:prompt_tokens_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE vllm:time_to_first_token_seconds histogram"), std::string::npos);
}

TEST(Metrics, EngineCountersAdvanceByTheDifferenceBetweenScrapes) {
  auto m = Metrics::Create("stories");
  MetricsSnapshot s = Snapshot();
  (void)m->Render(s);
  s.pools[0].stats.generation_tokens_total = 55;
  const std::string text = m->Render(s);
  EXPECT_EQ(Line(text, R"(vllm:generation_tokens_total{model_name="stories",pool="shared"})"),
            R"(vllm:generation_tokens_total{model_name="stories",pool="shared"} 55)");
}

// Every pool's engine is exported, labelled with its pool and the model it serves; each pool's
// counters advance from its own previous value.
TEST(Metrics, EngineSeriesPerPoolWithPoolAndModelLabels) {
  auto m = Metrics::Create("stories");
  MetricsSnapshot s = Snapshot();
  EngineStats& d = s.pools.emplace_back(PoolEngineStats{"dedicated", "stories-big", {}}).stats;
  d.running = 5;
  d.kv_usage = 0.5;
  d.generation_tokens_total = 9;
  d.kv_events_dropped = 2;
  d.steps_yielded = 3;
  d.steps_yielded_underserved = 1;
  d.yielded_seconds = 0.25;
  (void)m->Render(s);
  d.steps_yielded = 7;
  d.steps_yielded_underserved = 2;
  d.yielded_seconds = 0.75;
  d.generation_tokens_total = 19;
  s.pools[0].stats.generation_tokens_total = 41;
  const std::string text = m->Render(s);
  EXPECT_EQ(Line(text, R"(vllm:num_requests_running{model_name="stories-big",pool="dedicated"})"),
            R"(vllm:num_requests_running{model_name="stories-big",pool="dedicated"} 5)");
  EXPECT_EQ(Line(text, R"(vllm:num_requests_running{model_name="stories",pool="shared"})"),
            R"(vllm:num_requests_running{model_name="stories",pool="shared"} 3)");
  EXPECT_EQ(Line(text, R"(vllm:kv_cache_usage_perc{model_name="stories-big",pool="dedicated"})"),
            R"(vllm:kv_cache_usage_perc{model_name="stories-big",pool="dedicated"} 0.5)");
  EXPECT_EQ(
      Line(text, R"(vllm:generation_tokens_total{model_name="stories-big",pool="dedicated"})"),
      R"(vllm:generation_tokens_total{model_name="stories-big",pool="dedicated"} 19)");
  EXPECT_EQ(Line(text, R"(vllm:generation_tokens_total{model_name="stories",pool="shared"})"),
            R"(vllm:generation_tokens_total{model_name="stories",pool="shared"} 41)");
  EXPECT_EQ(Line(text, R"(llmux_kv_events_dropped_total{model_name="stories-big",pool="dedicated"})"),
            R"(llmux_kv_events_dropped_total{model_name="stories-big",pool="dedicated"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_engine_steps_yielded_total{model_name="stories-big",pool="dedicated"})"),
            R"(llmux_engine_steps_yielded_total{model_name="stories-big",pool="dedicated"} 7)");
  EXPECT_EQ(
      Line(text,
           R"(llmux_engine_steps_yielded_underserved_total{model_name="stories-big",pool="dedicated"})"),
      R"(llmux_engine_steps_yielded_underserved_total{model_name="stories-big",pool="dedicated"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_engine_yielded_seconds_total{pool="dedicated"})"),
            R"(llmux_engine_yielded_seconds_total{pool="dedicated"} 0.75)");
  EXPECT_EQ(Line(text, R"(llmux_engine_yielded_seconds_total{pool="shared"})"),
            R"(llmux_engine_yielded_seconds_total{pool="shared"} 0)");
}

// A process pool's worker restarts with its counters at 0: what it counts afterwards is added,
// and the exported counter never goes down.
TEST(Metrics, PoolCountersSurviveAWorkerRestart) {
  auto m = Metrics::Create("stories");
  MetricsSnapshot s;
  EngineStats& d = s.pools.emplace_back(PoolEngineStats{"dedicated", "stories", {}}).stats;
  d.generation_tokens_total = 40;
  (void)m->Render(s);
  d.generation_tokens_total = 10;  // the new worker's first figures
  (void)m->Render(s);
  d.generation_tokens_total = 15;
  const std::string text = m->Render(s);
  EXPECT_EQ(Line(text, R"(vllm:generation_tokens_total{model_name="stories",pool="dedicated"})"),
            R"(vllm:generation_tokens_total{model_name="stories",pool="dedicated"} 55)");
}

TEST(Metrics, TenantGaugesIncludingTheHighWaterMark) {
  auto m = Metrics::Create("stories");
  m->SetTenants({"acme"});
  const std::string text = m->Render(Snapshot());
  EXPECT_EQ(Line(text, R"(llmux_tenant_inflight_tokens_high_water{tenant="acme"})"),
            R"(llmux_tenant_inflight_tokens_high_water{tenant="acme"} 5000)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_inflight_tokens{tenant="acme"})"),
            R"(llmux_tenant_inflight_tokens{tenant="acme"} 1200)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_inflight_tokens_budget{tenant="acme"})"),
            R"(llmux_tenant_inflight_tokens_budget{tenant="acme"} 32768)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_queued_requests{tenant="acme"})"),
            R"(llmux_tenant_queued_requests{tenant="acme"} 4)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_kv_blocks_reserved{tenant="acme"})"),
            R"(llmux_tenant_kv_blocks_reserved{tenant="acme"} 8)");
}

TEST(Metrics, RequestsCountPerTenantAndUnknownTenantsFoldIntoOneLabel) {
  auto m = Metrics::Create("stories");
  m->SetTenants({"acme"});
  RequestObservation r;
  r.tenant = "acme";
  r.lane = "premium";
  r.outcome = "ok";
  r.finish_reasons = {"length", "stop"};
  r.prompt_tokens = 10;
  r.cached_tokens = 4;
  r.completion_tokens = 7;
  r.queue_seconds = 0.002;
  r.first_token_seconds = 0.003;
  r.e2e_seconds = 0.5;
  m->ObserveRequest(r);
  m->ObserveRequest(r);
  m->CountRejection("acme", RejectReason::kRateLimit);
  m->CountRejection("not-in-policy", RejectReason::kAuth);
  m->CountRejection(kUnauthenticatedTenant, RejectReason::kAuth);
  const std::string text = m->Render(MetricsSnapshot{});
  EXPECT_EQ(Line(text, R"(llmux_requests_total{lane="premium",outcome="ok",tenant="acme"})"),
            R"(llmux_requests_total{lane="premium",outcome="ok",tenant="acme"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_prompt_tokens_total{tenant="acme"})"),
            R"(llmux_prompt_tokens_total{tenant="acme"} 20)");
  EXPECT_EQ(Line(text, R"(llmux_cached_prompt_tokens_total{tenant="acme"})"),
            R"(llmux_cached_prompt_tokens_total{tenant="acme"} 8)");
  EXPECT_EQ(Line(text, R"(llmux_completion_tokens_total{tenant="acme"})"),
            R"(llmux_completion_tokens_total{tenant="acme"} 14)");
  EXPECT_EQ(Line(text, R"(llmux_rejections_total{reason="rate_limit",tenant="acme"})"),
            R"(llmux_rejections_total{reason="rate_limit",tenant="acme"} 1)");
  EXPECT_EQ(Line(text, R"(llmux_rejections_total{reason="auth",tenant="_unauthenticated"})"),
            R"(llmux_rejections_total{reason="auth",tenant="_unauthenticated"} 2)");
  EXPECT_EQ(text.find("not-in-policy"), std::string::npos);
  EXPECT_EQ(
      Line(text, R"(vllm:request_success_total{finished_reason="length",model_name="stories"})"),
      R"(vllm:request_success_total{finished_reason="length",model_name="stories"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_time_to_first_token_seconds_count{lane="premium",tenant="acme"})"),
            R"(llmux_time_to_first_token_seconds_count{lane="premium",tenant="acme"} 2)");
  EXPECT_EQ(
      Line(text,
           R"(llmux_time_to_first_token_seconds_bucket{lane="premium",tenant="acme",le="0.001"})"),
      R"(llmux_time_to_first_token_seconds_bucket{lane="premium",tenant="acme",le="0.001"} 0)");
  EXPECT_EQ(
      Line(text,
           R"(llmux_time_to_first_token_seconds_bucket{lane="premium",tenant="acme",le="0.005"})"),
      R"(llmux_time_to_first_token_seconds_bucket{lane="premium",tenant="acme",le="0.005"} 2)");
}

TEST(Metrics, PhasesAndTheFullPathTtftPerTenantLaneAndPhase) {
  auto m = Metrics::Create("stories");
  m->SetTenants({"acme"});
  m->ObservePhases({"acme", "premium", {{"auth", 0.00005}, {"prefill", 0.003}}, 0.004});
  m->ObservePhases({"acme", "premium", {{"auth", 0.00015}}, std::nullopt});  // refused early
  m->ObservePhases({"stranger", "batch", {{"auth", 0.00005}}, std::nullopt});
  const std::string text = m->Render(MetricsSnapshot{});
  const std::string auth = R"(llmux_request_phase_seconds_bucket{lane="premium",phase="auth",tenant="acme",le=")";
  // Buckets from 100 us: one of the two auth phases is under it, both under 200 us.
  EXPECT_EQ(Line(text, auth + R"(0.0001"})"), auth + R"(0.0001"} 1)");
  EXPECT_EQ(Line(text, auth + R"(0.0002"})"), auth + R"(0.0002"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_request_phase_seconds_count{lane="premium",phase="prefill",tenant="acme"})"),
            R"(llmux_request_phase_seconds_count{lane="premium",phase="prefill",tenant="acme"} 1)");
  EXPECT_EQ(Line(text, R"(llmux_full_path_time_to_first_token_seconds_count{lane="premium",tenant="acme"})"),
            R"(llmux_full_path_time_to_first_token_seconds_count{lane="premium",tenant="acme"} 1)");
  EXPECT_EQ(Line(text, R"(llmux_full_path_time_to_first_token_seconds_sum{lane="premium",tenant="acme"})"),
            R"(llmux_full_path_time_to_first_token_seconds_sum{lane="premium",tenant="acme"} 0.004)");
  // Tenants outside the policy fold into _unauthenticated, as everywhere.
  EXPECT_EQ(Line(text, R"(llmux_request_phase_seconds_count{lane="batch",phase="auth",tenant="_unauthenticated"})"),
            R"(llmux_request_phase_seconds_count{lane="batch",phase="auth",tenant="_unauthenticated"} 1)");
  EXPECT_EQ(text.find("stranger"), std::string::npos);
}

// The step histograms come from every pool's engine counts at scrape time (a process pool's
// from its worker's pings), each under its own pool; a restarted worker's counts start again.
TEST(Metrics, EngineStepHistogramsPerPoolAndPolicyReloads) {
  auto m = Metrics::Create("stories", "shared");
  m->CountPolicyReload(true);
  m->CountPolicyReload(false);
  m->CountPolicyReload(false);
  {
    // Before any step: the shared pool's series exist at 0.
    const std::string text = m->Render(MetricsSnapshot{});
    EXPECT_EQ(Line(text, R"(llmux_engine_batch_size_count{pool="shared"})"),
              R"(llmux_engine_batch_size_count{pool="shared"} 0)");
  }
  auto snapshot = [](std::vector<std::pair<int, int>> shared_steps,
                     std::vector<std::pair<int, int>> gold_steps) {
    auto stats = [](const std::vector<std::pair<int, int>>& steps) {
      EngineStats e;
      for (const auto& [seqs, tokens] : steps) {
        e.step_seconds.Observe(0.004, kStepSecondsBounds);
        e.batch_size.Observe(seqs, kBatchSizeBounds);
        e.batch_tokens.Observe(tokens, kBatchTokenBounds);
      }
      return e;
    };
    MetricsSnapshot s;
    s.pools = {PoolEngineStats{"shared", "stories", stats(shared_steps)},
               PoolEngineStats{"gold", "stories-gold", stats(gold_steps)}};
    return s;
  };
  m->Render(snapshot({{3, 40}}, {{1, 1}, {2, 2}}));
  // The gold worker restarted: its counts start again (one step of 5 sequences since).
  const std::string text = m->Render(snapshot({{3, 40}, {4, 100}}, {{5, 600}}));
  EXPECT_EQ(Line(text, R"(llmux_engine_batch_size_sum{pool="shared"})"),
            R"(llmux_engine_batch_size_sum{pool="shared"} 7)");
  EXPECT_EQ(Line(text, R"(llmux_engine_batch_tokens_bucket{pool="shared",le="64"})"),
            R"(llmux_engine_batch_tokens_bucket{pool="shared",le="64"} 1)");
  EXPECT_EQ(Line(text, R"(llmux_engine_batch_tokens_bucket{pool="shared",le="128"})"),
            R"(llmux_engine_batch_tokens_bucket{pool="shared",le="128"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_engine_batch_size_count{pool="gold"})"),
            R"(llmux_engine_batch_size_count{pool="gold"} 3)");
  EXPECT_EQ(Line(text, R"(llmux_engine_batch_size_sum{pool="gold"})"),
            R"(llmux_engine_batch_size_sum{pool="gold"} 8)");
  EXPECT_EQ(Line(text, R"(llmux_engine_batch_size_bucket{pool="gold",le="4"})"),
            R"(llmux_engine_batch_size_bucket{pool="gold",le="4"} 2)");
  EXPECT_EQ(Line(text, R"(llmux_engine_step_seconds_count{pool="gold"})"),
            R"(llmux_engine_step_seconds_count{pool="gold"} 3)");
  EXPECT_EQ(Line(text, R"(llmux_engine_step_seconds_bucket{pool="gold",le="0.005"})"),
            R"(llmux_engine_step_seconds_bucket{pool="gold",le="0.005"} 3)");
  EXPECT_EQ(Line(text, R"(llmux_policy_reloads_total{result="rejected"})"),
            R"(llmux_policy_reloads_total{result="rejected"} 2)");
}

// Engine time is read from the engines' cumulative figures at scrape time, for every pool (a
// process pool's from its worker's ping), each tenant under its own pool.
TEST(Metrics, PoolBusySecondsAndEachTenantsShare) {
  auto m = Metrics::Create("stories", "shared");
  m->SetTenants({"acme", "beta", "gamma"});
  auto snapshot = [](double shared_busy, double gold_busy, double acme, double beta,
                     std::optional<double> gamma) {
    MetricsSnapshot s;
    PoolEngineStats shared{"shared", "stories", {}};
    shared.stats.busy_seconds = shared_busy;
    PoolEngineStats gold{"gold", "stories-gold", {}};
    gold.stats.busy_seconds = gold_busy;
    s.pools = {shared, gold};
    auto tenant = [](const char* name, const char* pool, std::optional<double> seconds) {
      MetricsSnapshot::Tenant t;
      t.name = name;
      t.pool = pool;
      if (seconds) {
        t.stats = TenantStats{};
        t.stats->engine_seconds = *seconds;
      }
      return t;
    };
    s.tenants = {tenant("acme", "gold", acme), tenant("beta", "gold", beta),
                 tenant("gamma", "shared", gamma)};
    return s;
  };
  {
    // Every tenant's series exists at 0 from the first scrape, under its own pool only; a
    // tenant its engine does not know yet (gamma) too.
    const std::string text = m->Render(snapshot(0, 0, 0, 0, std::nullopt));
    EXPECT_EQ(Line(text, R"(llmux_tenant_engine_seconds_total{pool="gold",tenant="beta"})"),
              R"(llmux_tenant_engine_seconds_total{pool="gold",tenant="beta"} 0)");
    EXPECT_EQ(Line(text, R"(llmux_tenant_engine_seconds_total{pool="shared",tenant="gamma"})"),
              R"(llmux_tenant_engine_seconds_total{pool="shared",tenant="gamma"} 0)");
    EXPECT_EQ(text.find(R"(llmux_tenant_engine_seconds_total{pool="shared",tenant="acme"})"),
              std::string::npos);
  }
  m->Render(snapshot(2.0, 0.5, 0.375, 0.125, 1.5));
  // A worker restart: gold's figures start again from 0 (0.25 new), acme's too (0.125 new).
  const std::string text = m->Render(snapshot(3.0, 0.25, 0.125, 0.25, 2.5));
  EXPECT_EQ(Line(text, R"(llmux_pool_busy_seconds_total{pool="shared"})"),
            R"(llmux_pool_busy_seconds_total{pool="shared"} 3)");
  EXPECT_EQ(Line(text, R"(llmux_pool_busy_seconds_total{pool="gold"})"),
            R"(llmux_pool_busy_seconds_total{pool="gold"} 0.75)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_engine_seconds_total{pool="gold",tenant="acme"})"),
            R"(llmux_tenant_engine_seconds_total{pool="gold",tenant="acme"} 0.5)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_engine_seconds_total{pool="gold",tenant="beta"})"),
            R"(llmux_tenant_engine_seconds_total{pool="gold",tenant="beta"} 0.25)");
  EXPECT_EQ(Line(text, R"(llmux_tenant_engine_seconds_total{pool="shared",tenant="gamma"})"),
            R"(llmux_tenant_engine_seconds_total{pool="shared",tenant="gamma"} 2.5)");
}

TEST(Metrics, LedgerHealthOnlyWhenTheSnapshotHasALedger) {
  auto m = Metrics::Create("stories");
  EXPECT_EQ(m->Render(MetricsSnapshot{}).find("\nllmux_ledger_store_up "), std::string::npos);
  MetricsSnapshot s;
  s.ledger = LedgerHealth{false, 7, 3};
  std::string text = m->Render(s);
  EXPECT_NE(text.find("\nllmux_ledger_store_up 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nllmux_ledger_spooled_rows 7\n"), std::string::npos);
  EXPECT_NE(text.find("\nllmux_ledger_replayed_rows_total 3\n"), std::string::npos);
  s.ledger = LedgerHealth{true, 0, 10};  // the counter advances by the difference
  text = m->Render(s);
  EXPECT_NE(text.find("\nllmux_ledger_store_up 1\n"), std::string::npos);
  EXPECT_NE(text.find("\nllmux_ledger_spooled_rows 0\n"), std::string::npos);
  EXPECT_NE(text.find("\nllmux_ledger_replayed_rows_total 10\n"), std::string::npos);
}

}  // namespace
}  // namespace llmux

namespace llmux {
namespace {

TEST(MetricsEngineScopeTest, RouterSeriesMatchTheFullExposition) {
  auto m = Metrics::Create("stories", "shared");
  m->SetTenants({"acme"});
  m->SetCacheConfig(CacheConfigInfo{16, 4096, true});
  MetricsSnapshot s;
  EngineStats& e = s.pools.emplace_back(PoolEngineStats{"shared", "stories", {}}).stats;
  e.running = 3;
  e.waiting = 2;
  e.kv_usage = 0.25;
  e.num_preemptions = 7;
  e.prompt_tokens_total = 100;
  e.generation_tokens_total = 40;
  e.prefix_query_tokens = 80;
  e.prefix_hit_tokens = 32;
  MetricsSnapshot::Tenant t;
  t.name = "acme";
  s.tenants.push_back(t);
  const std::string full = m->Render(s);
  const std::string engine = m->RenderEngine(s.pools);
  auto line = [](const std::string& text, const std::string& prefix) {
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) {
      if (l.rfind(prefix, 0) == 0) return l;
    }
    return std::string();
  };
  EXPECT_EQ(line(engine, "vllm:num_requests_running{"),
            "vllm:num_requests_running{model_name=\"stories\",pool=\"shared\"} 3");
  EXPECT_EQ(line(engine, "vllm:num_requests_waiting{"),
            "vllm:num_requests_waiting{model_name=\"stories\",pool=\"shared\"} 2");
  EXPECT_EQ(line(engine, "vllm:kv_cache_usage_perc{"),
            "vllm:kv_cache_usage_perc{model_name=\"stories\",pool=\"shared\"} 0.25");
  EXPECT_EQ(line(engine, "vllm:num_preemptions_total{"),
            "vllm:num_preemptions_total{model_name=\"stories\",pool=\"shared\"} 7");
  EXPECT_EQ(line(engine, "# TYPE vllm:num_preemptions_total"),
            "# TYPE vllm:num_preemptions_total counter");
  EXPECT_EQ(line(engine, "# TYPE vllm:num_requests_waiting"),
            "# TYPE vllm:num_requests_waiting gauge");
  EXPECT_EQ(line(engine, "vllm:cache_config_info{"),
            "vllm:cache_config_info{block_size=\"16\",enable_prefix_caching=\"True\","
            "num_gpu_blocks=\"4096\"} 1");
  // The full exposition carries the same cache_config_info series and values.
  EXPECT_EQ(line(full, "vllm:cache_config_info{"), line(engine, "vllm:cache_config_info{"));
  EXPECT_EQ(line(full, "vllm:num_preemptions_total{"), line(engine, "vllm:num_preemptions_total{"));
  EXPECT_EQ(line(full, "vllm:num_requests_running{"), line(engine, "vllm:num_requests_running{"));
  // Nothing per tenant, no histograms.
  EXPECT_EQ(engine.find("tenant="), std::string::npos);
  EXPECT_EQ(engine.find("_bucket"), std::string::npos);
  EXPECT_NE(full.find("tenant=\"acme\""), std::string::npos);
}

// Several pools: one HELP/TYPE per series, one line per pool, the same lines as the full page.
TEST(MetricsEngineScopeTest, EveryPoolUnderOneSeriesHeader) {
  auto m = Metrics::Create("stories", "shared");
  MetricsSnapshot s;
  s.pools.push_back(PoolEngineStats{"shared", "stories", {}});
  s.pools.push_back(PoolEngineStats{"dedicated", "stories-dedicated", {}});
  s.pools[0].stats.waiting = 1;
  s.pools[1].stats.waiting = 6;
  s.pools[1].stats.prompt_tokens_total = 12;
  const std::string full = m->Render(s);
  const std::string engine = m->RenderEngine(s.pools);
  std::istringstream in(engine);
  std::vector<std::string> waiting;
  for (std::string l; std::getline(in, l);) {
    if (l.find("vllm:num_requests_waiting") != std::string::npos) waiting.push_back(l);
  }
  ASSERT_EQ(waiting.size(), 4u) << engine;
  EXPECT_EQ(waiting[0].rfind("# HELP vllm:num_requests_waiting ", 0), 0u);
  EXPECT_EQ(waiting[1], "# TYPE vllm:num_requests_waiting gauge");
  EXPECT_EQ(waiting[2], "vllm:num_requests_waiting{model_name=\"stories\",pool=\"shared\"} 1");
  EXPECT_EQ(waiting[3],
            "vllm:num_requests_waiting{model_name=\"stories-dedicated\",pool=\"dedicated\"} 6");
  const std::string prompt =
      "vllm:prompt_tokens_total{model_name=\"stories-dedicated\",pool=\"dedicated\"} 12";
  EXPECT_NE(engine.find("\n" + prompt + "\n"), std::string::npos) << engine;
  EXPECT_NE(full.find("\n" + prompt + "\n"), std::string::npos) << full;
  EXPECT_NE(full.find("\n" + waiting[3] + "\n"), std::string::npos) << full;
}

}  // namespace
}  // namespace llmux
