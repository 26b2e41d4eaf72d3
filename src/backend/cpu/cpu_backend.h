// The CPU backend: the reference implementation of every Backend op and a real serving path.
//
// Layouts: activations F32, row-major with a row stride (Tensor). Matrices and the embedding
// table are owned copies prepacked at load into MatMul's panel layout in their own dtype
// (packed_weight.h; Embedding gathers a table row from its panels); vectors are owned F32
// copies. No weight aliases the caller's host memory. KV cache: one 64-byte aligned F32 allocation; layer l's K is
// [num_blocks, block_size, num_kv_heads, head_dim] at kv_ + 2 * l * LayerElems(), V follows it.
//
// Thread ownership: the engine thread calls every method; ops fan out to the ThreadPool and
// return when done (no asynchrony). See docs/cpu_backend.md for the batch-invariance argument.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/cpu/packed_weight.h"
#include "backend/cpu/thread_pool.h"
#include "llmux/backend.h"
#include "sampling/sampler.h"

namespace llmux::cpu {

// An owned, 64-byte aligned (or more), zero-initialised host allocation.
class HostBuffer final : public DeviceBuffer {
 public:
  // nullptr when the allocation fails. `zeroed` false leaves the bytes for the caller to write
  // (every one of them). `alignment`: a power of two >= 64; from 2 MiB on the memory is marked
  // MADV_HUGEPAGE (transparent huge pages where the kernel allows them).
  static std::unique_ptr<HostBuffer> Create(size_t bytes, bool zeroed = true,
                                            size_t alignment = 64);
  ~HostBuffer() override;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  void* data() override { return data_; }
  size_t bytes() const override { return bytes_; }

 private:
  HostBuffer(void* data, size_t bytes) : data_(data), bytes_(bytes) {}
  void* data_;
  size_t bytes_;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options);

  std::string_view Name() const override { return "cpu"; }
  DType ActivationDType() const override { return DType::kF32; }

  StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override;
  StatusOr<Tensor> LoadWeight(const HostTensor& src, WeightKind kind) override;
  // Every weight is an owned copy (packed matrices and embedding, F32 vectors).
  bool AliasesHostWeights() const override { return false; }
  bool StopsBetweenLayers() const override { return true; }  // ops run on the caller's thread
  Status DeviceHealth() const override { return Status::Ok(); }  // host memory cannot fault
  // kBf16 only when asked for and the CPU and build have AVX-512 BF16 (Bf16DotAvailable).
  std::optional<CpuBf16Activations> CpuBf16ActivationsInUse() const override;
  StatusOr<Tensor> UploadF32(std::span<const float> values, int64_t rows, int64_t cols) override;
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
  // Runs src/sampling's Sampler on each row in order (cpu_sampling.cpp): the reference.
  Status SampleTokens(Tensor logits, const SampleBatch& batch,
                      std::vector<SampledToken>* out) override;
  Status ZeroKvBlocks(std::span<const int32_t> blocks) override;
  Status ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                     std::vector<std::byte>* v) override;

 private:
  // Elements of one layer's K (or V): num_blocks * block_size * num_kv_heads * head_dim.
  int64_t LayerElems() const;
  // First byte of layer `layer`'s K (or V) in the cache (elements of spec_.dtype).
  std::byte* KCache(int layer) {
    return kv_cache_ + DTypeBytes(spec_.dtype, 2 * layer * LayerElems());
  }
  std::byte* VCache(int layer) { return KCache(layer) + DTypeBytes(spec_.dtype, LayerElems()); }
  // An owned copy of the matrix `src` in the packed layout, registered in packed_.
  StatusOr<Tensor> PackMatrix(const HostTensor& src, const std::string& who);
  // `bytes` (64-byte aligned) for a packed matrix, carved from huge-page slabs; nullptr when
  // out of memory.
  std::byte* AllocatePacked(size_t bytes);
  // The packed form of `w` when LoadWeight packed it (w is the whole weight); nullptr for a
  // row-major weight (a caller's own Tensor). Aborts on a view into part of a packed weight (it has no row-major rows).
  const PackedWeight* PackedFor(const Tensor& w) const;
  // Cuts the current batch into attention tiles (attn_items_: one sequence, one kv head, up to
  // kAttnTileRows query rows) and splits them into pool.threads() ranges of roughly equal cost
  // (key visits); fills attn_items_ and attn_split_.
  void PlanAttention();
  // A decode GEMV is about to read `w`: learns which weight followed the previous one, and has
  // idle threads prefetch their share of the weight that followed `w` last time (the next
  // GEMV of the same layer sequence).
  void NoteGemvWeight(const PackedWeight* w);

  // One attention work item: query tokens [t0, t1) of sequence `seq` (consecutive positions)
  // for every query head of kv head `kv_head`.
  struct AttnItem {
    int32_t seq, kv_head, t0, t1;
  };

  CpuBackendOptions options_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<HostBuffer>> owned_;  // vectors, uploads and packed-matrix slabs
  // Packed matrices by their data address (storage in owned_).
  std::map<const void*, PackedWeight> packed_;
  // Decode GEMVs: the weight read after each one (NoteGemvWeight), and the last one read.
  std::unordered_map<const PackedWeight*, const PackedWeight*> gemv_next_;
  const PackedWeight* last_gemv_ = nullptr;
  // The unused tail of the newest packed-matrix slab (AllocatePacked).
  std::byte* slab_next_ = nullptr;
  size_t slab_left_ = 0;

  KvCacheSpec spec_;
  std::unique_ptr<HostBuffer> kv_buffer_;
  std::byte* kv_cache_ = nullptr;

  // The current batch (copied in BeginBatch; capacity is reused across steps).
  ForwardBatch batch_;
  bool has_batch_ = false;
  std::vector<int32_t> token_seq_;      // [num_tokens] sequence index of each token
  std::vector<AttnItem> attn_items_;    // the current batch's attention tiles
  std::vector<int64_t> attn_cost_;      // [items] estimated cost of each tile
  std::vector<int64_t> attn_split_;     // [chunks + 1] item index boundaries
  // Rope cos/sin of the current batch, [num_tokens, head_dim / 2] each; valid for rope_key_.
  std::vector<float> rope_cos_;
  std::vector<float> rope_sin_;
  const void* rope_key_ = nullptr;
  // SampleTokens' sampler (scratch sized to the vocabulary), made at the first call and again
  // when the vocabulary or the EOS ids change.
  std::unique_ptr<Sampler> sampler_;
  std::vector<int32_t> sampler_eos_;
};

}  // namespace llmux::cpu
