// Entry points of the CUDA backend beyond the Backend interface, for tests and benchmarks. No CUDA types: includable from any target.
// Every function returns InvalidArgument when `backend` is not the CUDA backend. Engine
// thread only (the backend's thread).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/status.h"

namespace llmux::cuda {

// Copies a tensor of any dtype out of / into backend memory: rows * cols elements, packed
// row-major on the host (the device side honours the tensor's stride). Waits.
Status CopyTensorToHost(Backend& backend, const Tensor& src, void* dst);
Status CopyTensorFromHost(Backend& backend, Tensor dst, const void* src);
// Waits for all work enqueued so far (flushing a recorded graph step).
Status Synchronize(Backend& backend);

struct GraphStats {
  int64_t captures = 0;  // graphs captured so far
  int64_t replays = 0;   // steps run from a graph (including the capturing step)
  int64_t cached = 0;    // graphs held now
  int64_t early_launches = 0;  // graphs launched at BeginBatch, before the ops were recorded
  int64_t early_misses = 0;    // of those, the ones whose step recorded other ops
};
StatusOr<GraphStats> GetGraphStats(Backend& backend);
// Weight shapes whose GEMM fell back to the fixed-order kernel (batch-invariant mode).
StatusOr<int> GemmFallbackShapes(Backend& backend);

// The device this backend runs on, and its memory bandwidth as a device-to-device copy of
// `bytes` (read + write counted) achieves it, the best of 10 timed copies after a warm-up.
struct DeviceProbe {
  std::string name;
  int sm_count = 0;
  double memory_gib = 0;
  double copy_bandwidth = 0;  // bytes per second
};
StatusOr<DeviceProbe> ProbeDevice(Backend& backend, size_t bytes = size_t{1} << 30);

// Test hook: the next launch of op `op` ("Embedding", "RmsNorm", "AddRmsNorm", "MatMul",
// "Bias", "Rope", "WriteKv", "Attention", "SiluMul", "Gather", "Sample") reports the cudaError_t value
// `cuda_error` as if its launch had failed, once. The step then fails at its sync point with
// Unavailable; a sticky code (an illegal address, ...) also makes DeviceHealth() Unavailable
// for the backend's life (src/backend/cuda/device_faults.h).
Status InjectFaultForTesting(Backend& backend, std::string op, int cuda_error);

}  // namespace llmux::cuda
