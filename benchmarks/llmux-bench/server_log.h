// llmux-bench: the server side of a run, read from the access lines the daemon wrote to its
// log (DIR/llmuxd.log when llmux-bench starts the daemon): per tenant, the full-path time to
// first token of every call that wrote a first byte (`full_ttft_us`: request read -> first
// byte of the answer written; docs/metrics.md, "Where the time goes"). Header-only (tested by
// unit_tools).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace llmux::bench {

// {tenant: [full-path TTFT in ms]} in log order. Lines that are not JSON access lines with a
// full_ttft_us (other events, refused calls, a torn last line) are skipped.
inline std::map<std::string, std::vector<double>> ServerFullTtftMs(const std::string& log) {
  std::map<std::string, std::vector<double>> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"event\":\"access\"") == std::string::npos) continue;
    const nlohmann::json a = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!a.is_object() || !a.contains("full_ttft_us") || !a["full_ttft_us"].is_number() ||
        !a.contains("tenant") || !a["tenant"].is_string()) {
      continue;
    }
    out[a["tenant"].get<std::string>()].push_back(a["full_ttft_us"].get<double>() / 1000.0);
  }
  return out;
}

}  // namespace llmux::bench
