// A Backend decorator for the test daemon `llmuxd-test`: it runs every op on the real backend
// it wraps and fails steps the way the CUDA backend does after a CUDA error
// (src/backend/cuda/device_faults.h), so the engine, pool and HTTP fault paths are tested end
// to end without a GPU.
//
// The fault fires in the first step that samples a row whose seed is `trigger_seed` (a
// request's `seed`) once that request has generated `after_tokens` tokens (0: its first
// sampling step): that step's sync point (SampleTokens) returns Unavailable, as
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

struct DeviceFaultSpec {
  cuda::FaultKind kind = cuda::FaultKind::kStep;
  uint64_t trigger_seed = 0;
  uint64_t after_tokens = 0;
};

std::unique_ptr<Backend> WrapWithDeviceFault(std::unique_ptr<Backend> inner,
                                             const DeviceFaultSpec& spec);

// Parses LLMUX_TEST_DEVICE_FAULT's value, KIND:SEED[:AFTER] with KIND step or sticky and SEED,
// AFTER decimal. False on anything else.
bool ParseDeviceFaultSpec(const std::string& text, DeviceFaultSpec* spec);

}  // namespace llmux::testing
