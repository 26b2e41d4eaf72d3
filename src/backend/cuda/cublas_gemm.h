// The one GEMM wrapper of the CUDA backend: out[M, N] = x[M, K] * w[N, K]^T through cuBLASLt,
// bf16 inputs, f32 accumulation, bf16 or f32 output.
//
// NOTE: batch invariance. cuBLASLt's heuristic picks a different kernel (tile shape, split-K,
// stream-K) for different M, and with it a different order of the K reduction, so a row's
// result would depend on how many rows the batch has. In batch-invariant mode the runner pins
// ONE algorithm per weight shape (N, K, output type) for every M: it collects heuristic
// candidates at a prefill M (2048) and at decode Ms (1, 16, 64), orders the split-free ones by
// SMs kept busy at M = 1, then by the prefill ranking (InvariantGemmOrder, gemm_choice.h), and
// pins the first whose output rows are bit-identical across M in {1, 7, 64, 300, 2085} on the
// real weight (checked once, on the device). If none passes, the shape uses the plain
// fixed-order kernel in kernels/gemm_fallback.cu for every M. Cost: no split-K for small M,
// the pinned tile is a compromise between M = 1 and prefill, and one verification per weight
// shape at first use. In fast mode each GEMM layout takes cuBLASLt's first heuristic for its
// own M (split-K allowed).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/gemm_choice.h"
#include "llmux/backend.h"
#include "llmux/status.h"

namespace llmux::cuda {

struct GemmShape {
  int m = 0, n = 0, k = 0;
  int64_t x_stride = 0, w_stride = 0, out_stride = 0;
  bool out_f32 = false;
  auto Tie() const { return std::tie(m, n, k, x_stride, w_stride, out_stride, out_f32); }
  bool operator<(const GemmShape& o) const { return Tie() < o.Tie(); }
};

// A resolved GEMM: descriptors and algorithm (or the fallback kernel). Owned by the runner,
// stable for its lifetime (captured graphs refer to the same descriptors).
struct GemmPlan {
  GemmShape shape;
  bool use_fallback = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // w as column-major K x N, transposed
  cublasLtMatrixLayout_t b = nullptr;  // x as column-major K x M
  cublasLtMatrixLayout_t c = nullptr;  // out as column-major N x M
  cublasLtMatmulAlgo_t algo{};
  ~GemmPlan();
};

class GemmRunner {
 public:
  // Engine thread. `stream` is the backend's stream.
  // `force_fallback`: every shape uses the fallback kernel (tests of that path).
  static StatusOr<std::unique_ptr<GemmRunner>> Create(cudaStream_t stream, bool batch_invariant,
                                                      bool force_fallback = false);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Resolves (and caches) the plan for `shape`. May run the invariance verification for a
  // new weight shape on the device, synchronously, using `w` (the real weight). Host only;
  // never call during stream capture. Aborts on a cuBLAS failure (a broken environment).
  const GemmPlan* Prepare(const GemmShape& shape, const void* w);
  // Enqueues the GEMM on the runner's stream. Capturable. A launch or cuBLAS failure is
  // returned (the caller fails the step), never aborted on.
  Status Run(const GemmPlan& plan, const void* x, const void* w, void* out);

  // How many weight shapes ended on the fallback kernel (tests, logs).
  int fallback_shapes() const { return fallback_shapes_; }
  // Per weight shape (n, k, out_f32), in that order: the kernel its GEMMs run.
  std::vector<GemmChoice> Choices() const;

 private:
  GemmRunner(cudaStream_t stream, bool batch_invariant, bool force_fallback, int sm_count)
      : stream_(stream),
        batch_invariant_(batch_invariant),
        force_fallback_(force_fallback),
        sm_count_(sm_count) {}
  std::unique_ptr<GemmPlan> MakePlan(const GemmShape& shape) const;
  bool Heuristic(const GemmPlan& plan, int max_results, cublasLtMatmulAlgo_t* algos,
                 int* count) const;
  // Pinned algorithm for (n, k, out_f32), verified across M; nullptr -> fallback kernel.
  const cublasLtMatmulAlgo_t* PinnedAlgo(const GemmShape& shape, const void* w);
  // Split-K-or-not candidates for a weight shape: heuristic results at the prefill M and at
  // decode Ms, deduplicated, with the properties InvariantGemmOrder needs.
  void Candidates(const GemmShape& shape, std::vector<cublasLtMatmulAlgo_t>* algos,
                  std::vector<GemmCandidate>* props) const;
  GemmChoice& ChoiceFor(const GemmShape& shape);
  bool RowsInvariant(const cublasLtMatmulAlgo_t& algo, const GemmShape& shape, const void* w);
  Status RunOn(const GemmPlan& plan, const cublasLtMatmulAlgo_t* algo, const void* x,
             const void* w, void* out);

  cudaStream_t stream_;
  bool batch_invariant_;
  bool force_fallback_;
  int sm_count_;
  cublasLtHandle_t handle_ = nullptr;
  std::unique_ptr<CudaBuffer> workspace_;
  std::map<GemmShape, std::unique_ptr<GemmPlan>> plans_;
  // Batch-invariant mode: (n, k, out_f32) -> pinned algorithm, or nullptr for the fallback.
  std::map<std::tuple<int, int, bool>, std::unique_ptr<cublasLtMatmulAlgo_t>> pinned_;
  int fallback_shapes_ = 0;
  std::map<std::tuple<int, int, bool>, GemmChoice> choices_;
};

}  // namespace llmux::cuda
