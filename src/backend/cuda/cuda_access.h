// Entry points of the CUDA backend beyond the Backend interface, for tests, benchmarks and
// (later) the engine's device-side sampling. No CUDA types: includable from any target.
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

// One row's sampling parameters: temperature <= 0 or top_k == 1 is greedy; top_k <= 0 and
// top_p >= 1 disable those cuts; `seed` decides the draw (the same seed and logits always give
// the same token). The exact definition is in kernels/sampling.cuh.
struct DeviceSamplingParams {
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};
// Samples one token per row of `logits` ([rows, vocab] F32 in backend memory) on the device.
// InvalidArgument when params.size() != logits.rows or the tensor is not F32.
StatusOr<std::vector<int32_t>> SampleOnDevice(Backend& backend, const Tensor& logits,
                                              std::span<const DeviceSamplingParams> params);
// The uniform number in [0, 1) the sampler draws for `seed` (for reference implementations).
float SamplingUniformForSeed(uint64_t seed);

struct GraphStats {
  int64_t captures = 0;  // graphs captured so far
  int64_t replays = 0;   // steps run from a graph (including the capturing step)
  int64_t cached = 0;    // graphs held now
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
// "Bias", "Rope", "WriteKv", "Attention", "SiluMul", "Gather") reports the cudaError_t value
// `cuda_error` as if its launch had failed, once. The step then fails at its sync point with
// Unavailable; a sticky code (an illegal address, ...) also makes DeviceHealth() Unavailable
// for the backend's life (src/backend/cuda/device_faults.h).
Status InjectFaultForTesting(Backend& backend, std::string op, int cuda_error);

}  // namespace llmux::cuda
