// llmux-bench: the human table (vLLM's labels) and the JSON result of a scenario.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "run_report.h"
#include "scenario.h"

namespace llmux::bench {

// Prints one run: a block per tenant and one overall, then fairness and /admin/stats figures.
void PrintRun(std::FILE* out, const RunReport& run);
// Prints the checks, one PASS/FAIL line each.
void PrintChecks(std::FILE* out, const std::vector<CheckResult>& checks);

nlohmann::json SummaryJson(const Summary& s);
nlohmann::json RunJson(const RunReport& run);
// {scenario, description, machine, runs: {name: run}, checks: [...]}.
nlohmann::json ScenarioJson(const Scenario& sc, const std::vector<const RunReport*>& runs,
                            const std::vector<CheckResult>& checks, const nlohmann::json& machine);

}  // namespace llmux::bench
