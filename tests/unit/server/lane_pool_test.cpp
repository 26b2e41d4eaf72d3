#include "server/lane_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <vector>

#include "common/gate.h"
#include "llmux/thread_annotations.h"

namespace llmux::server {
namespace {

using testing::Gate;

LanePoolOptions Options(int lanes, int threads, int max_queued_per_lane, int oldest_every = 0) {
  LanePoolOptions o;
  o.lanes = lanes;
  o.threads = threads;
  o.max_queued_per_lane = max_queued_per_lane;
  o.oldest_every = oldest_every;
  return o;
}

// A pool whose only worker is held inside a gate job (the pool's first pick, posted to
// `gate_lane`) until RunAll, so that the jobs posted meanwhile are ordered by the pool alone.
// Each job records its name when it runs.
class HeldPool {
 public:
  HeldPool(const LanePoolOptions& options, int gate_lane) : pool_(options) {
    const Status posted = pool_.Post(gate_lane, [this] { gate_.Block(); });
    EXPECT_TRUE(posted.ok()) << posted.ToString();
    if (posted.ok()) gate_.WaitEntered();
  }
  // A test that stopped early still ends: the gate opens before the pool joins its worker.
  ~HeldPool() { RunAll(); }
  HeldPool(const HeldPool&) = delete;
  HeldPool& operator=(const HeldPool&) = delete;

  // Posts `count` jobs NAME0, NAME1, ... to `lane`; each must be accepted.
  void Post(int lane, const std::string& name, int count) {
    for (int i = 0; i < count; ++i) {
      const Status s = PostOne(lane, name + std::to_string(i));
      ASSERT_TRUE(s.ok()) << name << i << ": " << s.ToString();
    }
  }
  // Posts one job named `name`; the pool's answer.
  Status PostOne(int lane, const std::string& name) {
    return pool_.Post(lane, [this, name] {
      MutexLock lock(mutex_);
      order_.push_back(name);
    });
  }
  // Opens the gate, runs everything queued (LanePool::Shutdown) and returns the order the jobs
  // ran in.
  std::vector<std::string> RunAll() {
    gate_.Release();
    pool_.Shutdown();
    MutexLock lock(mutex_);
    return order_;
  }
  LanePool& pool() { return pool_; }

 private:
  Gate gate_;
  Mutex mutex_;
  std::vector<std::string> order_ GUARDED_BY(mutex_);
  LanePool pool_;  // last: destroyed (joined) before what its jobs use
};

TEST(LanePoolTest, APremiumJobQueuedBehindBatchJobsRunsFirst) {
  HeldPool held(Options(3, 1, 64), /*gate_lane=*/2);
  held.Post(2, "batch", 20);
  held.Post(1, "standard", 1);
  held.Post(0, "premium", 2);
  const std::vector<LanePoolLaneStats> before = held.pool().Stats();
  EXPECT_EQ(before[0].queued, 2);
  EXPECT_EQ(before[1].queued, 1);
  EXPECT_EQ(before[2].queued, 20);
  EXPECT_EQ(before[2].started, 1);  // the gate

  std::vector<std::string> want = {"premium0", "premium1", "standard0"};
  for (int i = 0; i < 20; ++i) want.push_back("batch" + std::to_string(i));
  EXPECT_EQ(held.RunAll(), want);
  const std::vector<LanePoolLaneStats> after = held.pool().Stats();
  EXPECT_EQ(after[0].started, 2);
  EXPECT_EQ(after[1].started, 1);
  EXPECT_EQ(after[2].started, 21);
  for (const auto& s : after) EXPECT_EQ(s.queued, 0);
}

// Aging: with oldest_every 4, picks 4, 8, 12, ... take the oldest job of any lane. The gate is
// pick 1; three batch jobs were queued before nine premium ones, so the batch jobs are the
// oldest and take picks 4, 8 and 12 while premium jobs keep arriving ahead of them.
TEST(LanePoolTest, EveryNthPickTakesTheOldestJobOfAnyLane) {
  HeldPool held(Options(3, 1, 64, /*oldest_every=*/4), /*gate_lane=*/0);  // pick 1
  held.Post(2, "batch", 3);
  held.Post(1, "standard", 1);
  held.Post(0, "premium", 9);
  // picks 2..14: p0 p1 [4: batch0] p2 p3 p4 [8: batch1] p5 p6 p7 [12: batch2] p8 standard0
  EXPECT_EQ(held.RunAll(),
            (std::vector<std::string>{"premium0", "premium1", "batch0", "premium2", "premium3",
                                      "premium4", "batch1", "premium5", "premium6", "premium7",
                                      "batch2", "premium8", "standard0"}));
}

// Without aging (oldest_every 0) the same queue runs every premium job first: a higher lane
// that always has work starves the lower ones.
TEST(LanePoolTest, StrictLanesRunTheLowerLaneOnlyWhenTheHigherOnesAreEmpty) {
  HeldPool held(Options(3, 1, 64, /*oldest_every=*/0), /*gate_lane=*/0);
  held.Post(2, "batch", 3);
  held.Post(1, "standard", 1);
  held.Post(0, "premium", 9);
  std::vector<std::string> want;
  for (int i = 0; i < 9; ++i) want.push_back("premium" + std::to_string(i));
  want.insert(want.end(), {"standard0", "batch0", "batch1", "batch2"});
  EXPECT_EQ(held.RunAll(), want);
}

// An aging pick takes the globally oldest job, which may be in the highest lane: then it is
// an ordinary pick (here the oldest job is always a premium one, so lanes stay strict).
TEST(LanePoolTest, AnAgingPickOfAnOlderHigherLaneJobKeepsLaneOrder) {
  HeldPool held(Options(2, 1, 64, /*oldest_every=*/2), /*gate_lane=*/0);  // pick 1
  held.Post(0, "premium", 3);
  held.Post(1, "batch", 2);
  EXPECT_EQ(held.RunAll(), (std::vector<std::string>{"premium0", "premium1", "premium2",
                                                     "batch0", "batch1"}));
}

TEST(LanePoolTest, AFullLaneRefusesWhileOtherLanesStillQueue) {
  HeldPool held(Options(2, 1, 3), /*gate_lane=*/1);
  held.Post(1, "batch", 3);
  const Status full = held.PostOne(1, "refused");
  EXPECT_EQ(full.code(), StatusCode::kUnavailable);
  EXPECT_NE(full.message().find("3 requests of this lane are waiting"), std::string::npos)
      << full.message();
  EXPECT_TRUE(held.PostOne(0, "premium").ok());
  EXPECT_EQ(held.pool().Stats()[1].refused, 1);
  EXPECT_EQ(held.pool().Stats()[0].refused, 0);
  EXPECT_EQ(held.RunAll(), (std::vector<std::string>{"premium", "batch0", "batch1", "batch2"}));
}

TEST(LanePoolTest, ALaneBeyondTheLastQueuesInTheLast) {
  HeldPool held(Options(2, 1, 8), /*gate_lane=*/0);
  ASSERT_TRUE(held.PostOne(7, "far").ok());
  ASSERT_TRUE(held.PostOne(-1, "negative").ok());  // clamps to lane 0
  EXPECT_EQ(held.pool().Stats()[1].queued, 1);
  EXPECT_EQ(held.pool().Stats()[0].queued, 1);
  EXPECT_EQ(held.RunAll(), (std::vector<std::string>{"negative", "far"}));
}

TEST(LanePoolTest, ShutdownRunsWhatIsQueuedAndRefusesNewJobs) {
  LanePool pool(Options(1, 2, 100));
  std::atomic<int> ran{0};
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.Post(0, [&] { ran.fetch_add(1); }).ok());
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 50);
  const Status late = pool.Post(0, [&] { ran.fetch_add(1); });
  EXPECT_EQ(late.code(), StatusCode::kUnavailable);
  EXPECT_EQ(ran.load(), 50);
  pool.Shutdown();  // idempotent
}

TEST(LanePoolTest, EveryWorkerTakesJobs) {
  // Two workers: two jobs that each wait for the other meet only if both run at once (with one
  // worker each gives up after its timeout and the test fails instead of hanging).
  LanePool pool(Options(1, 2, 4));
  std::promise<void> a, b;
  std::future<void> a_started = a.get_future(), b_started = b.get_future();
  std::atomic<int> met{0};
  auto wait = [&met](std::future<void>& f) {
    if (f.wait_for(std::chrono::seconds(10)) == std::future_status::ready) met.fetch_add(1);
  };
  ASSERT_TRUE(pool.Post(0, [&] { a.set_value(); wait(b_started); }).ok());
  ASSERT_TRUE(pool.Post(0, [&] { b.set_value(); wait(a_started); }).ok());
  pool.Shutdown();
  EXPECT_EQ(met.load(), 2);
}

}  // namespace
}  // namespace llmux::server
