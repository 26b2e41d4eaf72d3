// llmux-bench sweep: runs one tenant of a scenario at each concurrency level (a fresh llmuxd
// per level with --llmuxd, or the server at --url), differences the pool's engine counters of
// /metrics around each level, and writes per pool SWEEP_DIR/SCENARIO_POOL.json and .png.
//
//   llmux-bench sweep --scenario FILE (--llmuxd PATH --model-dir DIR | --url http://HOST:PORT)
//                     [--run NAME] [--tenant NAME] [--concurrency 1,2,4,8,16]
//                     [--slo-ttft-ms X] [--slo-tpot-ms Y] [--out DIR] [--work DIR]
#include "sweep_command.h"

#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "daemon_process.h"
#include "http_client.h"
#include "load_generator.h"
#include "scenario_parse.h"
#include "sweep.h"

namespace llmux::bench {
namespace {

struct SweepOptions {
  std::string scenario, url, llmuxd, model_dir, run, tenant;
  std::string out = "build/bench/sweep", work = "build/bench/work";
  std::vector<int> levels = {1, 2, 4, 8, 16};
  std::optional<double> slo_ttft_ms, slo_tpot_ms;
};

int SweepUsage() {
  std::fprintf(stderr,
               "usage: llmux-bench sweep --scenario FILE (--llmuxd PATH --model-dir DIR | --url "
               "http://HOST:PORT)\n"
               "                         [--run NAME] [--tenant NAME] [--concurrency 1,2,4,8,16]\n"
               "                         [--slo-ttft-ms X] [--slo-tpot-ms Y] [--out DIR] [--work DIR]\n");
  return 2;
}

bool ParseLevels(const std::string& v, std::vector<int>* out) {
  out->clear();
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    const long n = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n < 1 || n > 4096) return false;
    if (!out->empty() && n <= out->back()) return false;  // strictly increasing
    out->push_back(static_cast<int>(n));
  }
  return !out->empty();
}

bool ParseSweepArgs(int argc, char** argv, SweepOptions* o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--scenario") o->scenario = v;
    else if (a == "--url") o->url = v;
    else if (a == "--llmuxd") o->llmuxd = v;
    else if (a == "--model-dir") o->model_dir = v;
    else if (a == "--run") o->run = v;
    else if (a == "--tenant") o->tenant = v;
    else if (a == "--out") o->out = v;
    else if (a == "--work") o->work = v;
    else if (a == "--concurrency") {
      if (!ParseLevels(v, &o->levels)) return false;
    } else if (a == "--slo-ttft-ms") o->slo_ttft_ms = std::atof(v.c_str());
    else if (a == "--slo-tpot-ms") o->slo_tpot_ms = std::atof(v.c_str());
    else return false;
  }
  return argc % 2 == 1 && !o->scenario.empty() && (o->url.empty() != o->llmuxd.empty()) &&
         (o->llmuxd.empty() || !o->model_dir.empty());
}

// GET /metrics with the scenario's admin key; "" when it cannot be read.
std::string Scrape(const Target& t, const std::string& admin_key) {
  boost::asio::io_context io;
  HttpClient client(io, t.host, t.port);
  std::string body;
  client.Get("/metrics", admin_key, [&](const HttpResult& r) {
    if (r.status == 200) body = r.body;
  });
  io.run();
  return body;
}

SweepPoint PointOf(int level, RunData data,
                   const std::map<std::string, EngineCounters>& before,
                   const std::map<std::string, EngineCounters>& after, const std::string& pool) {
  const Summary s = Summarize(data.records, data.duration_s, {Slo{}},
                              [](const RequestRecord&) { return true; });
  SweepPoint p;
  p.concurrency = level;
  p.completed = s.completed;
  p.failed = s.failed;
  p.total_tokens_per_s = s.total_throughput;
  p.output_tokens_per_s = s.output_throughput;
  p.e2el = s.e2el;
  p.ttft = s.ttft;
  p.tpot = s.tpot;
  auto a = after.find(pool);
  if (a != after.end()) {
    auto b = before.find(pool);
    const EngineCounters zero;
    const EngineCounters& from = b == before.end() ? zero : b->second;
    p.engine_seconds = a->second.busy_seconds - from.busy_seconds;
    if (p.engine_seconds > 0) {
      p.tokens_per_engine_second =
          static_cast<double>(s.prompt_tokens + s.output_tokens) / p.engine_seconds;
    }
    p.batch_seqs_p99 = BucketQuantile(from.batch_size, a->second.batch_size, 0.99);
    p.batch_tokens_p99 = BucketQuantile(from.batch_tokens, a->second.batch_tokens, 0.99);
  }
  return p;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// SWEEP.dat + .gp -> .png: time per request (median, p99), TTFT p99 and TPOT p99 against total
// tokens/s, and tokens per engine-second on the second axis.
Status WriteSweepPlot(const std::string& base, const std::string& title,
                      const std::vector<SweepPoint>& points) {
  std::ofstream dat(base + ".dat");
  dat << "# concurrency total_tok_s e2el_median_ms e2el_p99_ms ttft_p99_ms tpot_p99_ms tok_per_engine_s\n";
  for (const SweepPoint& p : points) {
    dat << p.concurrency << ' ' << p.total_tokens_per_s << ' ' << p.e2el.median << ' ' << p.e2el.p99
        << ' ' << p.ttft.p99 << ' ' << p.tpot.p99 << ' ' << p.tokens_per_engine_second << '\n';
  }
  dat.close();
  std::ofstream gp(base + ".gp");
  const std::string d = Quote(base + ".dat");
  gp << "set terminal pngcairo size 900,540 noenhanced\nset output " << Quote(base + ".png") << "\n"
     << "set title " << Quote(title) << "\nset grid\nset key top left\n"
     << "set xlabel 'total tokens/s'\nset ylabel 'latency (ms)'\nset logscale y\n"
     << "set y2label 'tokens per engine-second'\nset y2tics\nset y2range [0:*]\n"
     << "plot " << d << " using 2:3 with linespoints lw 2 title 'time per request, median', "
     << d << " using 2:4 with linespoints lw 2 title 'time per request, p99', "
     << d << " using 2:5 with linespoints lw 2 title 'TTFT p99', "
     << d << " using 2:6 with linespoints lw 2 title 'TPOT p99', "
     << d << " using 2:($7 > 0 ? $7 : 1/0) axes x1y2 with linespoints dt 2 lw 2 title 'tokens per engine-second', "
     << d << " using 2:3:(sprintf('c=%d', $1)) with labels offset 0,1 notitle\n";
  gp.close();
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    return FailedPrecondition("gnuplot not found: wrote " + base + ".gp and its data, no PNG");
  }
  std::string cmd = "gnuplot " + Quote(base + ".gp") + " 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) {
    cmd = "sed -i 's/pngcairo/png/' " + Quote(base + ".gp") + " && gnuplot " + Quote(base + ".gp");
    if (std::system(cmd.c_str()) != 0) return Internal("gnuplot failed on " + base + ".gp");
  }
  return Status::Ok();
}

}  // namespace

int SweepMain(int argc, char** argv) {
  SweepOptions o;
  if (!ParseSweepArgs(argc, argv, &o)) return SweepUsage();
  std::ifstream f(o.scenario);
  if (!f) {
    std::fprintf(stderr, "llmux-bench sweep: cannot read %s\n", o.scenario.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  StatusOr<Scenario> parsed = ParseScenario(ss.str());
  if (!parsed.ok()) {
    std::fprintf(stderr, "llmux-bench sweep: %s: %s\n", o.scenario.c_str(),
                 parsed.status().ToString().c_str());
    return 1;
  }
  const Scenario base = *parsed;
  const Run* run = nullptr;
  for (const Run& r : base.runs) {
    if (o.run.empty() || r.name == o.run) {
      run = &r;
      break;
    }
  }
  if (run == nullptr || run->tenants.empty()) {
    std::fprintf(stderr, "llmux-bench sweep: no run %s with tenants in %s\n", o.run.c_str(),
                 o.scenario.c_str());
    return 1;
  }
  const std::string tenant = o.tenant.empty() ? run->tenants.front() : o.tenant;
  const TenantLoad* load = base.FindTenant(tenant);
  if (load == nullptr) {
    std::fprintf(stderr, "llmux-bench sweep: no tenant %s in %s\n", tenant.c_str(), o.scenario.c_str());
    return 1;
  }
  SweepSlo slo;
  slo.ttft_p99_ms = o.slo_ttft_ms.value_or(load->slo.ttft_ms.value_or(0));
  slo.tpot_p99_ms = o.slo_tpot_ms.value_or(load->slo.tpot_ms.value_or(0));
  if (base.admin_key.empty()) {
    std::fprintf(stderr, "llmux-bench sweep: the scenario has no admin_key: engine seconds (from "
                         "/metrics) will be missing\n");
  }

  std::map<std::string, std::vector<SweepPoint>> by_pool;
  for (int level : o.levels) {
    Scenario sc = base;
    for (TenantLoad& t : sc.tenants) {
      if (t.name != tenant) continue;
      t.concurrency = level;
      t.rate = 0;
      t.start_s = 0;
    }
    Run r = *run;
    r.name = run->name + "-c" + std::to_string(level);
    r.tenants = {tenant};
    Target target;
    std::unique_ptr<DaemonProcess> daemon;
    if (!o.llmuxd.empty()) {
      auto d = DaemonProcess::Start(o.llmuxd, o.model_dir, sc, r, o.work + "/" + sc.name + "/" + r.name);
      if (!d.ok()) {
        std::fprintf(stderr, "llmux-bench sweep: %s\n", d.status().ToString().c_str());
        return 1;
      }
      daemon = std::move(*d);
      target.host = daemon->host();
      target.port = daemon->port();
      target.model = daemon->model_name();
    } else {
      std::smatch m;
      const std::regex url(R"(http://([^:/]+):(\d+)/?)");
      if (!std::regex_match(o.url, m, url)) return SweepUsage();
      target.host = m[1];
      target.port = static_cast<uint16_t>(std::stoi(m[2]));
    }
    const auto before = ParseEngineCounters(Scrape(target, base.admin_key));
    StatusOr<RunData> data = ExecuteRun(sc, r, target);
    const auto after = ParseEngineCounters(Scrape(target, base.admin_key));
    if (daemon) daemon->Stop();
    if (!data.ok()) {
      std::fprintf(stderr, "llmux-bench sweep: %s\n", data.status().ToString().c_str());
      return 1;
    }
    std::vector<std::string> pools;
    for (const auto& [pool, c] : after) pools.push_back(pool);
    if (pools.empty()) pools.push_back("shared");  // no /metrics: latency and throughput only
    for (const std::string& pool : pools) {
      SweepPoint p = PointOf(level, *data, before, after, pool);
      std::printf("%-8s c=%-4d %9.1f tok/s  %9.1f tok/engine-s  time/request p50 %8.1f p99 %8.1f ms"
                  "  TTFT p99 %8.1f ms  TPOT p99 %7.2f ms  failed %lld\n",
                  pool.c_str(), level, p.total_tokens_per_s, p.tokens_per_engine_second,
                  p.e2el.median, p.e2el.p99, p.ttft.p99, p.tpot.p99,
                  static_cast<long long>(p.failed));
      std::fflush(stdout);
      by_pool[pool].push_back(p);
    }
  }

  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  int rc = 0;
  for (const auto& [pool, points] : by_pool) {
    const std::string stem = o.out + "/" + base.name + "_" + pool;
    const nlohmann::json j = SweepJson(base.name, pool, tenant, slo, points);
    std::ofstream out(stem + ".json");
    out << j.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "llmux-bench sweep: cannot write %s.json\n", stem.c_str());
      rc = 1;
    }
    const Status plotted = WriteSweepPlot(stem, base.name + " / pool " + pool, points);
    if (!plotted.ok()) std::fprintf(stderr, "llmux-bench sweep: %s\n", plotted.ToString().c_str());
    if (j["knee"].is_null()) {
      std::printf("%s: no level meets the SLOs (p99 TTFT <= %g ms, p99 TPOT <= %g ms)\n",
                  pool.c_str(), slo.ttft_p99_ms, slo.tpot_p99_ms);
    } else {
      const auto& k = j["knee"];
      std::printf("%s: knee at concurrency %d: %.1f tok/s (p99 TTFT %.1f ms, p99 TPOT %.2f ms); "
                  "max_seqs >= %g, max_batched_tokens >= %g\n",
                  pool.c_str(), k["concurrency"].get<int>(), k["total_tokens_per_s"].get<double>(),
                  k["ttft_p99_ms"].get<double>(), k["tpot_p99_ms"].get<double>(),
                  k["max_seqs"].get<double>(), k["max_batched_tokens"].get<double>());
    }
    for (const std::string& v : CheckSweepShape(points, 0.10)) {
      std::printf("%s: shape: %s\n", pool.c_str(), v.c_str());
    }
    std::printf("%s: wrote %s.json and %s.png\n", pool.c_str(), stem.c_str(), stem.c_str());
  }
  return rc;
}

}  // namespace llmux::bench
