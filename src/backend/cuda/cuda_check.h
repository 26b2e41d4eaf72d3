// Error plumbing for CUDA runtime and cuBLAS calls on the host side of the CUDA backend.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "llmux/status.h"

namespace llmux::cuda {

// Internal("<what>: <cuda error string>") or OK.
inline Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Internal(std::string(what) + ": " + cudaGetErrorString(err));
}

inline Status CublasStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Internal(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(st)));
}

}  // namespace llmux::cuda

// For calls whose failure leaves the device unusable (inside ops that return void): aborts
// with the call and the CUDA error. Ops are only issued after the backend validated inputs.
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
