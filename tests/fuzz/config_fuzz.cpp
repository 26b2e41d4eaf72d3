// llmux.yaml and tenants.yaml loading. Input: the file text, parsed as both. Invariants: no
// exception escapes, a failure is a non-OK Status with a message naming the file.
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "llmux/config.h"
#include "llmux/tenant_policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace llmux;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto server = ParseServerConfig(text, "fuzz.yaml", "/tmp");
  if (!server.ok() && server.status().message().find("fuzz.yaml") == std::string::npos) {
    fuzz::Violation("config", "server error does not name the file: " + server.status().message());
  }
  auto tenants = ParseTenantPolicy(text, "tenants.yaml");
  if (tenants.ok() && (*tenants)->lanes.empty()) fuzz::Violation("config", "policy without lanes");
  return 0;
}
