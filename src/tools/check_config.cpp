// `llmux check-config FILE [--tenants FILE]`: validates llmux.yaml (and a tenants.yaml) with the
// daemon's own loaders, without loading a model, and prints the settings that the layers in
// front of llmuxd must agree with (listen ports, drain timings, proxies) as one JSON object.
// Used by CI on the Kubernetes manifests (tests/deploy) and by operators before a rollout.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmux/config.h"
#include "llmux/tenant_policy.h"
#include "tools/command.h"

namespace llmux::tools {
namespace {

// "HOST:PORT" or "[V6]:PORT" -> PORT (the loader checked the form).
int PortOf(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(listen.c_str() + colon + 1);
}

int CheckConfigCommand(const std::vector<std::string>& argv) {
  Args args(argv);
  std::vector<std::string> positional;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--tenants") {
      ++i;
    } else if (argv[i] != "--help") {
      positional.push_back(argv[i]);
    }
  }
  if (args.Has("--help") || positional.size() != 1) {
    std::fprintf(stderr,
                 "usage: llmux check-config llmux.yaml [--tenants tenants.yaml]\n"
                 "validates the files with llmuxd's loaders (no model is loaded) and prints\n"
                 "the listen ports, drain timings and proxy settings as JSON; exit 1 with\n"
                 "FILE:LINE:COLUMN messages when a file is invalid\n");
    return args.Has("--help") ? 0 : 2;
  }
  auto config = LoadServerConfig(positional[0]);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().message().c_str());
    return 1;
  }
  const ServerSection& s = config->server;
  nlohmann::json out = {
      {"listen", s.listen},
      {"port", PortOf(s.listen)},
      {"metrics_listen", s.metrics_listen},
      {"metrics_port", s.metrics_listen.empty() ? 0 : PortOf(s.metrics_listen)},
      {"drain_grace_ms", s.drain_grace.count()},
      {"drain_timeout_ms", s.drain_timeout.count()},
      {"health_stall_timeout_ms", s.health_stall_timeout.count()},
      {"tenant_header", s.tenant_header},
      {"forwarded_header", s.forwarded_header == ServerSection::ForwardedHeader::kForwarded
                               ? "Forwarded"
                               : "X-Forwarded-For"},
      {"tenants_file", config->tenants_file.string()},
      {"model_path", config->model.path.string()},
      {"probes", {{"liveness", "/health"}, {"readiness", "/ready"}}},
  };
  nlohmann::json proxies = nlohmann::json::array();
  for (const IpNetwork& n : s.trusted_proxies) proxies.push_back(n.ToString());
  out["trusted_proxies"] = proxies;
  if (auto tenants = args.Get("--tenants")) {
    auto policy = LoadTenantPolicy(*tenants);
    if (!policy.ok()) {
      std::fprintf(stderr, "%s\n", policy.status().message().c_str());
      return 1;
    }
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, t] : (*policy)->tenants) names.push_back(name);
    out["tenants"] = names;
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace

LLMUX_REGISTER_COMMAND("check-config",
                       "validate llmux.yaml (and --tenants FILE) and print deployment settings",
                       CheckConfigCommand);

}  // namespace llmux::tools
