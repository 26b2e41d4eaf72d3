// llmux-bench: per-request records -> the figures `vllm bench serve` prints, goodput under SLOs,
// rejections by status, and fairness across tenants. Header-only (tested by unit_tools).
// Times are seconds since the run started; latencies are reported in milliseconds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "scenario.h"
#include "stats.h"

namespace llmux::bench {

struct RequestRecord {
  size_t tenant = 0;            // index into the run's tenant list
  double start = 0;             // request sent
  double end = 0;               // last byte received (or failure)
  int status = 0;               // HTTP status; 0 = transport failure or never finished
  bool stream_error = false;    // 200, but the stream carried an error event
  int64_t prompt_tokens = 0;    // from usage (else the requested length)
  int64_t output_tokens = 0;    // from usage (else the number of text chunks)
  std::vector<double> chunks;   // arrival time of each SSE chunk that carried a token
  std::string error;            // short reason when not successful

  bool ok() const { return status == 200 && !stream_error && !chunks.empty(); }
};

struct LatencyStats {
  double mean = 0, median = 0, p99 = 0;  // ms
};

inline LatencyStats Latency(const std::vector<double>& ms) {
  return {Mean(ms), Percentile(ms, 50), Percentile(ms, 99)};
}

struct Summary {
  int64_t completed = 0, failed = 0;
  std::map<std::string, int64_t> failures;  // "429", "503", "transport", "stream_error"...
  std::vector<std::string> failure_examples;  // the first few error messages
  int64_t prompt_tokens = 0, output_tokens = 0;
  double duration_s = 0;
  double request_throughput = 0, output_throughput = 0, total_throughput = 0;
  LatencyStats ttft, tpot, itl, e2el;
  int64_t good = 0;             // completed requests meeting every SLO of their tenant
  double goodput = 0;           // good / duration (req/s)
  std::vector<double> ttft_ms, e2el_ms;  // raw, for the CDF plots
};

// Whether a completed request meets `slo` (TPOT is only judged when there are >= 2 tokens).
inline bool MeetsSlo(const RequestRecord& r, const Slo& slo) {
  const double ttft = (r.chunks.front() - r.start) * 1000;
  const double e2el = (r.end - r.start) * 1000;
  if (slo.ttft_ms && ttft > *slo.ttft_ms) return false;
  if (slo.e2el_ms && e2el > *slo.e2el_ms) return false;
  if (slo.tpot_ms && r.output_tokens > 1) {
    const double tpot = (e2el - ttft) / static_cast<double>(r.output_tokens - 1);
    if (tpot > *slo.tpot_ms) return false;
  }
  return true;
}

inline std::string FailureKind(const RequestRecord& r) {
  if (r.status == 0) return r.error == "cancelled" ? "unfinished" : "transport";
  if (r.status != 200) return std::to_string(r.status);
  if (r.stream_error) return "stream_error";
  return "empty_stream";
}

// Summarises the records for which `include(record)` holds, over `duration_s` (the run's
// benchmark duration: first request sent to last response finished). TTFT = first text chunk
// - send; TPOT = (E2EL - TTFT) / (output tokens - 1) for requests with >= 2 tokens; ITL = the
// gaps between consecutive text chunks; E2EL = last byte - send (vLLM's definitions).
template <typename Pred>
Summary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                  const std::vector<Slo>& slo_of_tenant, Pred include) {
  Summary s;
  s.duration_s = duration_s;
  std::vector<double> tpot, itl;
  for (const RequestRecord& r : records) {
    if (!include(r)) continue;
    if (!r.ok()) {
      ++s.failed;
      ++s.failures[FailureKind(r)];
      if (s.failure_examples.size() < 3) s.failure_examples.push_back(r.error);
      continue;
    }
    ++s.completed;
    s.prompt_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    const double ttft = (r.chunks.front() - r.start) * 1000;
    const double e2el = (r.end - r.start) * 1000;
    s.ttft_ms.push_back(ttft);
    s.e2el_ms.push_back(e2el);
    if (r.output_tokens > 1) tpot.push_back((e2el - ttft) / static_cast<double>(r.output_tokens - 1));
    for (size_t i = 1; i < r.chunks.size(); ++i) itl.push_back((r.chunks[i] - r.chunks[i - 1]) * 1000);
    if (r.tenant < slo_of_tenant.size() && MeetsSlo(r, slo_of_tenant[r.tenant])) ++s.good;
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_throughput = static_cast<double>(s.prompt_tokens + s.output_tokens) / duration_s;
    s.goodput = static_cast<double>(s.good) / duration_s;
  }
  s.ttft = Latency(s.ttft_ms);
  s.tpot = Latency(tpot);
  s.itl = Latency(itl);
  s.e2el = Latency(s.e2el_ms);
  return s;
}

struct Fairness {
  Interval window;                 // where every tenant was backlogged
  std::vector<double> service;     // per tenant, inside the window
  std::vector<double> share;       // service / total service
  std::vector<double> weight_share;  // weight / total weight
  double jain = 1;                 // over weight-normalised service
  double max_service_gap = 0;      // weight-normalised, in service units (tokens)
};

// Fairness among `tenants` (indices into the run's tenant list) with the given weights.
// Service = prefill_weight * prompt tokens (credited at the first chunk) + decode_weight per
// output token (at its chunk; a chunk counts as one token).
inline Fairness ComputeFairness(const std::vector<RequestRecord>& records, size_t num_tenants,
                                const std::vector<double>& weights, double prefill_weight,
                                double decode_weight) {
  std::vector<std::vector<Interval>> busy(num_tenants);
  std::vector<std::vector<ServiceEvent>> events(num_tenants);
  for (const RequestRecord& r : records) {
    if (r.tenant >= num_tenants) continue;
    busy[r.tenant].push_back({r.start, r.end});
    if (!r.ok()) continue;
    events[r.tenant].push_back({r.chunks.front(), prefill_weight * static_cast<double>(r.prompt_tokens)});
    for (double t : r.chunks) events[r.tenant].push_back({t, decode_weight});
  }
  Fairness f;
  f.window = CommonBackloggedWindow(busy, /*join_gap=*/0.05);
  f.service = ServiceInWindow(events, f.window);
  double total = 0, total_w = 0;
  for (size_t k = 0; k < num_tenants; ++k) {
    total += f.service[k];
    total_w += weights[k];
  }
  for (size_t k = 0; k < num_tenants; ++k) {
    f.share.push_back(total > 0 ? f.service[k] / total : 0);
    f.weight_share.push_back(weights[k] / total_w);
  }
  f.jain = JainIndex(f.service, weights);
  f.max_service_gap = MaxServiceGap(events, weights, f.window);
  return f;
}

}  // namespace llmux::bench
