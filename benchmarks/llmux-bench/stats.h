// llmux-bench: the pure statistics behind the report — percentiles, Jain's fairness index and
// the service gap between backlogged tenants. Header-only so that unit_tools can test it
// without the benchmark program being built (LLMUX_BENCHMARKS=OFF).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace llmux::bench {

// Arithmetic mean; 0 for an empty set (the report prints 0 rather than NaN).
inline double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// The p-th percentile (0 <= p <= 100) with linear interpolation between closest ranks —
// numpy's default, which `vllm bench serve` uses, so figures compare. 0 for an empty set.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

// Jain's fairness index (sum x)^2 / (n * sum x^2) over x_i = service_i / weight_i:
// 1 when every tenant got exactly its weighted share, 1/n when one tenant got everything.
// Returns 1 for no tenants or when nobody was served (nothing was unfair).
inline double JainIndex(const std::vector<double>& service, const std::vector<double>& weight) {
  double sum = 0, sum_sq = 0;
  const size_t n = std::min(service.size(), weight.size());
  for (size_t i = 0; i < n; ++i) {
    const double x = service[i] / weight[i];
    sum += x;
    sum_sq += x * x;
  }
  if (n == 0 || sum_sq == 0) return 1;
  return sum * sum / (static_cast<double>(n) * sum_sq);
}

// One piece of service a tenant received at time `t` (seconds): prompt tokens credited when the
// first token arrives, one output token per streamed chunk.
struct ServiceEvent {
  double t = 0;
  double amount = 0;
};

// [start, end) of one request: the tenant is backlogged (has work at the server) in between.
struct Interval {
  double start = 0;
  double end = 0;
};

// The longest stretch [start, end) in which every tenant is backlogged: each tenant's intervals
// are merged (gaps up to `join_gap` seconds are bridged: a closed-loop client's next request
// follows the previous one after a few microseconds), and the first common stretch of the
// longest length is returned. {0, 0} when there is no common stretch (or no tenants).
inline Interval CommonBackloggedWindow(const std::vector<std::vector<Interval>>& per_tenant,
                                       double join_gap = 0) {
  if (per_tenant.empty()) return {};
  auto merge = [join_gap](std::vector<Interval> v) {
    std::sort(v.begin(), v.end(), [](const Interval& a, const Interval& b) { return a.start < b.start; });
    std::vector<Interval> out;
    for (const Interval& i : v) {
      if (i.end <= i.start) continue;
      if (!out.empty() && i.start <= out.back().end + join_gap) {
        out.back().end = std::max(out.back().end, i.end);
      } else {
        out.push_back(i);
      }
    }
    return out;
  };
  std::vector<Interval> common = merge(per_tenant[0]);
  for (size_t k = 1; k < per_tenant.size(); ++k) {
    const std::vector<Interval> other = merge(per_tenant[k]);
    std::vector<Interval> next;
    for (const Interval& a : common) {
      for (const Interval& b : other) {
        const double s = std::max(a.start, b.start), e = std::min(a.end, b.end);
        if (e > s) next.push_back({s, e});
      }
    }
    common = std::move(next);
  }
  Interval best;
  for (const Interval& i : common) {
    if (i.end - i.start > best.end - best.start) best = i;
  }
  return best;
}

// Total service of each tenant inside [window.start, window.end).
inline std::vector<double> ServiceInWindow(const std::vector<std::vector<ServiceEvent>>& events,
                                           Interval window) {
  std::vector<double> total(events.size(), 0);
  for (size_t k = 0; k < events.size(); ++k) {
    for (const ServiceEvent& e : events[k]) {
      if (e.t >= window.start && e.t < window.end) total[k] += e.amount;
    }
  }
  return total;
}

// The largest difference, at any instant of `window`, between two tenants' weight-normalised
// cumulative service counted from window.start: max_t (max_i S_i(t)/w_i - min_i S_i(t)/w_i).
// This is the quantity VTC bounds (Sheng et al., OSDI'24). Measured after every event, so the
// result is exact for the event stream. 0 for fewer than two tenants.
inline double MaxServiceGap(const std::vector<std::vector<ServiceEvent>>& events,
                            const std::vector<double>& weight, Interval window) {
  const size_t n = std::min(events.size(), weight.size());
  if (n < 2) return 0;
  struct Tagged {
    double t;
    size_t tenant;
    double amount;
  };
  std::vector<Tagged> all;
  for (size_t k = 0; k < n; ++k) {
    for (const ServiceEvent& e : events[k]) {
      if (e.t >= window.start && e.t < window.end) all.push_back({e.t, k, e.amount});
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const Tagged& a, const Tagged& b) { return a.t < b.t; });
  std::vector<double> norm(n, 0);
  double gap = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    norm[all[i].tenant] += all[i].amount / weight[all[i].tenant];
    // Events at the same instant are applied together before the gap is measured.
    if (i + 1 < all.size() && all[i + 1].t == all[i].t) continue;
    const auto [mn, mx] = std::minmax_element(norm.begin(), norm.end());
    gap = std::max(gap, *mx - *mn);
  }
  return gap;
}

}  // namespace llmux::bench
