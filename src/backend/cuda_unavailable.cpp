// Built when CUDA is not available at configure time.
#include "llmux/backend.h"

namespace llmux {

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions&) {
  return Unavailable("llmux was built without CUDA (nvcc or cuBLAS not found at configure time)");
}

}  // namespace llmux
