// A Backend decorator for the test daemon `llmuxd-test`: it runs every op on the real backend
// it wraps and fails steps the way the CUDA backend does after a CUDA error
// (src/backend/cuda/device_faults.h), so the engine, pool and HTTP fault paths are tested end
// to end without a GPU.
//
// The fault fires in the first step that samples a row whose seed is `trigger_seed` (a
// request's `seed`): that step's sync point (SampleTokens) returns Unavailable, as
// CudaBackend's does when an op of the step failed. kStep: only that step is lost; the backend
// stays healthy. kSticky: the backend is faulted for good, as after an illegal address:
// DeviceHealth() and every later BeginBatch, CopyToHostF32 and SampleTokens return Unavailable
// naming the fault (EngineStats::device_fault, /health, and a process pool's worker exits).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/cuda/device_faults.h"
#include "llmux/backend.h"

namespace llmux::testing {

std::unique_ptr<Backend> WrapWithDeviceFault(std::unique_ptr<Backend> inner, cuda::FaultKind kind,
                                             uint64_t trigger_seed);

// Parses LLMUX_TEST_DEVICE_FAULT's value, "step:SEED" or "sticky:SEED". False on anything else.
bool ParseDeviceFaultSpec(const std::string& spec, cuda::FaultKind* kind, uint64_t* seed);

}  // namespace llmux::testing
