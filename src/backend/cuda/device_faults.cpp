#include "backend/cuda/device_faults.h"

#include <cuda_runtime.h>

namespace llmux::cuda {

FaultKind ClassifyCudaError(int cuda_error) {
  // CUDA runtime API, "cudaError": "the process is left in an inconsistent
  // state and any further CUDA work will return the same error. To continue
  // using CUDA, the process must be terminated and relaunched."
  switch (static_cast<cudaError_t>(cuda_error)) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchTimeout:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchFailure:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoDevice:
    case cudaErrorDeviceUninitialized:
    case cudaErrorExternalDevice:
    case cudaErrorUnknown:
      return FaultKind::kSticky;
    default:
      return FaultKind::kStep;
  }
}

void DeviceFaults::Record(FaultKind kind, std::string what) {
  if (kind == FaultKind::kSticky && sticky_.empty()) sticky_ = what;
  if (step_.empty()) step_ = std::move(what);
}

Status DeviceFaults::TakeStepStatus() {
  std::string step = std::move(step_);
  step_.clear();
  if (!sticky_.empty()) {
    return Unavailable("cuda device faulted: " + sticky_ +
                       (step.empty() || step == sticky_ ? "" : " (this step: " + step + ")"));
  }
  if (!step.empty()) return Unavailable("cuda step failed: " + step);
  return Status::Ok();
}

Status DeviceFaults::Health() const {
  if (sticky_.empty()) return Status::Ok();
  return Unavailable("cuda device faulted: " + sticky_);
}

}  // namespace llmux::cuda
