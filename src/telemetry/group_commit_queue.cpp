#include "telemetry/group_commit_queue.h"

#include <future>
#include <memory>
#include <utility>

#include "llmux/log.h"

namespace llmux {

GroupCommitQueue::GroupCommitQueue(CommitFn commit) : commit_(std::move(commit)) {
  writer_ = std::thread([this] { WriterMain(); });
}

void GroupCommitQueue::Append(UsageRecord record, UsageLedger::OnCommitted on_committed) {
  {
    MutexLock lock(mutex_);
    if (!closed_) {
      queue_.push_back({std::move(record), std::move(on_committed)});
      cv_.NotifyOne();
      return;
    }
  }
  if (on_committed) on_committed(Unavailable("usage ledger closed"));
}

Status GroupCommitQueue::AppendSync(UsageRecord record) {
  auto done = std::make_shared<std::promise<Status>>();
  std::future<Status> f = done->get_future();
  Append(std::move(record), [done](const Status& s) { done->set_value(s); });
  return f.get();
}

void GroupCommitQueue::Close() {
  {
    MutexLock lock(mutex_);
    if (closed_) return;
    closed_ = true;
  }
  cv_.NotifyOne();
  if (writer_.joinable()) writer_.join();
}

void GroupCommitQueue::WriterMain() {
  for (;;) {
    std::deque<Pending> group;
    {
      MutexLock lock(mutex_);
      cv_.Wait(lock, [this]() REQUIRES(mutex_) { return closed_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closed and drained
      while (!queue_.empty() && static_cast<int>(group.size()) < kMaxGroup) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<const UsageRecord*> rows;
    rows.reserve(group.size());
    for (const Pending& p : group) rows.push_back(&p.record);
    const Status s = commit_(rows);
    if (!s.ok()) {
      LogEvent(LogLevel::kError, "usage_write_failed",
               {F("rows", static_cast<long long>(group.size())), F("error", s.message())});
    }
    for (Pending& p : group) {
      if (p.on_committed) p.on_committed(s);
    }
  }
}

}  // namespace llmux
