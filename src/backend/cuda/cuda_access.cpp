#include "backend/cuda/cuda_access.h"

#include "backend/cuda/cuda_backend.h"

namespace llmux::cuda {
namespace {

StatusOr<CudaBackend*> AsCuda(Backend& backend) {
  auto* b = dynamic_cast<CudaBackend*>(&backend);
  if (b == nullptr) return InvalidArgument("not the CUDA backend");
  return b;
}

}  // namespace

Status CopyTensorToHost(Backend& backend, const Tensor& src, void* dst) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  return b->CopyToHost(src, dst);
}

Status CopyTensorFromHost(Backend& backend, Tensor dst, const void* src) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  return b->CopyFromHost(dst, src);
}

Status Synchronize(Backend& backend) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  return b->Synchronize();
}

StatusOr<GraphStats> GetGraphStats(Backend& backend) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  return b->graph_stats();
}

StatusOr<int> GemmFallbackShapes(Backend& backend) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  return b->gemm_fallback_shapes();
}

StatusOr<DeviceProbe> ProbeDevice(Backend& backend, size_t bytes) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  return b->Probe(bytes);
}

Status InjectFaultForTesting(Backend& backend, std::string op, int cuda_error) {
  LLMUX_ASSIGN_OR_RETURN(CudaBackend * b, AsCuda(backend));
  b->InjectFaultForTesting(std::move(op), static_cast<cudaError_t>(cuda_error));
  return Status::Ok();
}

}  // namespace llmux::cuda
