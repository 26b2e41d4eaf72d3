// llmux-bench sweep: the latency/throughput curve of one pool. A scenario's tenant is run at
// increasing concurrency; each level is one point (time per request, TTFT and TPOT against
// total tokens/s and tokens per engine-second); the knee is the highest throughput whose p99
// TTFT and p99 TPOT stay within the SLOs. Header-only pure parts (tested by unit_tools); the
// running is in sweep.cpp. See docs/performance.md ("Latency against throughput").
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "metrics.h"

namespace llmux::bench {

// What /metrics says about one pool's engine: the counters a sweep point differences.
struct EngineCounters {
  double step_seconds = 0;  // llmux_engine_step_seconds_sum: steps, schedule through emit
  // llmux_pool_busy_seconds_total: steps, schedule through sampling, the time split among the
  // tenants (llmux_tenant_engine_seconds_total); every pool has it, a process pool's included.
  double busy_seconds = 0;
  double steps = 0;         // llmux_engine_step_seconds_count
  // Cumulative histogram buckets (upper bound -> count) of sequences and tokens per step.
  std::map<double, double> batch_size, batch_tokens;
};

// Parses the Prometheus text exposition; pool name -> counters (from the `pool` label).
inline std::map<std::string, EngineCounters> ParseEngineCounters(const std::string& text) {
  std::map<std::string, EngineCounters> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t brace = line.find('{');
    const size_t close = line.find('}');
    if (brace == std::string::npos || close == std::string::npos) continue;
    const std::string name = line.substr(0, brace);
    const std::string labels = line.substr(brace + 1, close - brace - 1);
    auto label = [&](const std::string& key) -> std::optional<std::string> {
      const std::string k = key + "=\"";
      const size_t at = labels.find(k);
      if (at == std::string::npos || (at > 0 && labels[at - 1] != ',')) return std::nullopt;
      const size_t end = labels.find('"', at + k.size());
      return labels.substr(at + k.size(), end - at - k.size());
    };
    const auto pool = label("pool");
    if (!pool) continue;
    double value = 0;
    try {
      value = std::stod(line.substr(close + 1));
    } catch (...) {
      continue;
    }
    EngineCounters& c = out[*pool];
    auto le = [&]() -> std::optional<double> {
      auto v = label("le");
      if (!v) return std::nullopt;
      if (*v == "+Inf") return 1e300;
      return std::stod(*v);
    };
    if (name == "llmux_engine_step_seconds_sum") c.step_seconds = value;
    else if (name == "llmux_pool_busy_seconds_total") c.busy_seconds = value;
    else if (name == "llmux_engine_step_seconds_count") c.steps = value;
    else if (name == "llmux_engine_batch_size_bucket" && le()) c.batch_size[*le()] = value;
    else if (name == "llmux_engine_batch_tokens_bucket" && le()) c.batch_tokens[*le()] = value;
  }
  return out;
}

// The smallest bucket bound holding `q` of the observations made between `before` and `after`
// (0 when none were made).
inline double BucketQuantile(const std::map<double, double>& before,
                             const std::map<double, double>& after, double q) {
  if (after.empty()) return 0;
  const double total = after.rbegin()->second -
                       (before.empty() ? 0 : before.rbegin()->second);
  if (total <= 0) return 0;
  for (const auto& [bound, count] : after) {
    auto b = before.find(bound);
    const double n = count - (b == before.end() ? 0 : b->second);
    if (n >= q * total) return bound;
  }
  return after.rbegin()->first;
}

struct SweepPoint {
  int concurrency = 0;
  int64_t completed = 0, failed = 0;
  double total_tokens_per_s = 0, output_tokens_per_s = 0;
  double engine_seconds = 0;                  // the pool's busy time in the level (busy_seconds)
  double tokens_per_engine_second = 0;        // (prompt + output tokens) / engine_seconds
  LatencyStats e2el, ttft, tpot;              // ms: time per request, first token, per token
  double batch_seqs_p99 = 0, batch_tokens_p99 = 0;  // bucket bounds of the steps' batches
};

struct SweepSlo {
  double ttft_p99_ms = 0, tpot_p99_ms = 0;  // 0 = no limit
};

inline bool WithinSlo(const SweepPoint& p, const SweepSlo& slo) {
  if (p.completed == 0 || p.failed > 0) return false;
  if (slo.ttft_p99_ms > 0 && p.ttft.p99 > slo.ttft_p99_ms) return false;
  if (slo.tpot_p99_ms > 0 && p.tpot.p99 > slo.tpot_p99_ms) return false;
  return true;
}

// The index of the knee: the point with the highest total tokens/s among those within the
// SLOs; nullopt when none is.
inline std::optional<size_t> FindKnee(const std::vector<SweepPoint>& points, const SweepSlo& slo) {
  std::optional<size_t> best;
  for (size_t i = 0; i < points.size(); ++i) {
    if (!WithinSlo(points[i], slo)) continue;
    if (!best || points[i].total_tokens_per_s > points[*best].total_tokens_per_s) best = i;
  }
  return best;
}

// The curve's shape, as a list of violations (empty = the expected shape), for points in
// increasing concurrency: throughput does not fall by more than `tolerance` (relative) from one
// level to the next (it rises, then flattens at saturation), and neither does median time per
// request, median TTFT or median TPOT (latency never falls).
inline std::vector<std::string> CheckSweepShape(const std::vector<SweepPoint>& points,
                                                double tolerance) {
  std::vector<std::string> bad;
  for (size_t i = 1; i < points.size(); ++i) {
    const SweepPoint& a = points[i - 1];
    const SweepPoint& b = points[i];
    const std::string at = " from concurrency " + std::to_string(a.concurrency) + " to " +
                           std::to_string(b.concurrency);
    auto falls = [&](double before, double after) { return after < before * (1 - tolerance); };
    if (falls(a.total_tokens_per_s, b.total_tokens_per_s)) bad.push_back("throughput falls" + at);
    if (falls(a.e2el.median, b.e2el.median)) bad.push_back("median time per request falls" + at);
    if (falls(a.ttft.median, b.ttft.median)) bad.push_back("median TTFT falls" + at);
    if (falls(a.tpot.median, b.tpot.median)) bad.push_back("median TPOT falls" + at);
  }
  return bad;
}

inline nlohmann::json LatencyJson(const LatencyStats& l) {
  return {{"median_ms", l.median}, {"p99_ms", l.p99}};
}

// {scenario, pool, tenant, slo, points: [...], knee: {concurrency, total_tokens_per_s, ...,
// max_seqs, max_batched_tokens} | null}.
inline nlohmann::json SweepJson(const std::string& scenario, const std::string& pool,
                                const std::string& tenant, const SweepSlo& slo,
                                const std::vector<SweepPoint>& points) {
  nlohmann::json pts = nlohmann::json::array();
  for (const SweepPoint& p : points) {
    pts.push_back({{"concurrency", p.concurrency},
                   {"completed", p.completed},
                   {"failed", p.failed},
                   {"total_tokens_per_s", p.total_tokens_per_s},
                   {"output_tokens_per_s", p.output_tokens_per_s},
                   {"engine_seconds", p.engine_seconds},
                   {"tokens_per_engine_second", p.tokens_per_engine_second},
                   {"time_per_request", LatencyJson(p.e2el)},
                   {"ttft", LatencyJson(p.ttft)},
                   {"tpot", LatencyJson(p.tpot)},
                   {"batch_seqs_p99", p.batch_seqs_p99},
                   {"batch_tokens_p99", p.batch_tokens_p99}});
  }
  nlohmann::json knee = nullptr;
  if (auto k = FindKnee(points, slo)) {
    const SweepPoint& p = points[*k];
    // NOTE: the settings that reach the knee are the batches the engine actually ran there
    // (p99 bucket bounds of /metrics' histograms): max_seqs >= the concurrency it sustained,
    // max_batched_tokens >= its decode batch plus the prefill chunks that joined it.
    knee = {{"concurrency", p.concurrency},
            {"total_tokens_per_s", p.total_tokens_per_s},
            {"tokens_per_engine_second", p.tokens_per_engine_second},
            {"ttft_p99_ms", p.ttft.p99},
            {"tpot_p99_ms", p.tpot.p99},
            {"max_seqs", p.batch_seqs_p99},
            {"max_batched_tokens", p.batch_tokens_p99}};
  }
  return {{"scenario", scenario},
          {"pool", pool},
          {"tenant", tenant},
          {"slo", {{"ttft_p99_ms", slo.ttft_p99_ms}, {"tpot_p99_ms", slo.tpot_p99_ms}}},
          {"points", pts},
          {"knee", knee}};
}

}  // namespace llmux::bench
