// Linked only into `llmuxd-test`, the daemon the integration tests start when they inject
// faults: it installs the engine's fault hook from the environment. The production `llmuxd`
// does not link this file, so it ignores LLMUX_TEST_FAIL_TENANT (a test checks that).
//
// LLMUX_TEST_FAIL_TENANT=NAME[:AFTER]: every sequence of tenant NAME fails once it has AFTER
// (default 0) tokens, as a per-sequence engine failure would (its request alone gets an error).
// LLMUX_TEST_FORCE_TOKENS=NAME:ID,ID,...: tenant NAME's requests generate exactly these token
// ids first (then sample normally), so that output parsing (tool calls) can be tested on a
// tiny model; the tests end the list with EOS.
// LLMUX_TEST_DEVICE_FAULT=step:SEED[:AFTER] | sticky:SEED[:AFTER]: every pool's backend is
// wrapped so that the first step sampling a request with `seed` SEED once it has AFTER
// (default 0) tokens fails as after a CUDA error of that kind
// (tests/support/fault_injecting_backend.h): a step fault fails that step's requests (503); a
// sticky one also leaves the backend faulted (EngineStats::device_fault, /health unhealthy, a
// process pool's worker exits with code 3 and is restarted). A malformed value stops the
// daemon at start-up.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "fault_injecting_backend.h"
#include "llmux/engine.h"
#include "pool/local_engine.h"

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

void InstallForcedTokens(Engine& engine) {
  const char* spec = std::getenv("LLMUX_TEST_FORCE_TOKENS");
  if (spec == nullptr || *spec == '\0') return;
  const std::string text = spec;
  const size_t colon = text.find(':');
  if (colon == std::string::npos) return;
  const std::string tenant = text.substr(0, colon);
  std::vector<int32_t> ids;
  for (size_t p = colon + 1; p < text.size();) {
    size_t comma = text.find(',', p);
    if (comma == std::string::npos) comma = text.size();
    ids.push_back(static_cast<int32_t>(std::atoi(text.substr(p, comma - p).c_str())));
    p = comma + 1;
  }
  engine.SetSampleOverrideHookForTesting(
      [tenant, ids](const EngineRequest& r, int32_t num_output) -> std::optional<int32_t> {
        if (r.tenant != tenant || num_output >= static_cast<int32_t>(ids.size())) {
          return std::nullopt;
        }
        return ids[num_output];
      });
}

void InstallTestHooks(Engine& engine) {
  InstallFaultInjection(engine);
  InstallForcedTokens(engine);
}

testing::DeviceFaultSpec device_fault;

std::unique_ptr<Backend> InjectDeviceFault(std::unique_ptr<Backend> backend,
                                           const PoolSection& /*pool*/) {
  return testing::WrapWithDeviceFault(std::move(backend), device_fault);
}

void InstallDeviceFault() {
  const char* spec = std::getenv("LLMUX_TEST_DEVICE_FAULT");
  if (spec == nullptr || *spec == '\0') return;
  if (!testing::ParseDeviceFaultSpec(spec, &device_fault)) {
    std::fprintf(stderr,
                 "LLMUX_TEST_DEVICE_FAULT='%s': expected step:SEED[:AFTER] or "
                 "sticky:SEED[:AFTER]\n",
                 spec);
    std::exit(2);
  }
  pool::SetBackendCreatedHookForTesting(&InjectDeviceFault);
}

// Runs before main(): every engine this process creates (the daemon's thread pools, or a
// process pool's worker, which is this same binary) gets the hook.
[[maybe_unused]] const bool kInstalled = [] {
  SetEngineCreatedHookForTesting(&InstallTestHooks);
  InstallDeviceFault();
  return true;
}();

}  // namespace
}  // namespace llmux
