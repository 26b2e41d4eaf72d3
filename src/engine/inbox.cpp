#include "engine/inbox.h"

namespace llmux {

Status EngineInbox::Push(InboxItem item, bool bounded) {
  {
    MutexLock lock(mutex_);
    if (closed_) return Unavailable("engine stopped");
    if (bounded && static_cast<int32_t>(items_.size()) >= max_bounded_) {
      return Unavailable("engine inbox full (" + std::to_string(max_bounded_) + ")");
    }
    items_.push_back(std::move(item));
  }
  cv_.NotifyOne();
  return Status::Ok();
}

std::deque<InboxItem> EngineInbox::TakeAll() {
  std::deque<InboxItem> items;
  MutexLock lock(mutex_);
  items.swap(items_);
  return items;
}

int32_t EngineInbox::size() const {
  MutexLock lock(mutex_);
  return static_cast<int32_t>(items_.size());
}

bool EngineInbox::Close() {
  {
    MutexLock lock(mutex_);
    if (closed_) return false;
    closed_ = true;
  }
  cv_.NotifyAll();
  return true;
}

bool EngineInbox::closed() const {
  MutexLock lock(mutex_);
  return closed_;
}

bool EngineInbox::WaitForItem(std::chrono::milliseconds timeout) {
  MutexLock lock(mutex_);
  if (!closed_ && items_.empty()) cv_.WaitFor(lock, timeout);
  return closed_;
}

}  // namespace llmux
