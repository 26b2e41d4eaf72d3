// offline_throughput: continuous vs static batching on the same workload, same engine limits.
// All requests are submitted at once (offline); output lengths are pinned with ignore_eos and
// drawn from a long-tailed (ShareGPT-like) distribution, so static batches wait for their
// longest member while continuous batching refills freed slots every step.
//
//   build/offline_throughput --model DIR [--requests 64] [--max-seqs 16] [--seed 1]
//                            [--mean-in 200] [--mean-out 180] [--threads 2]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/engine.h"
#include "llmux/model.h"

namespace {

using namespace llmux;

struct Options {
  std::string model;
  int requests = 64;
  int max_seqs = 16;
  uint32_t seed = 1;
  double mean_in = 200;
  double mean_out = 180;
  int threads = 2;
};

struct Work {
  std::vector<int32_t> prompt;
  int32_t max_tokens;
};

// Log-normal lengths with sigma 1 (a long tail like ShareGPT's), scaled to the given mean,
// clamped to [4, cap].
int LongTailed(std::mt19937_64& rng, double mean, int cap) {
  constexpr double kSigma = 1.0;
  std::lognormal_distribution<double> d(std::log(mean) - kSigma * kSigma / 2, kSigma);
  return std::clamp(static_cast<int>(d(rng)), 4, cap);
}

struct RunResult {
  double seconds;
  int64_t generated;
  int64_t prompt;
  int64_t steps;
};

RunResult RunOnce(const Options& o, const std::vector<Work>& work, BatchingMode mode) {
  CpuBackendOptions bo;
  bo.threads = o.threads;
  auto backend = CreateCpuBackend(bo);
  auto model = Model::Load(o.model, backend->get(), 2048);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    std::exit(1);
  }
  EngineConfig c;
  c.scheduler.max_seqs = o.max_seqs;
  c.scheduler.max_batched_tokens = 2048;
  c.scheduler.batching = mode;
  c.kv_cache_tokens = static_cast<int64_t>(o.max_seqs) * 2048 + 1024;
  auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    std::exit(1);
  }
  (void)(*engine)->UpsertTenant("bench", TenantLimits{});
  int64_t generated = 0, prompt = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    EngineRequest r;
    r.id = i;
    r.tenant = "bench";
    r.prompt = work[i].prompt;
    r.sampling.temperature = 0;
    r.sampling.ignore_eos = true;
    r.sampling.max_tokens = work[i].max_tokens;
    prompt += static_cast<int64_t>(r.prompt.size());
    Status s = (*engine)->Submit(std::move(r), [&generated](EngineOutput&& out) {
      generated += static_cast<int64_t>(out.tokens.size());
    });
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  Status s = (*engine)->RunUntilIdle();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
  return {secs, generated, prompt, (*engine)->Stats().steps};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--requests") o.requests = std::stoi(next());
    else if (a == "--max-seqs") o.max_seqs = std::stoi(next());
    else if (a == "--seed") o.seed = static_cast<uint32_t>(std::stoul(next()));
    else if (a == "--mean-in") o.mean_in = std::stod(next());
    else if (a == "--mean-out") o.mean_out = std::stod(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else {
      std::fprintf(stderr, "usage: offline_throughput --model DIR [--requests N] [--max-seqs N] [--seed S] [--mean-in N] [--mean-out N] [--threads N]\n");
      return 2;
    }
  }
  if (o.model.empty()) {
    std::fprintf(stderr, "offline_throughput: --model is required\n");
    return 2;
  }
  std::mt19937_64 rng(o.seed);
  std::vector<Work> work;
  for (int i = 0; i < o.requests; ++i) {
    Work w;
    const int in = LongTailed(rng, o.mean_in, 1024);
    w.max_tokens = LongTailed(rng, o.mean_out, 1000);
    w.prompt.push_back(1);
    for (int k = 1; k < in; ++k) w.prompt.push_back(3 + static_cast<int32_t>(rng() % 250));
    work.push_back(std::move(w));
  }
  std::printf("requests %d, max_seqs %d, seed %u\n", o.requests, o.max_seqs, o.seed);
  std::printf("| batching   | seconds | steps | gen tok/s | total tok/s |\n|------------|---------|-------|-----------|-------------|\n");
  double rate[2] = {0, 0};
  int idx = 0;
  for (BatchingMode mode : {BatchingMode::kContinuous, BatchingMode::kStatic}) {
    const RunResult r = RunOnce(o, work, mode);
    rate[idx++] = r.generated / r.seconds;
    std::printf("| %-10s | %7.2f | %5lld | %9.1f | %11.1f |\n",
                mode == BatchingMode::kContinuous ? "continuous" : "static", r.seconds,
                static_cast<long long>(r.steps), r.generated / r.seconds,
                (r.generated + r.prompt) / r.seconds);
    std::fflush(stdout);
  }
  std::printf("continuous / static generation throughput: %.2fx\n", rate[0] / rate[1]);
  return 0;
}
