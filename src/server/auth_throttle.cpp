#include "server/auth_throttle.h"

namespace llmux::server {

void AuthThrottle::Expire(std::deque<Clock::time_point>& failures, Clock::time_point now) const {
  while (!failures.empty() && now - failures.front() >= window_) failures.pop_front();
}

int64_t AuthThrottle::RetryAfter(const std::string& address, Clock::time_point now) {
  MutexLock lock(mutex_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return 0;
  Expire(it->second, now);
  if (static_cast<int>(it->second.size()) < max_failures_) return 0;
  // Allowed again once enough of the oldest failures leave the window.
  const auto free_at = it->second[it->second.size() - max_failures_] + window_;
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(free_at - now).count();
  return (wait + 999) / 1000;
}

void AuthThrottle::RecordFailure(const std::string& address, Clock::time_point now) {
  MutexLock lock(mutex_);
  if (failures_.size() >= max_addresses_ && failures_.count(address) == 0) {
    // NOTE: bounded memory under an address-spraying attack: drop entries whose failures all
    // expired, and if none did, the whole table (throttling degrades, memory does not grow).
    for (auto it = failures_.begin(); it != failures_.end();) {
      Expire(it->second, now);
      it = it->second.empty() ? failures_.erase(it) : std::next(it);
    }
    if (failures_.size() >= max_addresses_) failures_.clear();
  }
  auto& q = failures_[address];
  Expire(q, now);
  q.push_back(now);
  // Only the newest max_failures_ matter.
  while (static_cast<int>(q.size()) > max_failures_) q.pop_front();
}

}  // namespace llmux::server
