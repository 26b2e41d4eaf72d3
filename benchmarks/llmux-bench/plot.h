// llmux-bench: PNG plots of a run with gnuplot — per-tenant TTFT and E2EL CDFs and output
// throughput over time. The data (.dat) and script (.gp) are kept next to the PNGs, so a plot
// can be redrawn (or drawn elsewhere) when gnuplot is missing here.
#pragma once

#include <string>

#include "llmux/status.h"
#include "run_report.h"

namespace llmux::bench {

// Writes DIR/PREFIX_{ttft_cdf,e2el_cdf,throughput}.png (and their .dat/.gp). Returns
// FailedPrecondition when gnuplot is not installed (data and script are still written).
Status WritePlots(const std::string& dir, const std::string& prefix, const RunReport& run);

}  // namespace llmux::bench
