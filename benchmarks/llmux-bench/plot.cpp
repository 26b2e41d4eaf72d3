#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace llmux::bench {
namespace {

// One gnuplot data block per tenant (separated by two blank lines: `index K` selects it).
void WriteCdf(const std::string& path, const RunReport& run, bool ttft) {
  std::ofstream f(path);
  for (size_t k = 0; k < run.tenants.size(); ++k) {
    std::vector<double> v = ttft ? run.per_tenant[k].ttft_ms : run.per_tenant[k].e2el_ms;
    std::sort(v.begin(), v.end());
    f << "# " << run.tenants[k] << "\n";
    for (size_t i = 0; i < v.size(); ++i) f << v[i] << " " << static_cast<double>(i + 1) / v.size() << "\n";
    if (v.empty()) f << "0 0\n";
    f << "\n\n";
  }
}

// Output tokens per second per tenant in 1 s bins (a chunk carries output_tokens / chunks).
void WriteThroughput(const std::string& path, const RunReport& run) {
  const size_t bins = static_cast<size_t>(std::ceil(std::max(run.data.duration_s, 1.0)));
  std::vector<std::vector<double>> tok(run.tenants.size(), std::vector<double>(bins, 0));
  for (const RequestRecord& r : run.data.records) {
    if (!r.ok()) continue;
    const double per_chunk = static_cast<double>(r.output_tokens) / static_cast<double>(r.chunks.size());
    for (double t : r.chunks) tok[r.tenant][std::min(bins - 1, static_cast<size_t>(t))] += per_chunk;
  }
  std::ofstream f(path);
  for (size_t k = 0; k < run.tenants.size(); ++k) {
    f << "# " << run.tenants[k] << "\n";
    for (size_t b = 0; b < bins; ++b) f << b + 0.5 << " " << tok[k][b] << "\n";
    f << "\n\n";
  }
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

Status WritePlots(const std::string& dir, const std::string& prefix, const RunReport& run) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal("cannot create " + dir + ": " + ec.message());
  const std::string base = dir + "/" + prefix;
  WriteCdf(base + "_ttft_cdf.dat", run, true);
  WriteCdf(base + "_e2el_cdf.dat", run, false);
  WriteThroughput(base + "_throughput.dat", run);
  std::ofstream gp(base + ".gp");
  gp << "set terminal pngcairo size 900,540 noenhanced\n"
     << "set grid\nset key bottom right\n";
  auto plot = [&](const std::string& what, const std::string& title, const std::string& xlabel,
                  const std::string& ylabel, const char* style, bool logx) {
    gp << "set output " << Quote(base + "_" + what + ".png") << "\n"
       << "set title " << Quote(title) << "\nset xlabel " << Quote(xlabel) << "\nset ylabel "
       << Quote(ylabel) << "\n" << (logx ? "set logscale x\n" : "unset logscale x\n") << "plot ";
    for (size_t k = 0; k < run.tenants.size(); ++k) {
      gp << (k ? ", " : "") << Quote(base + "_" + what + ".dat") << " index " << k << " using 1:2 with "
         << style << " lw 2 title " << Quote(run.tenants[k]);
    }
    gp << "\n";
  };
  plot("ttft_cdf", prefix + ": TTFT CDF", "TTFT (ms)", "fraction of requests", "steps", true);
  plot("e2el_cdf", prefix + ": E2E latency CDF", "E2E latency (ms)", "fraction of requests", "steps", true);
  plot("throughput", prefix + ": output throughput", "time (s)", "output tokens/s", "lines", false);
  gp.close();
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    return FailedPrecondition("gnuplot not found: wrote " + base + ".gp and its data, no PNGs");
  }
  // pngcairo needs cairo; gnuplot-nox has it, but fall back to the plain png terminal.
  std::string cmd = "gnuplot " + Quote(base + ".gp") + " 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) {
    cmd = "sed -i 's/pngcairo/png/' " + Quote(base + ".gp") + " && gnuplot " + Quote(base + ".gp");
    if (std::system(cmd.c_str()) != 0) return Internal("gnuplot failed on " + base + ".gp");
  }
  return Status::Ok();
}

}  // namespace llmux::bench
