// Builds a pool's in-process engine: backend, model and Engine from its PoolSection. Used by
// thread pools in the daemon and by the worker process of a process pool.
#pragma once

#include <memory>
#include <vector>

#include "llmux/backend.h"
#include "llmux/config.h"
#include "llmux/engine.h"
#include "llmux/scheduler.h"

namespace llmux::pool {

// The engine is not started. `observer` (may be null; must outlive the engine) receives its
// step figures (metrics). Errors of the backend, the model load or Engine::Create, with the
// pool's name as context.
StatusOr<std::unique_ptr<Engine>> CreateLocalEngine(const PoolSection& pool,
                                                    const std::vector<LaneConfig>& lanes,
                                                    EngineObserver* observer = nullptr);

// Test binaries only: `hook` receives every backend CreateLocalEngine makes from now on, before
// the model loads into it, and returns the backend the pool uses (the test daemon `llmuxd-test`
// wraps it to inject device faults: tests/support/llmuxd_test_hooks.cpp). Production binaries
// never set it. Call before any pool is built; nullptr clears it.
using BackendCreatedHook = std::unique_ptr<Backend> (*)(std::unique_ptr<Backend> backend,
                                                        const PoolSection& pool);
void SetBackendCreatedHookForTesting(BackendCreatedHook hook);

}  // namespace llmux::pool
