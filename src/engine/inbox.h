// The engine's inbox: the one queue other threads use to reach the engine thread (submits,
// aborts, tenant upserts), bounded for submits, and the flag that stops the engine.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <variant>

#include "llmux/engine.h"
#include "llmux/thread_annotations.h"

namespace llmux {

struct SubmitItem {
  EngineRequest request;
  OutputSink sink;
};
struct AbortItem {
  uint64_t id;
};
struct UpsertItem {
  std::string name;
  TenantLimits limits;
};
using InboxItem = std::variant<SubmitItem, AbortItem, UpsertItem>;

// Thread-safe.
class EngineInbox {
 public:
  // `max_bounded`: bound on the items queued, checked by bounded pushes (submits).
  explicit EngineInbox(int32_t max_bounded) : max_bounded_(max_bounded) {}

  // Queues `item`; Unavailable when the inbox is closed, or when `bounded` and it is full.
  Status Push(InboxItem item, bool bounded);
  // Everything queued, in order; the inbox is empty afterwards.
  std::deque<InboxItem> TakeAll();
  int32_t size() const;

  // Closes the inbox (pushes fail from now on) and wakes a waiting engine thread. Returns false
  // when it was already closed.
  bool Close();
  bool closed() const;
  // Waits up to `timeout` for an item or Close; returns at once when an item is queued.
  // Returns whether the inbox is closed.
  bool WaitForItem(std::chrono::milliseconds timeout);

 private:
  const int32_t max_bounded_;
  mutable Mutex mutex_;
  CondVar cv_;
  std::deque<InboxItem> items_ GUARDED_BY(mutex_);
  bool closed_ GUARDED_BY(mutex_) = false;
};

}  // namespace llmux
