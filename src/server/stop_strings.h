// Stop-string matching over streamed text: emits only text that can no longer be part of a
// stop string, and truncates at the first match (the stop string itself is not emitted).
#pragma once

#include <string>
#include <vector>

namespace llmux::server {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  // Adds decoded text; returns what may be sent now. After a match, `stopped()` is true and
  // further input is ignored.
  std::string Push(const std::string& text);
  // The text still held back (call at the end of the sequence; returns "" after a match).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace llmux::server
