#include "events/replay_buffer.h"

#include <algorithm>

namespace llmux::events {

void ReplayBuffer::Add(uint64_t seq, std::string payload) {
  if (capacity_ == 0) return;
  if (ring_.size() == capacity_) ring_.pop_front();
  ring_.emplace_back(seq, std::move(payload));
}

std::vector<std::pair<uint64_t, const std::string*>> ReplayBuffer::From(uint64_t start_seq) const {
  auto it = std::lower_bound(ring_.begin(), ring_.end(), start_seq,
                             [](const auto& e, uint64_t s) { return e.first < s; });
  std::vector<std::pair<uint64_t, const std::string*>> out;
  for (; it != ring_.end(); ++it) out.emplace_back(it->first, &it->second);
  return out;
}

}  // namespace llmux::events
