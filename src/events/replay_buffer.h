// Bounded ring of the last N published batches, for replay requests (vLLM's `buffer_steps`).
// Not thread-safe: owned by the publisher thread.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace llmux::events {

class ReplayBuffer {
 public:
  explicit ReplayBuffer(size_t capacity) : capacity_(capacity) {}
  // Appends (seq, payload); sequence numbers must increase. Drops the oldest beyond capacity.
  void Add(uint64_t seq, std::string payload);
  // Buffered batches with seq >= start_seq, oldest first (views valid until the next Add).
  std::vector<std::pair<uint64_t, const std::string*>> From(uint64_t start_seq) const;
  size_t size() const { return ring_.size(); }

 private:
  size_t capacity_;
  std::deque<std::pair<uint64_t, std::string>> ring_;
};

}  // namespace llmux::events
