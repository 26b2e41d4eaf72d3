// llmux-bench: a workload scenario (benchmarks/scenarios/*.yaml) — tenants and their load, the
// runs to make (each optionally against its own freshly started llmuxd), and the checks that
// turn figures into PASS/FAIL. The format is documented in docs/benchmarking.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "distributions.h"
#include "llmux/status.h"

namespace llmux::bench {

struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;  // unset = no limit
};

struct TenantLoad {
  std::string name;
  std::string key;             // API key sent as `Authorization: Bearer`
  double rate = 0;             // requests/s, Poisson arrivals (open loop); 0 = use concurrency
  int concurrency = 0;         // closed loop: this many requests always outstanding
  LengthDist prompt_len;       // tokens
  LengthDist output_len;       // tokens (max_tokens)
  bool ignore_eos = true;      // pins the output length to max_tokens
  double weight = 1;           // for the fairness figures (should match tenants.yaml)
  double start_s = 0;          // the tenant starts sending this long after the run starts
  // `process: own`: the tenant's requests are sent and timed by a process of its own (forked
  // per run), so a flood generated next to it cannot delay its client (docs/benchmarking.md).
  bool own_process = false;
  Slo slo;
};

struct Run {
  std::string name;
  std::vector<std::string> tenants;  // which of the scenario's tenants send in this run
  double duration_s = 30;            // stop issuing after this long...
  int64_t max_requests = 0;          // ...or after this many requests in total (0 = no cap)
  std::map<std::string, std::string> engine;  // overrides merged into llmux.yaml's `engine`
  std::string tenants_yaml;  // replaces the scenario's tenants.yaml ("" = the scenario's)
};

struct Check {
  // ttft_p99_ratio:   tenant's p99 TTFT in `run` / in `baseline` <= max (client side)
  // server_ttft_p99_ratio: the same on the daemon's full-path TTFT (request read -> first byte
  //                   written, from its access lines; needs --llmuxd)
  // errors:           tenant's failed requests (any status but 200) in `run` <= max
  // fair_share:       each tenant's share of service in `run` within `tolerance` (relative) of
  //                   its weight's share
  // throughput_ratio: output tok/s of `run` / of `baseline` >= min
  // inflight_high_water: tenant's inflight_high_water (GET /admin/stats) in `run` <= max
  // fifo_ttft_p99_ratio: tenant's p99 TTFT in `run`@fifo / in `run` >= min (how much better
  //                   the policy serves it than FIFO does; needs the fifo ablation)
  // fifo_throughput_ratio: tenant's output tok/s in `run` / in `run`@fifo >= min (isolation
  //                   is work-conserving; needs the fifo ablation)
  std::string kind;
  std::string run, baseline, tenant;
  double max = 0, min = 0, tolerance = 0.05;
};

struct Scenario {
  std::string name;
  std::string description;
  uint64_t seed = 1;
  std::string model_shape = "tiny";      // `llmux make-model --shape` used by scripts/bench.sh
  std::string api = "completions";        // completions | chat
  std::string prompt = "ids";             // ids (prompt: [token ids]) | text
  int64_t token_id_min = 16, token_id_max = 480;  // range of synthetic prompt token ids
  double drain_s = 60;                    // after the last request is issued, wait this long
  double prefill_weight = 1, decode_weight = 2;   // service = p*prompt + d*output tokens
  std::string admin_key;                  // for GET /admin/stats ("" = do not poll)
  std::string llmux_yaml, tenants_yaml;   // the daemon's config when llmux-bench starts it
  std::vector<TenantLoad> tenants;
  std::vector<Run> runs;
  std::vector<Check> checks;
  std::vector<std::string> ablate;  // ablations run in every invocation (`fifo`)
  // `flood_nice`: 1..19 runs the tenants without `process: own` (the flood) in a process of
  // their own at this nice value (setpriority), standing in for clients on other hosts: on one
  // machine they would otherwise take CPU from the daemon. 0: in the llmux-bench process at
  // its priority. `--flood-nice N` overrides it (docs/benchmarking.md).
  int flood_nice = 0;

  const Run* FindRun(const std::string& n) const {
    for (const Run& r : runs) {
      if (r.name == n) return &r;
    }
    return nullptr;
  }
  const TenantLoad* FindTenant(const std::string& n) const {
    for (const TenantLoad& t : tenants) {
      if (t.name == n) return &t;
    }
    return nullptr;
  }
};

}  // namespace llmux::bench
