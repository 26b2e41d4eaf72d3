// llmux-bench: a run's figures (per tenant, overall, fairness, admin stats) and the scenario's
// checks evaluated over them. Header-only (tested by unit_tools).
#pragma once

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "metrics.h"
#include "scenario.h"

namespace llmux::bench {

// The raw outcome of one run, as the load generator records it.
struct RunData {
  std::vector<std::string> tenants;    // RequestRecord::tenant indexes this
  std::vector<RequestRecord> records;
  double duration_s = 0;
  std::map<std::string, int64_t> max_inflight_seen, inflight_high_water;  // /admin/stats
  int64_t admin_polls = 0;
  // CPU seconds (user + system) over the run: the load generator's processes (the flood's and
  // each `process: own` tenant's) and the daemon's (-1 when llmux-bench did not start it).
  double loadgen_cpu_s = 0;
  double daemon_cpu_s = -1;
  int loadgen_processes = 1;
  // The daemon's own view (its access lines; server_log.h): per tenant, the full-path TTFT in
  // ms of each call. Empty when llmux-bench did not start the daemon.
  std::map<std::string, std::vector<double>> server_full_ttft_ms;
};

struct RunReport {
  std::string name;
  std::vector<std::string> tenants;
  std::vector<double> weights;
  std::vector<Summary> per_tenant;
  Summary overall;
  Fairness fairness;
  RunData data;
};

inline RunReport BuildRunReport(const Scenario& sc, const std::string& run_name, RunData data) {
  RunReport rep;
  rep.name = run_name;
  rep.tenants = data.tenants;
  std::vector<Slo> slos;
  for (const std::string& n : data.tenants) {
    const TenantLoad* t = sc.FindTenant(n);
    rep.weights.push_back(t ? t->weight : 1);
    slos.push_back(t ? t->slo : Slo{});
  }
  for (size_t k = 0; k < data.tenants.size(); ++k) {
    rep.per_tenant.push_back(Summarize(data.records, data.duration_s, slos,
                                       [k](const RequestRecord& r) { return r.tenant == k; }));
  }
  rep.overall = Summarize(data.records, data.duration_s, slos, [](const RequestRecord&) { return true; });
  rep.fairness = ComputeFairness(data.records, data.tenants.size(), rep.weights, sc.prefill_weight,
                                 sc.decode_weight);
  rep.data = std::move(data);
  return rep;
}

struct CheckResult {
  std::string what;   // e.g. "premium p99 TTFT loaded/idle = 1.08 <= 1.2"
  double value = 0;
  bool pass = false;
};

namespace report_internal {

inline int TenantIndex(const RunReport& r, const std::string& tenant) {
  for (size_t k = 0; k < r.tenants.size(); ++k) {
    if (r.tenants[k] == tenant) return static_cast<int>(k);
  }
  return -1;
}

inline std::string Fmt(double v) {
  std::ostringstream ss;
  ss.precision(4);
  ss << v;
  return ss.str();
}

}  // namespace report_internal

// Evaluates `sc.checks` over the runs' reports (by run name). A check whose run or tenant has
// no data fails, saying so.
inline std::vector<CheckResult> EvaluateChecks(const Scenario& sc,
                                               const std::map<std::string, RunReport>& runs) {
  using report_internal::Fmt;
  using report_internal::TenantIndex;
  std::vector<CheckResult> out;
  for (const Check& c : sc.checks) {
    CheckResult res;
    auto run = runs.find(c.run);
    auto base = runs.find(c.baseline);
    if (run == runs.end()) {
      out.push_back({c.kind + ": run " + c.run + " has no result", 0, false});
      continue;
    }
    const RunReport& r = run->second;
    const int k = TenantIndex(r, c.tenant);
    const bool fifo = c.kind == "fifo_ttft_p99_ratio" || c.kind == "fifo_throughput_ratio";
    const bool server = c.kind == "server_ttft_p99_ratio";
    if (fifo) base = runs.find(c.run + "@fifo");
    if (fifo && base == runs.end()) {
      out.push_back({c.kind + ": run " + c.run + "@fifo has no result (run the fifo ablation: "
                     "`ablate: [fifo]` or --ablate fifo)", 0, false});
      continue;
    }
    if (c.kind == "ttft_p99_ratio" || c.kind == "throughput_ratio" || server) {
      if (base == runs.end()) {
        out.push_back({c.kind + ": baseline run " + c.baseline + " has no result", 0, false});
        continue;
      }
    }
    if (c.kind == "ttft_p99_ratio") {
      const int kb = TenantIndex(base->second, c.tenant);
      if (k < 0 || kb < 0) {
        out.push_back({c.kind + ": tenant " + c.tenant + " not in both runs", 0, false});
        continue;
      }
      const double a = r.per_tenant[k].ttft.p99, b = base->second.per_tenant[kb].ttft.p99;
      res.value = b > 0 ? a / b : INFINITY;
      res.pass = res.value <= c.max;
      res.what = c.tenant + " client-side p99 TTFT " + c.run + "/" + c.baseline + " = " + Fmt(a) +
                 "/" + Fmt(b) + " ms = " + Fmt(res.value) + "x <= " + Fmt(c.max) + "x";
    } else if (server) {
      const auto& now = r.data.server_full_ttft_ms;
      const auto& then = base->second.data.server_full_ttft_ms;
      auto a_it = now.find(c.tenant), b_it = then.find(c.tenant);
      if (a_it == now.end() || b_it == then.end()) {
        out.push_back({c.kind + ": no server-side TTFT of " + c.tenant + " in both runs (the "
                       "daemon's access lines; run with --llmuxd)", 0, false});
        continue;
      }
      const double a = Percentile(a_it->second, 99), b = Percentile(b_it->second, 99);
      res.value = b > 0 ? a / b : INFINITY;
      res.pass = res.value <= c.max;
      res.what = c.tenant + " server-side full-path p99 TTFT " + c.run + "/" + c.baseline + " = " +
                 Fmt(a) + "/" + Fmt(b) + " ms = " + Fmt(res.value) + "x <= " + Fmt(c.max) + "x";
    } else if (fifo) {
      const int kb = TenantIndex(base->second, c.tenant);
      if (k < 0 || kb < 0) {
        out.push_back({c.kind + ": tenant " + c.tenant + " not in both runs", 0, false});
        continue;
      }
      const Summary& policy = r.per_tenant[k];
      const Summary& plain = base->second.per_tenant[kb];
      if (c.kind == "fifo_ttft_p99_ratio") {
        res.value = policy.ttft.p99 > 0 ? plain.ttft.p99 / policy.ttft.p99 : 0;
        res.what = c.tenant + " client-side p99 TTFT " + c.run + "@fifo/" + c.run + " = " + Fmt(plain.ttft.p99) +
                   "/" + Fmt(policy.ttft.p99) + " ms = " + Fmt(res.value) + "x >= " + Fmt(c.min) + "x";
      } else {
        res.value = plain.output_throughput > 0 ? policy.output_throughput / plain.output_throughput : 0;
        res.what = c.tenant + " output tok/s " + c.run + "/" + c.run + "@fifo = " +
                   Fmt(policy.output_throughput) + "/" + Fmt(plain.output_throughput) + " = " +
                   Fmt(res.value) + "x >= " + Fmt(c.min) + "x";
      }
      res.pass = policy.completed > 0 && plain.completed > 0 && res.value >= c.min;
    } else if (c.kind == "errors") {
      if (k < 0) {
        out.push_back({c.kind + ": tenant " + c.tenant + " not in run " + c.run, 0, false});
        continue;
      }
      res.value = static_cast<double>(r.per_tenant[k].failed);
      res.pass = res.value <= c.max;
      res.what = c.tenant + " failed requests in " + c.run + " = " + Fmt(res.value) + " <= " + Fmt(c.max);
    } else if (c.kind == "fair_share") {
      double worst = 0;
      std::string detail;
      for (size_t i = 0; i < r.tenants.size(); ++i) {
        const double want = r.fairness.weight_share[i], got = r.fairness.share[i];
        const double dev = want > 0 ? std::fabs(got - want) / want : 0;
        worst = std::max(worst, dev);
        detail += (i ? ", " : "") + r.tenants[i] + " " + Fmt(got * 100) + "% (want " + Fmt(want * 100) + "%)";
      }
      res.value = worst;
      res.pass = r.fairness.window.end > r.fairness.window.start && worst <= c.tolerance;
      res.what = "service shares in " + c.run + ": " + detail + "; worst deviation " +
                 Fmt(worst * 100) + "% <= " + Fmt(c.tolerance * 100) + "%";
    } else if (c.kind == "throughput_ratio") {
      const double a = r.overall.output_throughput, b = base->second.overall.output_throughput;
      res.value = b > 0 ? a / b : INFINITY;
      res.pass = res.value >= c.min;
      res.what = "output tok/s " + c.run + "/" + c.baseline + " = " + Fmt(a) + "/" + Fmt(b) + " = " +
                 Fmt(res.value) + "x >= " + Fmt(c.min) + "x";
    } else if (c.kind == "inflight_high_water") {
      auto hw = r.data.inflight_high_water.find(c.tenant);
      if (hw == r.data.inflight_high_water.end()) {
        out.push_back({c.kind + ": no /admin/stats figure for " + c.tenant + " in " + c.run, 0, false});
        continue;
      }
      res.value = static_cast<double>(hw->second);
      res.pass = res.value <= c.max;
      res.what = c.tenant + " inflight_high_water in " + c.run + " = " + Fmt(res.value) + " <= " + Fmt(c.max);
    }
    out.push_back(res);
  }
  return out;
}

}  // namespace llmux::bench
