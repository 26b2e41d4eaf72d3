// Device memory owned by the CUDA backend (cudaMalloc; never managed memory).
#pragma once

#include <cstddef>
#include <memory>

#include "llmux/backend.h"
#include "llmux/status.h"

namespace llmux::cuda {

// One cudaMalloc'd allocation, freed with cudaFree on destruction. Not copyable.
class CudaBuffer final : public DeviceBuffer {
 public:
  // ResourceExhausted when the device cannot hold `bytes` (the message names the size).
  static StatusOr<std::unique_ptr<CudaBuffer>> Create(size_t bytes);
  ~CudaBuffer() override;
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  void* data() override { return ptr_; }
  size_t bytes() const override { return bytes_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(ptr_);
  }

 private:
  CudaBuffer(void* ptr, size_t bytes) : ptr_(ptr), bytes_(bytes) {}
  void* ptr_;
  size_t bytes_;
};

// Page-locked host memory (cudaMallocHost) for staging asynchronous copies.
class PinnedBuffer {
 public:
  static StatusOr<std::unique_ptr<PinnedBuffer>> Create(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  PinnedBuffer(void* ptr, size_t bytes) : ptr_(ptr), bytes_(bytes) {}
  void* ptr_;
  size_t bytes_;
};

}  // namespace llmux::cuda
