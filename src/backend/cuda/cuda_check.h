// Error plumbing for CUDA runtime and cuBLAS calls on the host side of the CUDA backend.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "llmux/status.h"

namespace llmux::cuda {

// Unavailable("<what>: <cuda error string>") or OK: a failed device call means the device
// cannot serve this work (503-class), never a bad request.
inline Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Unavailable(std::string(what) + ": " + cudaGetErrorString(err));
}

inline Status CublasStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Unavailable(std::string(what) + ": cuBLAS status " +
                     std::to_string(static_cast<int>(st)));
}

}  // namespace llmux::cuda

// For host-side setup calls that cannot fail on a working device (descriptor creation): aborts
// with the call and the error. Device work never uses these: its failures go to DeviceFaults
// (device_faults.h) and fail the step.
#define LLMUX_CUDA_CHECK(expr)                                                    \
  do {                                                                            \
    const cudaError_t llmux_cuda_err_ = (expr);                                   \
    LLMUX_CHECK(llmux_cuda_err_ == cudaSuccess)                                   \
        << #expr << ": " << cudaGetErrorString(llmux_cuda_err_);                 \
  } while (0)

#define LLMUX_CUBLAS_CHECK(expr)                                                  \
  do {                                                                            \
    const cublasStatus_t llmux_cublas_st_ = (expr);                               \
    LLMUX_CHECK(llmux_cublas_st_ == CUBLAS_STATUS_SUCCESS)                        \
        << #expr << ": cuBLAS status " << static_cast<int>(llmux_cublas_st_);    \
  } while (0)

#define LLMUX_RETURN_IF_CUDA_ERROR(expr, what) \
  LLMUX_RETURN_IF_ERROR(::llmux::cuda::CudaStatus((expr), (what)))
