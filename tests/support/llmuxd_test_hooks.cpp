// Linked only into `llmuxd-test`, the daemon the integration tests start when they inject
// faults: it installs the engine's fault hook from the environment. The production `llmuxd`
// does not link this file, so it ignores LLMUX_TEST_FAIL_TENANT (a test checks that).
//
// LLMUX_TEST_FAIL_TENANT=NAME[:AFTER]: every sequence of tenant NAME fails once it has AFTER
// (default 0) tokens, as a per-sequence engine failure would (its request alone gets an error).
#include <cstdlib>
#include <string>

#include "llmux/engine.h"

namespace llmux {
namespace {

void InstallFaultInjection(Engine& engine) {
  const char* spec = std::getenv("LLMUX_TEST_FAIL_TENANT");
  if (spec == nullptr || *spec == '\0') return;
  std::string tenant = spec;
  int32_t after = 0;
  if (const size_t colon = tenant.find(':'); colon != std::string::npos) {
    after = std::atoi(tenant.c_str() + colon + 1);
    tenant.resize(colon);
  }
  engine.SetSequenceFaultHookForTesting(
      [tenant, after](const EngineRequest& r, int32_t num_output) -> Status {
        if (r.tenant == tenant && num_output >= after) {
          return Internal("injected fault (LLMUX_TEST_FAIL_TENANT) for tenant '" + tenant + "'");
        }
        return Status::Ok();
      });
}

// Runs before main(): every engine this process creates (the daemon's thread pools, or a
// process pool's worker, which is this same binary) gets the hook.
[[maybe_unused]] const bool kInstalled = [] {
  SetEngineCreatedHookForTesting(&InstallFaultInjection);
  return true;
}();

}  // namespace
}  // namespace llmux
