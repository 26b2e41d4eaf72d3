// CPU cost of one Schedule() + Update() with N running sequences, 8 tenants in 3 lanes.
// Goal: at most 20 us per step at 256 running sequences.
//
// Steady state: every tenant keeps a queue; when a request finishes a new one of the same
// tenant is admitted, so each iteration is a realistic mix of decodes, a few prefill chunks,
// admissions and block allocations.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "llmux/scheduler.h"

namespace llmux {
namespace {

void BM_ScheduleUpdate(benchmark::State& state) {
  const int32_t running = static_cast<int32_t>(state.range(0));
  SchedulerConfig c;
  c.block_size = 16;
  c.max_seqs = running;
  c.max_batched_tokens = running + 512;
  c.num_kv_blocks = running * 40;  // ~640 tokens per sequence: no KV pressure
  c.max_model_len = 4096;
  c.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 1000}};
  c.long_prefill_chunk = 256;
  auto sched = std::move(Scheduler::Create(c)).value();
  constexpr int kTenants = 8;
  std::vector<std::string> names;
  for (int t = 0; t < kTenants; ++t) {
    TenantLimits l;
    l.lane = t % 3;
    l.weight = 1.0 + t % 4;
    l.max_inflight_tokens = 1 << 30;
    names.push_back("tenant" + std::to_string(t));
    (void)sched->UpsertTenant(names.back(), l);
  }
  uint64_t next_id = 1;
  auto submit = [&](int t) {
    std::vector<int32_t> prompt(64 + (next_id % 7) * 16);
    for (size_t i = 0; i < prompt.size(); ++i) {
      prompt[i] = static_cast<int32_t>((next_id * 131 + i) % 32000);
    }
    // Lengths spread so about one request in 200 finishes per step.
    const int32_t max_new = 100 + static_cast<int32_t>(next_id % 200) * 2;
    (void)sched->Submit(SchedRequest{next_id++, names[t], std::move(prompt), max_new, 0});
  };
  for (int i = 0; i < running + 4 * kTenants; ++i) submit(i % kTenants);

  std::vector<SampleResult> results;
  int64_t now = 0;
  auto step = [&]() {
    SchedulerOutput out = sched->Schedule(now++);
    results.clear();
    for (const ScheduledSeq& s : out.seqs) {
      results.push_back(SampleResult{s.id, s.samples ? 7 : kNoToken, false});
    }
    UpdateResult done = sched->Update(out, results);
    for (const FinishedSeq& f : done.finished) submit(f.tenant);
    return out.seqs.size();
  };
  for (int i = 0; i < 50; ++i) step();  // warm up: prompts prefilled, steady decode
  size_t seqs = 0;
  for (auto _ : state) {
    seqs += step();
  }
  state.counters["seqs_per_step"] =
      benchmark::Counter(static_cast<double>(seqs) / state.iterations());
  state.counters["running"] = sched->Stats().running;
}

BENCHMARK(BM_ScheduleUpdate)->Arg(256)->Arg(1024)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace llmux

BENCHMARK_MAIN();
