// OpenAI request parsing and validation. Input: byte 0 selects chat (even) or completions
// (odd); the rest is the body. Invariants: no exception escapes, every rejection is a 4xx
// whose JSON parses, every accepted request passes or is rejected by the sampling check.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "fuzz_util.h"
#include "server/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace llmux;
  using namespace llmux::server;
  if (size == 0) return 0;
  const ApiKind kind = (data[0] & 1) ? ApiKind::kCompletion : ApiKind::kChat;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  RequestLimits limits;
  auto parsed = ParseOpenAiRequest(kind, body, limits);
  if (const auto* err = std::get_if<ApiError>(&parsed)) {
    if (err->http_status < 400 || err->http_status >= 500) {
      fuzz::Violation("openai_request", "rejection with status " + std::to_string(err->http_status));
    }
    if (!nlohmann::json::accept(err->ToJson())) {
      fuzz::Violation("openai_request", "error JSON does not parse: " + err->ToJson());
    }
    return 0;
  }
  OpenAiRequest& r = std::get<OpenAiRequest>(parsed);
  if (r.n < 1 || r.n > limits.max_n) fuzz::Violation("openai_request", "n out of range");
  if (static_cast<int>(r.stop.size()) > limits.max_stop_strings) {
    fuzz::Violation("openai_request", "too many stop strings accepted");
  }
  (void)FindInvalidSamplingParam(r.sampling, 512);
  return 0;
}
