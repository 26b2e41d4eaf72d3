// llmux-bench: drives one run of a scenario against a server and records every request.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "distributions.h"
#include "llmux/status.h"
#include "run_report.h"
#include "scenario.h"

namespace llmux::bench {

struct Target {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string model;  // the `model` field sent
};

// The JSON body of one request: `prompt_len` synthetic tokens (token ids, or words for
// `prompt: text`), `max_tokens` = output_len, streaming with usage. Deterministic in `rng`.
std::string BuildRequestBody(const Scenario& sc, const TenantLoad& t, const std::string& model,
                             int64_t prompt_len, int64_t output_len, Rng& rng);

// Runs `run` of `sc` against `target` until its duration or request cap, then waits up to
// sc.drain_s for outstanding requests (those still open are recorded as unfinished). Blocks
// the calling thread. Fails only when the run cannot start (bad address).
StatusOr<RunData> ExecuteRun(const Scenario& sc, const Run& run, const Target& target);

}  // namespace llmux::bench
