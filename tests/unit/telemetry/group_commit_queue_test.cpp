// The ledgers' group-commit queue: rows queued while a commit runs share the next one (up to
// kMaxGroup), in arrival order; every row of a group gets that commit's Status; Close commits
// what is queued, then refuses.
#include "telemetry/group_commit_queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/gate.h"
#include "llmux/thread_annotations.h"

namespace llmux {
namespace {

using ::testing::ElementsAre;

UsageRecord Row(int n) {
  UsageRecord r;
  r.request_id = "r";
  r.request_id.append(std::to_string(n));
  return r;
}

// A store whose first commit waits until Release(), so that the test can queue rows behind it.
// Records each group's request ids.
class GatedStore {
 public:
  GroupCommitQueue::CommitFn Fn() {
    return [this](const std::vector<const UsageRecord*>& rows) {
      std::vector<std::string> ids;
      for (const UsageRecord* r : rows) ids.push_back(r->request_id);
      {
        MutexLock lock(mutex_);
        groups_.push_back(std::move(ids));
      }
      if (first_.exchange(false)) gate_.Block();
      return result_;
    };
  }
  // Waits until the first commit is running.
  void WaitEntered() { gate_.WaitEntered(); }
  void Release() { gate_.Release(); }
  void FailWith(Status s) { result_ = std::move(s); }
  std::vector<std::vector<std::string>> groups() {
    MutexLock lock(mutex_);
    return groups_;
  }

 private:
  std::atomic<bool> first_{true};
  testing::Gate gate_;
  Status result_ = Status::Ok();  // set before the queue starts committing
  Mutex mutex_;
  std::vector<std::vector<std::string>> groups_ GUARDED_BY(mutex_);
};

TEST(GroupCommitQueue, RowsQueuedDuringACommitShareTheNextOneInOrder) {
  GatedStore store;
  GroupCommitQueue queue(store.Fn());
  std::atomic<int> acked{0};
  auto ack = [&](const Status& s) {
    EXPECT_TRUE(s.ok()) << s.ToString();
    acked.fetch_add(1);
  };
  queue.Append(Row(0), ack);
  store.WaitEntered();
  for (int i = 1; i <= 4; ++i) queue.Append(Row(i), ack);
  store.Release();
  queue.Close();
  EXPECT_EQ(acked.load(), 5);
  EXPECT_THAT(store.groups(), ElementsAre(ElementsAre("r0"), ElementsAre("r1", "r2", "r3", "r4")));
}

TEST(GroupCommitQueue, AGroupHoldsAtMostKMaxGroupRows) {
  GatedStore store;
  GroupCommitQueue queue(store.Fn());
  queue.Append(Row(0), nullptr);
  store.WaitEntered();
  const int queued = GroupCommitQueue::kMaxGroup + 88;
  for (int i = 1; i <= queued; ++i) queue.Append(Row(i), nullptr);
  store.Release();
  queue.Close();
  const auto groups = store.groups();
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].size(), 1u);
  ASSERT_EQ(groups[1].size(), static_cast<size_t>(GroupCommitQueue::kMaxGroup));
  EXPECT_EQ(groups[1].front(), "r1");
  EXPECT_EQ(groups[1].back(), "r512");
  ASSERT_EQ(groups[2].size(), 88u);
  EXPECT_EQ(groups[2].front(), "r513");
  EXPECT_EQ(groups[2].back(), "r600");
}

TEST(GroupCommitQueue, EveryRowOfAFailedCommitGetsItsStatus) {
  GatedStore store;
  store.FailWith(Internal("disk full"));
  GroupCommitQueue queue(store.Fn());
  std::vector<std::promise<Status>> done(3);
  std::vector<std::future<Status>> results;
  for (auto& d : done) results.push_back(d.get_future());
  for (int i = 0; i < 3; ++i) {
    queue.Append(Row(i), [&done, i](const Status& s) { done[i].set_value(s); });
    if (i == 0) store.WaitEntered();
  }
  store.Release();
  for (int i = 0; i < 3; ++i) {
    const Status s = results[i].get();
    EXPECT_EQ(s.code(), StatusCode::kInternal) << "row " << i;
    EXPECT_EQ(s.message(), "disk full") << "row " << i;
  }
  const Status sync = queue.AppendSync(Row(3));
  EXPECT_EQ(sync.code(), StatusCode::kInternal);
}

TEST(GroupCommitQueue, CloseCommitsWhatIsQueuedThenRefusesOnTheCallersThread) {
  GatedStore store;
  GroupCommitQueue queue(store.Fn());
  std::atomic<int> committed{0};
  auto ack = [&](const Status& s) {
    if (s.ok()) committed.fetch_add(1);
  };
  queue.Append(Row(0), ack);
  store.WaitEntered();
  queue.Append(Row(1), ack);
  queue.Append(Row(2), ack);
  std::thread closer([&] { queue.Close(); });
  store.Release();
  closer.join();
  EXPECT_EQ(committed.load(), 3);
  EXPECT_THAT(store.groups(), ElementsAre(ElementsAre("r0"), ElementsAre("r1", "r2")));

  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id called_on;
  Status refused = Status::Ok();
  queue.Append(Row(3), [&](const Status& s) {
    called_on = std::this_thread::get_id();
    refused = s;
  });
  EXPECT_EQ(called_on, caller);
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_EQ(queue.AppendSync(Row(4)).code(), StatusCode::kUnavailable);
  queue.Close();  // idempotent
  EXPECT_EQ(store.groups().size(), 2u);
}

}  // namespace
}  // namespace llmux
