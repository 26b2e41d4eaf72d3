// The usage ledgers' write path: callers queue rows from any thread, one writer thread takes
// what is queued (up to a group's size) and commits it in one call, then tells each row's
// caller the outcome. Both ledgers (SQLite, and PostgreSQL with its spool) write through it, so
// a row is acknowledged only once a durable store committed it, and concurrent callers share
// one transaction (and one fsync) instead of paying one each. Internal to telemetry.
//
// Thread ownership: Append/AppendSync/Close may be called from any thread; `commit` runs on
// the writer thread only, one group at a time.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "llmux/thread_annotations.h"
#include "llmux/usage_ledger.h"

namespace llmux {

class GroupCommitQueue {
 public:
  // Commits `rows` (oldest first; pointers valid for the call) to the store in one transaction.
  // Its Status goes to every row's OnCommitted.
  using CommitFn = std::function<Status(const std::vector<const UsageRecord*>& rows)>;

  // Rows per commit at most.
  static constexpr int kMaxGroup = 512;

  // Starts the writer thread. `commit` must stay callable until Close returns: an owner whose
  // CommitFn uses its own members declares the queue after them (its destructor, or the
  // owner's, calls Close before those members go).
  explicit GroupCommitQueue(CommitFn commit);
  ~GroupCommitQueue() { Close(); }
  GroupCommitQueue(const GroupCommitQueue&) = delete;
  GroupCommitQueue& operator=(const GroupCommitQueue&) = delete;

  // Queues `record`; `on_committed` (may be empty) runs on the writer thread with the commit's
  // Status, or at once on the calling thread with UNAVAILABLE after Close.
  void Append(UsageRecord record, UsageLedger::OnCommitted on_committed);
  // Append, then waits for the commit and returns its Status. Not from the writer thread.
  Status AppendSync(UsageRecord record);
  // Commits everything queued so far, stops the writer thread and joins it. Idempotent.
  void Close();

 private:
  struct Pending {
    UsageRecord record;
    UsageLedger::OnCommitted on_committed;
  };

  void WriterMain();

  const CommitFn commit_;
  Mutex mutex_;
  CondVar cv_;
  std::deque<Pending> queue_ GUARDED_BY(mutex_);
  bool closed_ GUARDED_BY(mutex_) = false;
  std::thread writer_;
};

}  // namespace llmux
