#include "server/lane_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <vector>

namespace llmux::server {
namespace {

// Holds the pool's only worker inside a job until Release, so that what is queued behind it is
// ordered by the pool alone.
class Gate {
 public:
  void Block() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool released_ = false;
};

// The order jobs ran in (they run on the pool's one worker; the mutex is for the reader).
class Trace {
 public:
  LanePool::Job Job(std::string name) {
    return [this, name] {
      std::lock_guard<std::mutex> lock(mu_);
      order_.push_back(name);
    };
  }
  std::vector<std::string> order() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> order_;
};

LanePoolOptions Options(int lanes, int threads, int max_queued_per_lane, int oldest_every = 0) {
  LanePoolOptions o;
  o.lanes = lanes;
  o.threads = threads;
  o.max_queued_per_lane = max_queued_per_lane;
  o.oldest_every = oldest_every;
  return o;
}

TEST(LanePoolTest, APremiumJobQueuedBehindBatchJobsRunsFirst) {
  LanePool pool(Options(3, 1, 64));
  Gate gate;
  Trace trace;
  ASSERT_TRUE(pool.Post(2, [&] { gate.Block(); }).ok());
  gate.WaitEntered();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(pool.Post(2, trace.Job("batch" + std::to_string(i))).ok());
  ASSERT_TRUE(pool.Post(1, trace.Job("standard0")).ok());
  ASSERT_TRUE(pool.Post(0, trace.Job("premium0")).ok());
  ASSERT_TRUE(pool.Post(0, trace.Job("premium1")).ok());
  const std::vector<LanePoolLaneStats> before = pool.Stats();
  EXPECT_EQ(before[0].queued, 2);
  EXPECT_EQ(before[1].queued, 1);
  EXPECT_EQ(before[2].queued, 20);
  EXPECT_EQ(before[2].started, 1);  // the gate
  gate.Release();
  pool.Shutdown();  // runs everything queued, then joins

  std::vector<std::string> want = {"premium0", "premium1", "standard0"};
  for (int i = 0; i < 20; ++i) want.push_back("batch" + std::to_string(i));
  EXPECT_EQ(trace.order(), want);
  const std::vector<LanePoolLaneStats> after = pool.Stats();
  EXPECT_EQ(after[0].started, 2);
  EXPECT_EQ(after[1].started, 1);
  EXPECT_EQ(after[2].started, 21);
  for (const auto& s : after) EXPECT_EQ(s.queued, 0);
}

// Aging: with oldest_every 4, picks 4, 8, 12, ... take the oldest job of any lane. The gate is
// pick 1; three batch jobs were queued before nine premium ones, so the batch jobs are the
// oldest and take picks 4, 8 and 12 while premium jobs keep arriving ahead of them.
TEST(LanePoolTest, EveryNthPickTakesTheOldestJobOfAnyLane) {
  LanePool pool(Options(3, 1, 64, /*oldest_every=*/4));
  Gate gate;
  Trace trace;
  ASSERT_TRUE(pool.Post(0, [&] { gate.Block(); }).ok());  // pick 1
  gate.WaitEntered();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Post(2, trace.Job("batch" + std::to_string(i))).ok());
  ASSERT_TRUE(pool.Post(1, trace.Job("standard0")).ok());
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(pool.Post(0, trace.Job("premium" + std::to_string(i))).ok());
  }
  gate.Release();
  pool.Shutdown();
  // picks 2..14: p0 p1 [4: batch0] p2 p3 p4 [8: batch1] p5 p6 p7 [12: batch2] p8 standard0
  EXPECT_EQ(trace.order(),
            (std::vector<std::string>{"premium0", "premium1", "batch0", "premium2", "premium3",
                                      "premium4", "batch1", "premium5", "premium6", "premium7",
                                      "batch2", "premium8", "standard0"}));
}

// Without aging (oldest_every 0) the same queue runs every premium job first: a higher lane
// that always has work starves the lower ones.
TEST(LanePoolTest, StrictLanesRunTheLowerLaneOnlyWhenTheHigherOnesAreEmpty) {
  LanePool pool(Options(3, 1, 64, /*oldest_every=*/0));
  Gate gate;
  Trace trace;
  ASSERT_TRUE(pool.Post(0, [&] { gate.Block(); }).ok());
  gate.WaitEntered();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Post(2, trace.Job("batch" + std::to_string(i))).ok());
  ASSERT_TRUE(pool.Post(1, trace.Job("standard0")).ok());
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(pool.Post(0, trace.Job("premium" + std::to_string(i))).ok());
  }
  gate.Release();
  pool.Shutdown();
  std::vector<std::string> want;
  for (int i = 0; i < 9; ++i) want.push_back("premium" + std::to_string(i));
  want.insert(want.end(), {"standard0", "batch0", "batch1", "batch2"});
  EXPECT_EQ(trace.order(), want);
}

// An aging pick takes the globally oldest job, which may be in the highest lane: then it is
// an ordinary pick (here the oldest job is always a premium one, so lanes stay strict).
TEST(LanePoolTest, AnAgingPickOfAnOlderHigherLaneJobKeepsLaneOrder) {
  LanePool pool(Options(2, 1, 64, /*oldest_every=*/2));
  Gate gate;
  Trace trace;
  ASSERT_TRUE(pool.Post(0, [&] { gate.Block(); }).ok());  // pick 1
  gate.WaitEntered();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool.Post(0, trace.Job("premium" + std::to_string(i))).ok());
  }
  ASSERT_TRUE(pool.Post(1, trace.Job("batch0")).ok());
  ASSERT_TRUE(pool.Post(1, trace.Job("batch1")).ok());
  gate.Release();
  pool.Shutdown();
  EXPECT_EQ(trace.order(), (std::vector<std::string>{"premium0", "premium1", "premium2", "batch0",
                                                     "batch1"}));
}

TEST(LanePoolTest, AFullLaneRefusesWhileOtherLanesStillQueue) {
  LanePool pool(Options(2, 1, 3));
  Gate gate;
  Trace trace;
  ASSERT_TRUE(pool.Post(1, [&] { gate.Block(); }).ok());
  gate.WaitEntered();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.Post(1, trace.Job("batch" + std::to_string(i))).ok());
  const Status full = pool.Post(1, trace.Job("refused"));
  EXPECT_EQ(full.code(), StatusCode::kUnavailable);
  EXPECT_NE(full.message().find("3 requests of this lane are waiting"), std::string::npos)
      << full.message();
  EXPECT_TRUE(pool.Post(0, trace.Job("premium")).ok());
  EXPECT_EQ(pool.Stats()[1].refused, 1);
  EXPECT_EQ(pool.Stats()[0].refused, 0);
  gate.Release();
  pool.Shutdown();
  EXPECT_EQ(trace.order(), (std::vector<std::string>{"premium", "batch0", "batch1", "batch2"}));
}

TEST(LanePoolTest, ALaneBeyondTheLastQueuesInTheLast) {
  LanePool pool(Options(2, 1, 8));
  Gate gate;
  Trace trace;
  ASSERT_TRUE(pool.Post(0, [&] { gate.Block(); }).ok());
  gate.WaitEntered();
  ASSERT_TRUE(pool.Post(7, trace.Job("far")).ok());
  ASSERT_TRUE(pool.Post(-1, trace.Job("negative")).ok());  // clamps to lane 0
  EXPECT_EQ(pool.Stats()[1].queued, 1);
  EXPECT_EQ(pool.Stats()[0].queued, 1);
  gate.Release();
  pool.Shutdown();
  EXPECT_EQ(trace.order(), (std::vector<std::string>{"negative", "far"}));
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
