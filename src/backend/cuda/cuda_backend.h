// The CUDA backend: BF16 weights and activations, F32 accumulation and logits, a paged BF16
// KV pool, one stream, cuBLASLt GEMMs, kernels from kernels/, CUDA graphs for decode steps.
// Ops are enqueued asynchronously on the backend's stream; CopyToHostF32, ZeroKvBlocks and
// ReadKvBlock wait. All methods: the engine thread (see llmux/backend.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cuda/batch_metadata.h"
#include "backend/cuda/cublas_gemm.h"
#include "backend/cuda/cuda_access.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/device_faults.h"
#include "backend/cuda/sampling_pack.h"
#include "backend/cuda/step_graphs.h"
#include "llmux/backend.h"

namespace llmux::cuda {

class CudaBackend final : public Backend {
 public:
  // Unavailable("no CUDA device: ...") without a usable device.
  static StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string_view Name() const override { return "cuda"; }
  DType ActivationDType() const override { return DType::kBF16; }

  StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override;
  // Matrices and embeddings are kept in BF16 (F32/F16 converted on the host), vectors in F32.
  // The backend always copies; `src` need not outlive it.
  StatusOr<Tensor> LoadWeight(const HostTensor& src, WeightKind kind) override;
  bool AliasesHostWeights() const override { return false; }
  StatusOr<Tensor> UploadF32(std::span<const float> values, int64_t rows, int64_t cols) override;

  // NOTE: the pool is kept in BF16 whatever spec.dtype says; kv_spec() reports kBF16.
  // InvalidArgument for head shapes the attention kernel does not support (head_dim a
  // multiple of 8 up to 256, at most 16 query heads per kv head).
  Status InitKvCache(const KvCacheSpec& spec) override;
  const KvCacheSpec& kv_spec() const override { return spec_; }

  Status BeginBatch(const ForwardBatch& batch) override;
  void Embedding(const Tensor& table, Tensor out) override;
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  void AddRmsNorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps,
                  Tensor out) override;
  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) override;
  void Rope(Tensor q, Tensor k, const Tensor& inv_freq) override;
  void WriteKv(int layer, const Tensor& k, const Tensor& v) override;
  void Attention(int layer, const Tensor& q, float scale, Tensor out) override;
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor out) override;
  void GatherLogitsRows(const Tensor& x, Tensor out) override;
  Status CopyToHostF32(const Tensor& src, float* dst) override;
  // On the device (cuda_sampling.cpp, kernels/sampling.cu): the batch is packed on the host
  // (SamplingPacker), uploaded in one copy from pinned memory, sampled in place on `logits`,
  // and only the SampledRow records ([rows], token + requested logprobs) come back, in one
  // copy into pinned memory.
  Status SampleTokens(Tensor logits, const SampleBatch& batch,
                      std::vector<SampledToken>* out) override;

  Status DeviceHealth() const override { return faults_.Health(); }
  std::vector<GemmChoice> GemmChoices() const override { return gemm_->Choices(); }

  Status ZeroKvBlocks(std::span<const int32_t> blocks) override;
  Status ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                     std::vector<std::byte>* v) override;

  // ---- Beyond the Backend interface (see cuda_access.h) ----
  Status CopyToHost(const Tensor& src, void* dst);
  Status CopyFromHost(Tensor dst, const void* src);
  Status Synchronize();
  GraphStats graph_stats() const;
  StatusOr<DeviceProbe> Probe(size_t bytes);
  int gemm_fallback_shapes() const { return gemm_->fallback_shapes(); }
  // Test hook: the next launch of op `op` ("Embedding", "RmsNorm", "AddRmsNorm", "MatMul",
  // "Bias", "Rope", "WriteKv", "Attention", "SiluMul", "Gather", "Sample") reports `cuda_error` as if
  // the launch had failed with it (the kernel still runs), exactly once.
  void InjectFaultForTesting(std::string op, cudaError_t cuda_error);

 private:
  CudaBackend(const CudaBackendOptions& options, cudaStream_t stream)
      : options_(options),
        stream_(stream),
        graphs_(stream, [this](cudaError_t err, const char* what) { OpResult(what, err); }) {}
  void* KCache(int layer) const;
  void* VCache(int layer) const;
  void CheckBatch(const char* op) const;
  // Records a failed launch of `op` (or the injected fault for it) in faults_. Never aborts.
  void OpResult(const char* op, cudaError_t err);
  // The step's outcome at a sync point: records `sync` when it failed, then
  // faults_.TakeStepStatus().
  Status StepStatus(cudaError_t sync, const char* what);

  CudaBackendOptions options_;
  cudaStream_t stream_;
  DeviceFaults faults_;
  std::string inject_op_;  // InjectFaultForTesting ("" when none is armed)
  cudaError_t inject_error_ = cudaSuccess;
  std::unique_ptr<GemmRunner> gemm_;
  BatchMetadata meta_;
  uint64_t meta_generation_ = 0;
  bool have_batch_ = false;
  StepGraphs graphs_;

  KvCacheSpec spec_;
  size_t kv_layer_bytes_ = 0;  // one of K or V of one layer
  std::unique_ptr<CudaBuffer> kv_;
  std::unique_ptr<CudaBuffer> attn_workspace_;
  std::vector<std::unique_ptr<CudaBuffer>> owned_;  // weights and uploads

  // SampleTokens: the packer and its buffers, grown on demand and kept.
  SamplingPacker sampling_packer_;
  std::unique_ptr<PinnedBuffer> sampling_in_host_;  // SamplingSections layout
  std::unique_ptr<CudaBuffer> sampling_in_;         // same, on the device
  std::unique_ptr<CudaBuffer> sampling_edit_raw_;   // [edits] f32 scratch
  std::unique_ptr<CudaBuffer> sampling_out_;        // [rows] SampledRow
  std::unique_ptr<PinnedBuffer> sampling_out_host_;
};

}  // namespace llmux::cuda
