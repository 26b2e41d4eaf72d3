// llmux-bench: ablations — the same runs against a server stripped of one mechanism, in the
// same invocation, so a scenario reports what its policy buys (docs/benchmarking.md).
//
// `fifo`: every tenant in one lane with equal weights and no budgets (no in-flight budget, no
// queue cap or queue wait of its own, no rate limit, reservation, quota or service tier), and
// that lane admits in arrival order (`order: arrival`; equal weights alone would still let the
// tenant with the least service go first): the engine then serves requests as one FIFO, as a
// server without tenant isolation would.
// Each run R gets a twin `R@fifo` with that tenants.yaml. Header-only (tested by unit_tools).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "llmux/status.h"
#include "scenario.h"

namespace llmux::bench {

inline constexpr const char* kFifoSuffix = "@fifo";

// The FIFO twin of a tenants.yaml. InvalidArgument when the text is not a tenants map.
inline StatusOr<std::string> FifoTenantsYaml(const std::string& tenants_yaml) {
  try {
    YAML::Node root = YAML::Load(tenants_yaml);
    if (!root.IsMap() || !root["tenants"] || !root["tenants"].IsMap()) {
      return InvalidArgument("fifo ablation: tenants_yaml has no `tenants` map");
    }
    YAML::Node lanes(YAML::NodeType::Sequence);
    YAML::Node lane;
    lane["name"] = "fifo";
    lane["order"] = "arrival";
    lanes.push_back(lane);
    root["lanes"] = lanes;
    std::vector<std::string> names;
    for (const auto& kv : root["tenants"]) names.push_back(kv.first.as<std::string>());
    for (const std::string& name : names) {
      YAML::Node t = root["tenants"][name];
      if (!t.IsMap()) {
        root["tenants"][name] = YAML::Node(YAML::NodeType::Map);
        t = root["tenants"][name];
      }
      for (const char* key : {"weight", "max_queue_wait", "rate_limit", "reserved", "quota",
                              "service_tiers", "max_tokens_per_request", "max_prompt_tokens"}) {
        t.remove(key);
      }
      t["lane"] = "fifo";
      // NOTE: the largest budgets the policy accepts rather than absent keys, whose defaults
      // (32768 tokens, 64 queued) are budgets too.
      t["max_inflight_tokens"] = 1000000000;
      t["max_queued_requests"] = 1000000;
    }
    YAML::Emitter out;
    out << root;
    return std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("fifo ablation: tenants_yaml: ") + e.what());
  }
}

// Adds the `@fifo` twin of every run (after all of them, so the policy's runs come first).
inline Status AddFifoAblation(Scenario* sc) {
  if (sc->tenants_yaml.empty()) {
    return InvalidArgument("--ablate fifo needs the scenario's server.tenants_yaml (llmux-bench "
                           "must start llmuxd)");
  }
  StatusOr<std::string> fifo = FifoTenantsYaml(sc->tenants_yaml);
  if (!fifo.ok()) return fifo.status();
  const size_t n = sc->runs.size();
  for (size_t i = 0; i < n; ++i) {
    if (sc->runs[i].name.find('@') != std::string::npos) continue;
    if (sc->FindRun(sc->runs[i].name + kFifoSuffix) != nullptr) continue;  // added already
    Run twin = sc->runs[i];
    twin.name += kFifoSuffix;
    twin.tenants_yaml = *fifo;
    sc->runs.push_back(std::move(twin));
  }
  return Status::Ok();
}

}  // namespace llmux::bench
