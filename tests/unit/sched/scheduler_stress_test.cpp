// Randomised stress with fixed seeds: thousands of submit / abort / finish / preempt events on
// a small pool. After every step: no leaked or double-freed block (CheckInvariants), budgets and
// floors hold, every chunk carries exactly the request's known tokens (the driver checks), and
// at the end every accepted request has finished or been aborted.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "llmux/scheduler.h"
#include "unit/sched/sched_driver.h"

namespace llmux {
namespace {

using ::llmux::testing::Driver;

struct TenantSpec {
  const char* name;
  TenantLimits limits;
};

std::vector<TenantSpec> Tenants() {
  std::vector<TenantSpec> v;
  auto add = [&](const char* name, int32_t lane, double weight, int64_t budget,
                 int64_t reserved_kv, int32_t reserved_seqs, PrefixCacheMode mode,
                 const char* group, bool zero) {
    TenantLimits l;
    l.lane = lane;
    l.weight = weight;
    l.max_inflight_tokens = budget;
    l.reserved_kv_tokens = reserved_kv;
    l.reserved_seqs = reserved_seqs;
    l.prefix_cache = mode;
    l.prefix_cache_group = group;
    l.zero_kv_on_free = zero;
    v.push_back({name, l});
  };
  add("prem", 0, 2.0, 400, 0, 0, PrefixCacheMode::kPrivate, "", false);
  add("std1", 1, 1.0, 300, 32, 1, PrefixCacheMode::kShared, "g", false);
  add("std2", 1, 3.0, 0, 0, 0, PrefixCacheMode::kShared, "g", true);
  add("batch", 2, 1.0, 600, 0, 0, PrefixCacheMode::kPrivate, "", true);
  add("batch_off", 2, 1.0, 0, 16, 0, PrefixCacheMode::kOff, "", false);
  return v;
}

void RunStress(uint32_t seed, BatchingMode mode, int steps) {
  SchedulerConfig c;
  c.num_kv_blocks = 48;
  c.block_size = 4;
  c.max_batched_tokens = 32;
  c.max_seqs = 6;
  c.max_model_len = 96;
  c.lanes = {{"premium", 0}, {"standard", 0}, {"batch", 20}};
  c.batching = mode;
  c.long_prefill_chunk = 16;
  auto sched = std::move(Scheduler::Create(c)).value();
  const auto specs = Tenants();
  std::vector<TenantId> ids;
  for (const auto& s : specs) ids.push_back(*sched->UpsertTenant(s.name, s.limits));
  Driver d(sched.get(), c.block_size);
  std::mt19937 rng(seed);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  // A few shared prompt stems so prefix caching (and sharing inside group "g") happens.
  std::vector<std::vector<int32_t>> stems;
  for (int i = 0; i < 4; ++i) stems.push_back(testing::Iota(12, 1000 * (i + 1)));

  std::set<uint64_t> live;
  uint64_t next_id = 1;
  int64_t accepted = 0, rejected = 0, aborted = 0, preempted = 0, partial_hits = 0;
  // Load: one arrival every 5 steps on average (about 80% of what 6 slots can serve), then a
  // drain phase without arrivals until the scheduler is empty (bounded: a hang fails).
  const int max_steps = steps + 3000;
  for (int step = 0; step < max_steps; ++step) {
    const bool draining = step >= steps;
    if (draining && !sched->HasWork()) break;
    if (!draining) {
      for (int n = uni(0, 4) == 0 ? 1 : 0; n > 0; --n) {
        const size_t t = uni(0, static_cast<int>(specs.size()) - 1);
        std::vector<int32_t> prompt;
        int32_t max_new;
        if (uni(0, 2) == 0) {
          // Short requests for the first tokens of a stem: they leave partial tail blocks inside
          // the stem, which later ones adopt.
          const auto& stem = stems[uni(0, 3)];
          prompt.assign(stem.begin(), stem.begin() + uni(2, 12));
          max_new = uni(1, 2);
        } else {
          if (uni(0, 1)) prompt = stems[uni(0, 3)];
          for (int k = uni(1, 30); k > 0; --k) prompt.push_back(uni(0, 500));
          max_new = uni(0, 9) == 0 ? uni(40, 80) : uni(1, 40);  // some never fit
        }
        const uint64_t id = next_id++;
        Status st = d.Submit(id, specs[t].name, prompt, max_new);
        if (st.ok()) {
          ++accepted;
          live.insert(id);
          if (uni(0, 3) == 0) d.StopAt(id, uni(1, max_new));  // engine-side stop (EOS)
        } else {
          ++rejected;
          ASSERT_TRUE(st.code() == StatusCode::kInvalidArgument ||
                      st.code() == StatusCode::kResourceExhausted)
              << st.ToString();
        }
      }
      if (!live.empty() && uni(0, 39) == 0) {
        auto it = live.begin();
        std::advance(it, uni(0, static_cast<int>(live.size()) - 1));
        d.Abort(*it);
        live.erase(it);
        ++aborted;
      }
    }
    auto out = d.Step();
    preempted += static_cast<int64_t>(out.preempted.size());
    for (const AdmittedSeq& a : out.admitted) {
      partial_hits += a.num_cached_tokens % c.block_size != 0 ? 1 : 0;
    }
    ASSERT_LE(out.num_batched_tokens, c.max_batched_tokens) << " at step " << step;
    ASSERT_LE(static_cast<int32_t>(out.seqs.size()), c.max_seqs) << " at step " << step;
    for (const FinishedSeq& f : d.last_finished()) live.erase(f.id);
    sched->CheckInvariants();
    for (size_t t = 0; t < specs.size(); ++t) {
      const TenantStats ts = sched->GetTenantStats(ids[t]);
      if (specs[t].limits.max_inflight_tokens > 0) {
        ASSERT_LE(ts.inflight_tokens, specs[t].limits.max_inflight_tokens)
            << specs[t].name << " at step " << step;
        ASSERT_LE(ts.inflight_high_water, specs[t].limits.max_inflight_tokens);
      }
    }
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_TRUE(live.empty()) << live.size() << " requests neither finished nor aborted";
  EXPECT_FALSE(sched->HasWork());
  const SchedulerStats st = sched->Stats();
  EXPECT_EQ(st.free_blocks, c.num_kv_blocks);
  EXPECT_EQ(st.kv_usage, 0.0);
  // The run must have exercised what it claims to.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(rejected, 10);
  EXPECT_GT(aborted, 50);
  EXPECT_GT(preempted, 20) << "seed " << seed;
  EXPECT_GT(st.prefix_hit_tokens, 0);
  EXPECT_GT(partial_hits, 10) << "seed " << seed;
}

TEST(SchedulerStress, ContinuousRandomOperationsKeepEveryInvariant) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RunStress(seed, BatchingMode::kContinuous, 6000);
  }
}

TEST(SchedulerStress, StaticRandomOperationsKeepEveryInvariant) {
  SCOPED_TRACE("static");
  RunStress(7, BatchingMode::kStatic, 6000);
}

}  // namespace
}  // namespace llmux
