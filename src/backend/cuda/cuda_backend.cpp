// CudaBackend: creation, memory, weights, the KV pool, batches and host copies. The per-op
// launches are in cuda_backend_ops.cpp.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "attention_split.h"
#include "backend/cuda/cuda_check.h"
#include "elementwise_plan.h"
#include "paged_attention.cuh"

namespace llmux::cuda {

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    return Unavailable(std::string("no CUDA device: ") +
                       (err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0"));
  }
  if (options.device < 0 || options.device >= count) {
    return Unavailable("no CUDA device: index " + std::to_string(options.device) + " of " +
                       std::to_string(count));
  }
  LLMUX_RETURN_IF_CUDA_ERROR(cudaSetDevice(options.device), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  LLMUX_RETURN_IF_CUDA_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                             "cudaStreamCreate");
  std::unique_ptr<CudaBackend> b(new CudaBackend(options, stream));
  LLMUX_RETURN_IF_CUDA_ERROR(kernels::PagedAttentionInit(), "paged attention init");
  LLMUX_ASSIGN_OR_RETURN(b->gemm_, GemmRunner::Create(stream, options.batch_invariant,
                                                         options.force_gemm_fallback));
  return b;
}

CudaBackend::~CudaBackend() {
  graphs_.Flush();
  cudaStreamSynchronize(stream_);
  graphs_.Clear();
  gemm_.reset();
  cudaStreamDestroy(stream_);
}

StatusOr<std::unique_ptr<DeviceBuffer>> CudaBackend::Allocate(size_t bytes) {
  LLMUX_RETURN_IF_CUDA_ERROR(cudaSetDevice(options_.device), "cudaSetDevice");
  LLMUX_ASSIGN_OR_RETURN(auto buf, CudaBuffer::Create(bytes));
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

StatusOr<Tensor> CudaBackend::LoadWeight(const HostTensor& src, WeightKind kind) {
  LLMUX_RETURN_IF_CUDA_ERROR(cudaSetDevice(options_.device), "cudaSetDevice");
  int64_t rows = 1;
  int64_t cols = 0;
  if (src.shape.size() == 1) {
    cols = src.shape[0];
  } else if (src.shape.size() == 2) {
    rows = src.shape[0];
    cols = src.shape[1];
  } else {
    return InvalidArgument("weight " + src.name + ": expected 1 or 2 dimensions");
  }
  if (src.dtype == DType::kI32) return InvalidArgument("weight " + src.name + ": i32 weight");
  if (src.dtype == DType::kQ8_0 && (src.shape.size() != 2 || cols % kQ8BlockElems != 0)) {
    return InvalidArgument("weight " + src.name +
                           ": a q8_0 weight must be a matrix whose row length is a multiple of 32");
  }
  // A norm weight's width is the width of the rows the norm kernels take; refuse a model they
  // cannot run here, at load, rather than at its first step.
  if (kind == WeightKind::kVector && !kernels::NormColsSupported(static_cast<int>(
                                         std::min<int64_t>(cols, int64_t{1} << 30)))) {
    return Unimplemented("weight " + src.name + ": " + std::to_string(cols) +
                         " values is wider than the CUDA norm kernels take (32768 when a "
                         "multiple of 8, else 16384)");
  }
  const int64_t n = rows * cols;
  if (src.nbytes != DTypeBytes(src.dtype, n) || src.data == nullptr) {
    return InvalidArgument("weight " + src.name + ": byte size does not match its shape");
  }
  // NOTE: Q8_0 weights are dequantized here (d * q, exact) and kept in BF16 like the others;
  // the GPU has no Q8_0 kernels, so they use the memory and bandwidth of a BF16 model.
  std::vector<float> dequantized;
  if (src.dtype == DType::kQ8_0) {
    dequantized.resize(static_cast<size_t>(n));
    DequantizeRowQ8_0(src.data, n, dequantized.data());
  }
  auto element = [&](int64_t i) -> float {
    switch (src.dtype) {
      case DType::kF32: {
        float f;
        std::memcpy(&f, src.data + 4 * i, 4);
        return f;
      }
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, src.data + 2 * i, 2);
        return HalfToFloat(h);
      }
      case DType::kBF16: {
        uint16_t h;
        std::memcpy(&h, src.data + 2 * i, 2);
        return Bf16ToFloat(h);
      }
      case DType::kQ8_0: return dequantized[static_cast<size_t>(i)];
      case DType::kI32:
        break;
    }
    return 0.0f;
  };
  const DType dtype = kind == WeightKind::kVector ? DType::kF32 : DType::kBF16;
  LLMUX_ASSIGN_OR_RETURN(auto buf, CudaBuffer::Create(static_cast<size_t>(n) * DTypeSize(dtype)));
  if (dtype == src.dtype) {
    LLMUX_RETURN_IF_CUDA_ERROR(cudaMemcpy(buf->data(), src.data, src.nbytes,
                                          cudaMemcpyHostToDevice),
                               "weight upload");
  } else if (dtype == DType::kBF16) {
    std::vector<uint16_t> host(n);
    for (int64_t i = 0; i < n; ++i) host[i] = FloatToBf16(element(i));
    LLMUX_RETURN_IF_CUDA_ERROR(cudaMemcpy(buf->data(), host.data(), host.size() * 2,
                                          cudaMemcpyHostToDevice),
                               "weight upload");
  } else {
    std::vector<float> host(n);
    for (int64_t i = 0; i < n; ++i) host[i] = element(i);
    LLMUX_RETURN_IF_CUDA_ERROR(cudaMemcpy(buf->data(), host.data(), host.size() * 4,
                                          cudaMemcpyHostToDevice),
                               "weight upload");
  }
  Tensor t = Tensor::Dense(buf->data(), dtype, rows, cols);
  owned_.push_back(std::move(buf));
  return t;
}

StatusOr<Tensor> CudaBackend::UploadF32(std::span<const float> values, int64_t rows,
                                        int64_t cols) {
  if (rows < 0 || cols < 0 || static_cast<int64_t>(values.size()) != rows * cols) {
    return InvalidArgument("UploadF32: " + std::to_string(values.size()) + " values for [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  LLMUX_RETURN_IF_CUDA_ERROR(cudaSetDevice(options_.device), "cudaSetDevice");
  LLMUX_ASSIGN_OR_RETURN(auto buf, CudaBuffer::Create(values.size() * 4));
  LLMUX_RETURN_IF_CUDA_ERROR(cudaMemcpy(buf->data(), values.data(), values.size() * 4,
                                        cudaMemcpyHostToDevice),
                             "UploadF32");
  Tensor t = Tensor::Dense(buf->data(), DType::kF32, rows, cols);
  owned_.push_back(std::move(buf));
  return t;
}

Status CudaBackend::InitKvCache(const KvCacheSpec& spec) {
  if (kv_ != nullptr) return FailedPrecondition("KV cache already initialised");
  if (spec.num_layers <= 0 || spec.num_blocks <= 0 || spec.block_size <= 0 ||
      spec.num_heads <= 0 || spec.num_kv_heads <= 0 || spec.head_dim <= 0) {
    return InvalidArgument("KV cache spec: every size must be positive");
  }
  if (spec.num_heads % spec.num_kv_heads != 0 ||
      spec.num_heads / spec.num_kv_heads > kernels::kAttnMaxGroup) {
    return InvalidArgument("KV cache spec: num_heads must be a multiple of num_kv_heads, at "
                           "most 16 times it");
  }
  if (spec.head_dim % 8 != 0 || spec.head_dim > kernels::kAttnMaxHeadDim) {
    return InvalidArgument("KV cache spec: head_dim must be a multiple of 8 and at most 256");
  }
  LLMUX_RETURN_IF_CUDA_ERROR(cudaSetDevice(options_.device), "cudaSetDevice");
  int smem_optin = 0;
  LLMUX_RETURN_IF_CUDA_ERROR(cudaDeviceGetAttribute(&smem_optin,
                                                    cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                                    options_.device),
                             "shared memory limit");
  if (kernels::PagedAttentionSmemBytes(spec.head_dim) > static_cast<size_t>(smem_optin)) {
    return InvalidArgument("KV cache spec: head_dim " + std::to_string(spec.head_dim) +
                           " needs " + std::to_string(kernels::PagedAttentionSmemBytes(
                                           spec.head_dim)) +
                           " bytes of shared memory per attention block; this device allows " +
                           std::to_string(smem_optin));
  }
  KvCacheSpec s = spec;
  s.dtype = DType::kBF16;
  const size_t layer_bytes = static_cast<size_t>(s.num_blocks) * s.BlockBytes();
  LLMUX_ASSIGN_OR_RETURN(auto kv, CudaBuffer::Create(layer_bytes * 2 * s.num_layers));
  LLMUX_RETURN_IF_CUDA_ERROR(cudaMemset(kv->data(), 0, kv->bytes()), "KV cache zeroing");
  LLMUX_ASSIGN_OR_RETURN(
      attn_workspace_,
      CudaBuffer::Create(4 * kernels::PagedAttentionWorkspaceFloats(kAttnChunkTokens,
                                                                    s.num_heads, s.head_dim)));
  kv_ = std::move(kv);
  kv_layer_bytes_ = layer_bytes;
  spec_ = s;
  graphs_.Clear();
  return Status::Ok();
}

void* CudaBackend::KCache(int layer) const {
  return static_cast<char*>(kv_->data()) + (2 * static_cast<size_t>(layer)) * kv_layer_bytes_;
}
void* CudaBackend::VCache(int layer) const {
  return static_cast<char*>(kv_->data()) + (2 * static_cast<size_t>(layer) + 1) * kv_layer_bytes_;
}

Status CudaBackend::BeginBatch(const ForwardBatch& batch) {
  if (kv_ == nullptr) return FailedPrecondition("BeginBatch before InitKvCache");
  have_batch_ = false;
  // A faulted device runs nothing more; a failure left by a step that had no sync point (no
  // logits) fails this step.
  LLMUX_RETURN_IF_ERROR(faults_.Health());
  graphs_.Flush();
  if (faults_.step_failed()) return faults_.TakeStepStatus();
  LLMUX_RETURN_IF_CUDA_ERROR(cudaSetDevice(options_.device), "cudaSetDevice");
  LLMUX_RETURN_IF_ERROR(meta_.Set(batch, spec_, stream_));
  if (meta_.generation() != meta_generation_) {
    graphs_.Clear();
    meta_generation_ = meta_.generation();
  }
  have_batch_ = true;
  if (options_.cuda_graphs && meta_.is_decode() && meta_.num_seqs() <= kMaxGraphBatch) {
    StepShape shape;
    shape.tokens = meta_.num_tokens();
    shape.seqs = meta_.num_seqs();
    shape.logits = meta_.num_logits();
    shape.block_table_stride = meta_.block_table_stride();
    shape.attention_splits = meta_.chunk_max_splits(0);  // a decode batch is one chunk
    shape.metadata_generation = meta_generation_;
    graphs_.BeginRecording(StepBucket(shape));
  }
  return Status::Ok();
}

Status CudaBackend::StepStatus(cudaError_t sync, const char* what) {
  OpResult(what, sync);
  return faults_.TakeStepStatus();
}

Status CudaBackend::CopyToHost(const Tensor& src, void* dst) {
  graphs_.Flush();
  if (faults_.faulted()) return faults_.TakeStepStatus();
  const size_t es = DTypeSize(src.dtype);
  cudaError_t err = cudaSuccess;
  if (src.rows > 0 && src.cols > 0) {
    err = cudaMemcpy2DAsync(dst, src.cols * es, src.data, src.stride * es, src.cols * es,
                            src.rows, cudaMemcpyDeviceToHost, stream_);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  return StepStatus(err, "copy to host");
}

Status CudaBackend::CopyFromHost(Tensor dst, const void* src) {
  graphs_.Flush();
  if (faults_.faulted()) return faults_.TakeStepStatus();
  const size_t es = DTypeSize(dst.dtype);
  cudaError_t err = cudaSuccess;
  if (dst.rows > 0 && dst.cols > 0) {
    err = cudaMemcpy2DAsync(dst.data, dst.stride * es, src, dst.cols * es, dst.cols * es,
                            dst.rows, cudaMemcpyHostToDevice, stream_);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  return StepStatus(err, "copy from host");
}

Status CudaBackend::CopyToHostF32(const Tensor& src, float* dst) {
  if (src.dtype != DType::kF32) return InvalidArgument("CopyToHostF32: tensor is not F32");
  return CopyToHost(src, dst);
}

Status CudaBackend::Synchronize() {
  graphs_.Flush();
  if (faults_.faulted()) return faults_.TakeStepStatus();
  return StepStatus(cudaStreamSynchronize(stream_), "synchronize");
}

Status CudaBackend::ZeroKvBlocks(std::span<const int32_t> blocks) {
  if (kv_ == nullptr) return FailedPrecondition("ZeroKvBlocks before InitKvCache");
  for (int32_t b : blocks) {
    if (b < 0 || b >= spec_.num_blocks) {
      return InvalidArgument("ZeroKvBlocks: block " + std::to_string(b) + " is not in the pool");
    }
  }
  graphs_.Flush();
  if (faults_.faulted()) return faults_.TakeStepStatus();
  const size_t bb = spec_.BlockBytes();
  cudaError_t err = cudaSuccess;
  for (int layer = 0; layer < spec_.num_layers && err == cudaSuccess; ++layer) {
    for (int32_t b : blocks) {
      err = cudaMemsetAsync(static_cast<char*>(KCache(layer)) + b * bb, 0, bb, stream_);
      if (err == cudaSuccess) {
        err = cudaMemsetAsync(static_cast<char*>(VCache(layer)) + b * bb, 0, bb, stream_);
      }
      if (err != cudaSuccess) break;
    }
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  return StepStatus(err, "zero KV");
}

Status CudaBackend::ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                                std::vector<std::byte>* v) {
  if (kv_ == nullptr) return FailedPrecondition("ReadKvBlock before InitKvCache");
  if (layer < 0 || layer >= spec_.num_layers || block < 0 || block >= spec_.num_blocks) {
    return InvalidArgument("ReadKvBlock: layer or block out of range");
  }
  graphs_.Flush();
  if (faults_.faulted()) return faults_.TakeStepStatus();
  const size_t bb = spec_.BlockBytes();
  k->resize(bb);
  v->resize(bb);
  cudaError_t err = cudaMemcpyAsync(k->data(), static_cast<char*>(KCache(layer)) + block * bb,
                                    bb, cudaMemcpyDeviceToHost, stream_);
  if (err == cudaSuccess) {
    err = cudaMemcpyAsync(v->data(), static_cast<char*>(VCache(layer)) + block * bb, bb,
                          cudaMemcpyDeviceToHost, stream_);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  return StepStatus(err, "read KV");
}

StatusOr<DeviceProbe> CudaBackend::Probe(size_t bytes) {
  graphs_.Flush();
  cudaDeviceProp prop{};
  LLMUX_RETURN_IF_CUDA_ERROR(cudaGetDeviceProperties(&prop, options_.device), "device properties");
  DeviceProbe p;
  p.name = prop.name;
  p.sm_count = prop.multiProcessorCount;
  p.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1 << 30);
  LLMUX_ASSIGN_OR_RETURN(auto src, CudaBuffer::Create(bytes));
  LLMUX_ASSIGN_OR_RETURN(auto dst, CudaBuffer::Create(bytes));
  cudaEvent_t start = nullptr, stop = nullptr;
  LLMUX_RETURN_IF_CUDA_ERROR(cudaEventCreate(&start), "event");
  LLMUX_RETURN_IF_CUDA_ERROR(cudaEventCreate(&stop), "event");
  cudaError_t err = cudaMemsetAsync(src->data(), 1, bytes, stream_);
  float best_ms = 0;
  for (int i = 0; i < 11 && err == cudaSuccess; ++i) {
    err = cudaEventRecord(start, stream_);
    if (err == cudaSuccess) {
      err = cudaMemcpyAsync(dst->data(), src->data(), bytes, cudaMemcpyDeviceToDevice, stream_);
    }
    if (err == cudaSuccess) err = cudaEventRecord(stop, stream_);
    if (err == cudaSuccess) err = cudaEventSynchronize(stop);
    float ms = 0;
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms, start, stop);
    if (i > 0 && (best_ms == 0 || ms < best_ms)) best_ms = ms;  // copy 0 warms up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  LLMUX_RETURN_IF_ERROR(StepStatus(err, "bandwidth probe"));
  p.copy_bandwidth = best_ms > 0 ? 2.0 * static_cast<double>(bytes) / (best_ms * 1e-3) : 0;
  return p;
}

GraphStats CudaBackend::graph_stats() const {
  GraphStats s;
  s.captures = graphs_.captures();
  s.replays = graphs_.replays();
  s.cached = static_cast<int64_t>(graphs_.size());
  s.early_launches = graphs_.early_launches();
  s.early_misses = graphs_.early_misses();
  return s;
}

}  // namespace llmux::cuda

namespace llmux {

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  LLMUX_ASSIGN_OR_RETURN(auto b, cuda::CudaBackend::Create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace llmux
