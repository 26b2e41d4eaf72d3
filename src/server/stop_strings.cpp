#include "server/stop_strings.h"

#include <algorithm>

namespace llmux::server {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

std::string StopStringMatcher::Push(const std::string& text) {
  if (stopped_) return "";
  pending_ += text;
  if (stops_.empty()) return std::move(pending_);
  // The earliest complete match wins.
  size_t best = std::string::npos;
  for (const std::string& s : stops_) best = std::min(best, pending_.find(s));
  if (best != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, best);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, pending_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStringMatcher::Flush() {
  if (stopped_) return "";
  return std::move(pending_);
}

}  // namespace llmux::server
