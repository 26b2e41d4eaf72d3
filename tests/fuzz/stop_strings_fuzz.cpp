// The stop-string matcher over streamed text, and the SSE framing of error events. Input:
// NUL-separated fields: byte 0 = number of stop strings (mod 5), then the stop strings, then
// the text, pushed in chunks whose lengths come from the following bytes.
// Invariants: the emitted text is a prefix of the pushed text; no stop string occurs inside
// it; after a match the rest of the text starts with a stop string; without one, the whole
// text is emitted. An error event framed for SSE is one `data:` line (JSON escapes newlines).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "server/api_error.h"
#include "server/stop_strings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace llmux;
  if (size < 2) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  const int num_stops = data[0] % 5;
  const int chunk = 1 + data[1] % 7;
  std::vector<std::string> stops;
  for (int i = 0; i < num_stops; ++i) {
    auto [s, tail] = fuzz::SplitAtNul(rest);
    rest = tail;
    if (!s.empty()) stops.emplace_back(s);
  }
  const std::string text(rest);
  server::StopStringMatcher m(stops);
  std::string out;
  for (size_t pos = 0; pos < text.size() && !m.stopped(); pos += chunk) {
    out += m.Push(text.substr(pos, chunk));
  }
  out += m.Flush();
  if (text.compare(0, out.size(), out) != 0) fuzz::Violation("stop_strings", "output is not a prefix");
  for (const std::string& s : stops) {
    if (out.find(s) != std::string::npos) fuzz::Violation("stop_strings", "stop string emitted");
  }
  if (m.stopped()) {
    bool starts = false;
    for (const std::string& s : stops) starts |= text.compare(out.size(), s.size(), s) == 0;
    if (!starts) fuzz::Violation("stop_strings", "stopped without a stop string next");
  } else if (out != text) {
    fuzz::Violation("stop_strings", "text lost without a match");
  }

  server::ApiError e = server::InvalidRequest(text, std::string(rest.substr(0, 8)));
  const std::string frame = "data: " + e.ToJson() + "\n\n";
  if (frame.find('\n') != frame.size() - 2) fuzz::Violation("stop_strings", "SSE frame split");
  if (!nlohmann::json::accept(e.ToJson())) fuzz::Violation("stop_strings", "error JSON invalid");
  return 0;
}
