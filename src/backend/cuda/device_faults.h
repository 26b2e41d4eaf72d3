// Fault containment for the CUDA backend: what a failed CUDA or cuBLAS call
// does to the step that issued it and to the backend as a whole. Host logic
// only (no CUDA types), so the state machine is tested without a device
// (tests/unit/backend/cuda/device_faults_test.cpp).
//
//   healthy --(step fault)--> step failed --(TakeStepStatus: Unavailable)-->
//   healthy healthy --(sticky fault)--> faulted: every later TakeStepStatus and
//   Health() is
//                               Unavailable; nothing leaves this state (the
//                               process must go)
//
// A step fault (a launch rejected for its configuration, a cuBLAS error, an
// allocation that failed) costs the requests of that step: ops never abort the
// process. A sticky fault (an illegal address, a device-side assert, an ECC
// error, a launch failure: the CUDA context is corrupt and every later call
// fails) also marks the backend unusable, which the engine reports through
// EngineStats::device_fault so the pool shows as unhealthy and a process pool's
// worker exits to be restarted.
#pragma once

#include <string>

#include "llmux/status.h"

namespace llmux::cuda {

enum class FaultKind {
  kStep,    // this step's work is lost; the device is fine
  kSticky,  // the CUDA context is unusable for the rest of the process
};

// A cudaError_t (as its integer value, so this header needs no CUDA headers):
// kSticky for the errors CUDA documents as leaving the context unusable, kStep
// for every other.
FaultKind ClassifyCudaError(int cuda_error);

// Engine thread only (the backend's thread).
class DeviceFaults {
 public:
  // Records a failure of `what` (for example "Attention: an illegal memory
  // access was encountered"). Only the first failure of a step is reported; the
  // first sticky one is kept.
  void Record(FaultKind kind, std::string what);

  // At a step's sync point: OK when nothing failed since the previous call;
  // Unavailable naming the first failure otherwise. Clears the step's failure;
  // a sticky fault is reported by every later call.
  Status TakeStepStatus();

  // OK, or Unavailable naming the sticky fault.
  Status Health() const;

  bool faulted() const { return !sticky_.empty(); }
  bool step_failed() const { return !step_.empty(); }

 private:
  std::string step_;    // first failure since the last TakeStepStatus ("" when none)
  std::string sticky_;  // the first sticky failure ("" while healthy)
};

}  // namespace llmux::cuda
