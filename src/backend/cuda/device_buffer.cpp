#include "backend/cuda/device_buffer.h"

#include <cuda_runtime.h>

#include <string>

namespace llmux::cuda {

StatusOr<std::unique_ptr<CudaBuffer>> CudaBuffer::Create(size_t bytes) {
  void* ptr = nullptr;
  // NOTE: a zero-byte request still gets a distinct valid allocation (callers index it).
  const cudaError_t err = cudaMalloc(&ptr, bytes == 0 ? 1 : bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state of a failed allocation
    return ResourceExhausted("cudaMalloc of " + std::to_string(bytes) +
                             " bytes failed: " + cudaGetErrorString(err));
  }
  return std::unique_ptr<CudaBuffer>(new CudaBuffer(ptr, bytes));
}

CudaBuffer::~CudaBuffer() { cudaFree(ptr_); }

StatusOr<std::unique_ptr<PinnedBuffer>> PinnedBuffer::Create(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t err = cudaMallocHost(&ptr, bytes == 0 ? 1 : bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return ResourceExhausted("cudaMallocHost of " + std::to_string(bytes) +
                             " bytes failed: " + cudaGetErrorString(err));
  }
  return std::unique_ptr<PinnedBuffer>(new PinnedBuffer(ptr, bytes));
}

PinnedBuffer::~PinnedBuffer() { cudaFreeHost(ptr_); }

}  // namespace llmux::cuda
