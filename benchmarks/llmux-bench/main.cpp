// llmux-bench: a multi-tenant serving benchmark for OpenAI-compatible servers (llmuxd or any
// other). Wiring only: parse flags, load the scenario, per run start llmuxd (or use --url),
// drive the load, then print / write the results. See docs/benchmarking.md.
//
//   llmux-bench --scenario FILE (--llmuxd PATH --model-dir DIR | --url http://HOST:PORT
//               [--model NAME]) [--run NAME] [--out FILE.json] [--plot DIR] [--work DIR]
//               [--strict] [--ablate fifo] [--flood-nice N]
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "ablation.h"
#include "daemon_process.h"
#include "load_generator.h"
#include "plot.h"
#include "report.h"
#include "run_report.h"
#include "server_log.h"
#include "scenario_parse.h"
#include "sweep_command.h"

namespace llmux::bench {
namespace {

struct Options {
  std::string scenario, url, model, llmuxd, model_dir, only_run, out, plot_dir;
  std::string work = "build/bench/work";
  bool strict = false;
  std::vector<std::string> ablate;  // --ablate fifo (also the scenario's `ablate`)
  int flood_nice = -1;              // --flood-nice N: replaces the scenario's flood_nice
};

int Usage() {
  std::fprintf(stderr,
               "usage: llmux-bench --scenario FILE (--llmuxd PATH --model-dir DIR | --url "
               "http://HOST:PORT [--model NAME])\n"
               "                   [--run NAME] [--out FILE.json] [--plot DIR] [--work DIR] [--strict]\n"
               "                   [--ablate fifo] [--flood-nice 0..19]\n");
  return 2;
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--strict") {
      o->strict = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (a == "--scenario") o->scenario = v;
    else if (a == "--url") o->url = v;
    else if (a == "--model") o->model = v;
    else if (a == "--llmuxd") o->llmuxd = v;
    else if (a == "--model-dir") o->model_dir = v;
    else if (a == "--run") o->only_run = v;
    else if (a == "--out") o->out = v;
    else if (a == "--plot") o->plot_dir = v;
    else if (a == "--work") o->work = v;
    else if (a == "--ablate" && v == "fifo") o->ablate.push_back(v);
    else if (a == "--flood-nice") {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < 0 || n > 19) return false;
      o->flood_nice = static_cast<int>(n);
    }
    else return false;
  }
  return !o->scenario.empty() && (o->url.empty() != o->llmuxd.empty()) &&
         (o->llmuxd.empty() || !o->model_dir.empty());
}

nlohmann::json Machine() {
  nlohmann::json m = {{"cpus", std::thread::hardware_concurrency()}};
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      m["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  if (uname(&u) == 0) m["kernel"] = std::string(u.sysname) + " " + u.release;
  return m;
}

StatusOr<RunData> RunOne(const Options& o, const Scenario& sc, const Run& run) {
  Target target;
  std::unique_ptr<DaemonProcess> daemon;
  const std::string run_dir = o.work + "/" + sc.name + "/" + run.name;
  if (!o.llmuxd.empty()) {
    auto d = DaemonProcess::Start(o.llmuxd, o.model_dir, sc, run, run_dir);
    if (!d.ok()) return d.status();
    daemon = std::move(*d);
    target.host = daemon->host();
    target.port = daemon->port();
    target.model = o.model.empty() ? daemon->model_name() : o.model;
  } else {
    std::smatch m;
    const std::regex url(R"(http://([^:/]+):(\d+)/?)");
    if (!std::regex_match(o.url, m, url)) return InvalidArgument("--url must be http://HOST:PORT");
    target.host = m[1];
    target.port = static_cast<uint16_t>(std::stoi(m[2]));
    target.model = o.model;
    if (!run.engine.empty()) {
      std::fprintf(stderr, "llmux-bench: run %s: engine overrides need --llmuxd; the server at %s is used as is\n",
                   run.name.c_str(), o.url.c_str());
    }
  }
  std::fprintf(stderr, "llmux-bench: %s / %s: %.0f s, tenants:", sc.name.c_str(), run.name.c_str(), run.duration_s);
  for (const std::string& t : run.tenants) std::fprintf(stderr, " %s", t.c_str());
  std::fprintf(stderr, "\n");
  const double daemon_cpu_before = daemon ? daemon->CpuSeconds() : -1;
  StatusOr<RunData> data = ExecuteRun(sc, run, target);
  if (daemon && data.ok() && daemon_cpu_before >= 0) {
    const double after = daemon->CpuSeconds();
    if (after >= 0) data->daemon_cpu_s = after - daemon_cpu_before;
  }
  if (daemon) {
    const int rc = daemon->Stop();
    if (rc != 0) std::fprintf(stderr, "llmux-bench: llmuxd exited with %d after run %s\n", rc, run.name.c_str());
    // The server side of the run: the daemon's access lines (its stderr).
    std::ifstream log(run_dir + "/llmuxd.log");
    std::stringstream text;
    text << log.rdbuf();
    if (data.ok()) data->server_full_ttft_ms = ServerFullTtftMs(text.str());
  }
  return data;
}

int Main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) return Usage();
  std::ifstream f(o.scenario);
  if (!f) {
    std::fprintf(stderr, "llmux-bench: cannot read %s\n", o.scenario.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  StatusOr<Scenario> parsed = ParseScenario(ss.str());
  if (!parsed.ok()) {
    std::fprintf(stderr, "llmux-bench: %s: %s\n", o.scenario.c_str(), parsed.status().ToString().c_str());
    return 1;
  }
  for (const std::string& a : o.ablate) parsed->ablate.push_back(a);
  if (o.flood_nice >= 0) parsed->flood_nice = o.flood_nice;
  if (!parsed->ablate.empty()) {
    // The only ablation so far is fifo (the parser and the flag accept nothing else).
    const Status s = AddFifoAblation(&*parsed);
    if (!s.ok()) {
      std::fprintf(stderr, "llmux-bench: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  const Scenario& sc = *parsed;
  std::map<std::string, RunReport> reports;
  std::vector<const RunReport*> order;
  for (const Run& run : sc.runs) {
    if (!o.only_run.empty() && run.name != o.only_run) continue;
    StatusOr<RunData> data = RunOne(o, sc, run);
    if (!data.ok()) {
      std::fprintf(stderr, "llmux-bench: run %s: %s\n", run.name.c_str(), data.status().ToString().c_str());
      return 1;
    }
    RunReport& rep = reports[run.name] = BuildRunReport(sc, run.name, std::move(*data));
    order.push_back(&rep);
    PrintRun(stdout, rep);
    std::fflush(stdout);
    if (!o.plot_dir.empty()) {
      const Status s = WritePlots(o.plot_dir, sc.name + "_" + run.name, rep);
      if (!s.ok()) std::fprintf(stderr, "llmux-bench: plots: %s\n", s.ToString().c_str());
    }
  }
  const std::vector<CheckResult> checks = o.only_run.empty() ? EvaluateChecks(sc, reports) : std::vector<CheckResult>{};
  std::printf("Checks of scenario %s:\n", sc.name.c_str());
  // The results depend on it: say under which load-generator priority they were taken.
  if (sc.flood_nice > 0) {
    std::printf("  (flood generated at nice %d in a process of its own, standing in for clients "
                "on other hosts; --flood-nice 0 for the same priority as llmuxd)\n",
                sc.flood_nice);
  } else {
    std::printf("  (flood generated at the daemon's priority on the same cores)\n");
  }
  PrintChecks(stdout, checks);
  if (!o.out.empty()) {
    std::ofstream out(o.out);
    out << ScenarioJson(sc, order, checks, Machine()).dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "llmux-bench: cannot write %s\n", o.out.c_str());
      return 1;
    }
  }
  bool all_pass = true;
  for (const CheckResult& c : checks) all_pass = all_pass && c.pass;
  return o.strict && !all_pass ? 3 : 0;
}

}  // namespace
}  // namespace llmux::bench

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "sweep") return llmux::bench::SweepMain(argc - 1, argv + 1);
  return llmux::bench::Main(argc, argv);
}
