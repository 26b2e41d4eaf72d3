// A usage row for the ledger tests: model "stories", lane "standard", pool "shared", outcome
// "ok", queue/ttft/duration 1/2/3 ms; the rest from the arguments.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "llmux/usage_ledger.h"

namespace llmux::telemetry_test {

// `when` is a time as ParseTimeArg reads it ("2024-05-01T10:00:00Z").
inline UsageRecord UsageRow(std::string request_id, std::string tenant, const std::string& when,
                            int64_t prompt, int64_t cached, int64_t completion, int64_t cost) {
  UsageRecord r;
  r.request_id = std::move(request_id);
  r.tenant = std::move(tenant);
  r.model = "stories";
  r.lane = "standard";
  r.pool = "shared";
  r.finished_unix_ms = *ParseTimeArg(when);
  r.prompt_tokens = prompt;
  r.cached_tokens = cached;
  r.completion_tokens = completion;
  r.queue_ms = 1;
  r.ttft_ms = 2;
  r.duration_ms = 3;
  r.outcome = "ok";
  r.cost_nano = cost;
  return r;
}

}  // namespace llmux::telemetry_test
