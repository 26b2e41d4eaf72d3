// A gate that holds one thread inside a job until the test opens it: tests hold a pool's only
// worker (or I/O thread, or writer) this way, so that whatever is queued behind it meanwhile is
// ordered by the component under test alone.
#pragma once

#include "llmux/thread_annotations.h"

namespace llmux::testing {

// One use: Block() is called once (by the held thread), WaitEntered() and Release() by the
// test. Thread-safe.
class Gate {
 public:
  // Called by the held thread: says it has entered, then waits until Release().
  void Block() {
    MutexLock lock(mutex_);
    entered_ = true;
    cv_.NotifyAll();
    cv_.Wait(lock, [this]() REQUIRES(mutex_) { return released_; });
  }
  // Waits until a thread is inside Block().
  void WaitEntered() {
    MutexLock lock(mutex_);
    cv_.Wait(lock, [this]() REQUIRES(mutex_) { return entered_; });
  }
  // Lets the held thread go (and any that call Block() later through at once).
  void Release() {
    MutexLock lock(mutex_);
    released_ = true;
    cv_.NotifyAll();
  }

 private:
  Mutex mutex_;
  CondVar cv_;
  bool entered_ GUARDED_BY(mutex_) = false;
  bool released_ GUARDED_BY(mutex_) = false;
};

}  // namespace llmux::testing
