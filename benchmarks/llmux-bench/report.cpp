#include "report.h"

namespace llmux::bench {

using json = nlohmann::json;

namespace {

void Line(std::FILE* out, const char* label, double v) { std::fprintf(out, "%-40s %-10.2f\n", label, v); }
void Line(std::FILE* out, const char* label, int64_t v) {
  std::fprintf(out, "%-40s %-10lld\n", label, static_cast<long long>(v));
}
void Rule(std::FILE* out, const std::string& title, char fill) {
  const int width = 50, pad = (width - static_cast<int>(title.size())) / 2;
  std::string s(static_cast<size_t>(std::max(pad, 0)), fill);
  s += title;
  s.resize(width, fill);
  std::fprintf(out, "%s\n", s.c_str());
}

void LatencyBlock(std::FILE* out, const std::string& title, const std::string& name, const LatencyStats& l) {
  Rule(out, title, '-');
  Line(out, ("Mean " + name + " (ms):").c_str(), l.mean);
  Line(out, ("Median " + name + " (ms):").c_str(), l.median);
  Line(out, ("P99 " + name + " (ms):").c_str(), l.p99);
}

void SummaryBlock(std::FILE* out, const std::string& title, const Summary& s) {
  Rule(out, " " + title + " ", '=');
  Line(out, "Successful requests:", s.completed);
  Line(out, "Failed requests:", s.failed);
  for (const auto& [kind, n] : s.failures) {
    Line(out, ("  rejected/failed (" + kind + "):").c_str(), n);
  }
  Line(out, "Benchmark duration (s):", s.duration_s);
  Line(out, "Total input tokens:", s.prompt_tokens);
  Line(out, "Total generated tokens:", s.output_tokens);
  Line(out, "Request throughput (req/s):", s.request_throughput);
  Line(out, "Request goodput (req/s):", s.goodput);
  Line(out, "Output token throughput (tok/s):", s.output_throughput);
  Line(out, "Total token throughput (tok/s):", s.total_throughput);
  LatencyBlock(out, "Time to First Token", "TTFT", s.ttft);
  LatencyBlock(out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot);
  LatencyBlock(out, "Inter-token Latency", "ITL", s.itl);
  LatencyBlock(out, "End-to-end Latency", "E2EL", s.e2el);
}

}  // namespace

void PrintRun(std::FILE* out, const RunReport& run) {
  for (size_t k = 0; k < run.tenants.size(); ++k) {
    SummaryBlock(out, "run " + run.name + " / tenant " + run.tenants[k], run.per_tenant[k]);
  }
  if (run.tenants.size() > 1) SummaryBlock(out, "run " + run.name + " / overall", run.overall);
  if (run.tenants.size() > 1) {
    Rule(out, "Fairness (backlogged window)", '-');
    Line(out, "Window start (s):", run.fairness.window.start);
    Line(out, "Window end (s):", run.fairness.window.end);
    for (size_t k = 0; k < run.tenants.size(); ++k) {
      std::fprintf(out, "%-40s %.2f%% (weight share %.2f%%)\n", ("  service share " + run.tenants[k] + ":").c_str(),
                   run.fairness.share[k] * 100, run.fairness.weight_share[k] * 100);
    }
    Line(out, "Jain's index (weight-normalised):", run.fairness.jain);
    Line(out, "Max service gap (tokens/weight):", run.fairness.max_service_gap);
  }
  Rule(out, "CPU over the run (s; % of one core)", '-');
  const double secs = run.data.duration_s > 0 ? run.data.duration_s : 1;
  std::fprintf(out, "%-40s %.2f (%.1f%%, %d processes)\n", "Load generator CPU:", run.data.loadgen_cpu_s,
               run.data.loadgen_cpu_s / secs * 100, run.data.loadgen_processes);
  if (run.data.daemon_cpu_s >= 0) {
    std::fprintf(out, "%-40s %.2f (%.1f%%)\n", "llmuxd CPU:", run.data.daemon_cpu_s,
                 run.data.daemon_cpu_s / secs * 100);
  }
  if (!run.data.server_full_ttft_ms.empty()) {
    Rule(out, "Server-side full-path TTFT (ms)", '-');
    for (const auto& [name, ms] : run.data.server_full_ttft_ms) {
      std::fprintf(out, "%-40s %zu calls, p50 %.2f, p99 %.2f\n", ("  " + name + ":").c_str(),
                   ms.size(), Percentile(ms, 50), Percentile(ms, 99));
    }
  }
  if (run.data.admin_polls > 0) {
    Rule(out, "GET /admin/stats", '-');
    for (const auto& [name, hw] : run.data.inflight_high_water) {
      Line(out, ("  " + name + " inflight_high_water:").c_str(), hw);
      Line(out, ("  " + name + " max inflight_tokens seen:").c_str(), run.data.max_inflight_seen.at(name));
    }
  }
  Rule(out, "", '=');
}

void PrintChecks(std::FILE* out, const std::vector<CheckResult>& checks) {
  for (const CheckResult& c : checks) std::fprintf(out, "%s  %s\n", c.pass ? "PASS" : "FAIL", c.what.c_str());
}

json SummaryJson(const Summary& s) {
  auto lat = [](const LatencyStats& l) { return json{{"mean", l.mean}, {"median", l.median}, {"p99", l.p99}}; };
  return {{"successful_requests", s.completed},
          {"failed_requests", s.failed},
          {"failures", s.failures},
          {"failure_examples", s.failure_examples},
          {"duration_s", s.duration_s},
          {"total_input_tokens", s.prompt_tokens},
          {"total_output_tokens", s.output_tokens},
          {"request_throughput", s.request_throughput},
          {"request_goodput", s.goodput},
          {"output_throughput", s.output_throughput},
          {"total_token_throughput", s.total_throughput},
          {"ttft_ms", lat(s.ttft)},
          {"tpot_ms", lat(s.tpot)},
          {"itl_ms", lat(s.itl)},
          {"e2el_ms", lat(s.e2el)}};
}

json RunJson(const RunReport& run) {
  json tenants = json::object();
  for (size_t k = 0; k < run.tenants.size(); ++k) {
    json t = SummaryJson(run.per_tenant[k]);
    t["weight"] = run.weights[k];
    t["service_share"] = run.fairness.share[k];
    t["service"] = run.fairness.service[k];
    t["weight_share"] = run.fairness.weight_share[k];
    tenants[run.tenants[k]] = std::move(t);
  }
  json j = {{"tenants", tenants},
            {"overall", SummaryJson(run.overall)},
            {"fairness",
             {{"window_s", {run.fairness.window.start, run.fairness.window.end}},
              {"jain_index", run.fairness.jain},
              {"max_service_gap", run.fairness.max_service_gap}}}};
  j["cpu"] = {{"loadgen_seconds", run.data.loadgen_cpu_s},
              {"loadgen_processes", run.data.loadgen_processes}};
  if (run.data.daemon_cpu_s >= 0) j["cpu"]["daemon_seconds"] = run.data.daemon_cpu_s;
  if (!run.data.server_full_ttft_ms.empty()) {
    json server = json::object();
    for (const auto& [name, ms] : run.data.server_full_ttft_ms) {
      server[name] = {{"calls", ms.size()},
                      {"full_path_ttft_ms", {{"median", Percentile(ms, 50)}, {"p99", Percentile(ms, 99)}}}};
    }
    j["server"] = std::move(server);
  }
  if (run.data.admin_polls > 0) {
    json a = json::object();
    for (const auto& [name, hw] : run.data.inflight_high_water) {
      a[name] = {{"inflight_high_water", hw}, {"max_inflight_tokens_seen", run.data.max_inflight_seen.at(name)}};
    }
    j["admin_stats"] = {{"polls", run.data.admin_polls}, {"tenants", a}};
  }
  return j;
}

json ScenarioJson(const Scenario& sc, const std::vector<const RunReport*>& runs,
                  const std::vector<CheckResult>& checks, const json& machine) {
  json r = json::object();
  for (const RunReport* run : runs) r[run->name] = RunJson(*run);
  json c = json::array();
  for (const CheckResult& x : checks) c.push_back({{"check", x.what}, {"value", x.value}, {"pass", x.pass}});
  return {{"scenario", sc.name}, {"description", sc.description}, {"seed", sc.seed},
          {"flood_nice", sc.flood_nice}, {"machine", machine}, {"runs", r}, {"checks", c}};
}

}  // namespace llmux::bench
