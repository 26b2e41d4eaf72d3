// Throttles repeated failed authentication from one client address: after `max_failures`
// failures inside `window`, the address gets 429 until the window that holds them has passed.
// Thread-safe (any I/O thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

#include "llmux/thread_annotations.h"

namespace llmux::server {

class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  AuthThrottle(int max_failures, std::chrono::seconds window, size_t max_addresses = 10000)
      : max_failures_(max_failures), window_(window), max_addresses_(max_addresses) {}

  // Whole seconds the address must wait before trying again; 0 when it may try now.
  int64_t RetryAfter(const std::string& address, Clock::time_point now);
  void RecordFailure(const std::string& address, Clock::time_point now);

 private:
  void Expire(std::deque<Clock::time_point>& failures, Clock::time_point now) const;

  const int max_failures_;
  const std::chrono::seconds window_;
  const size_t max_addresses_;
  Mutex mutex_;
  // Failure times per address, oldest first.
  std::unordered_map<std::string, std::deque<Clock::time_point>> failures_ GUARDED_BY(mutex_);
};

}  // namespace llmux::server
