// The op-level interface the Llama-family forward pass is written against (once). Each
// backend (CPU: src/backend/cpu, the reference; CUDA: src/backend/cuda + kernels/) implements
// every op with the same semantics. Ops are issued in order from the engine thread only;
// a backend may run them asynchronously (CUDA: on its stream) until CopyToHost/Synchronize.
//
// Batch invariance: every op computes a row (token) or a sequence from that row's/sequence's
// inputs alone, with a reduction order that does not depend on how many rows the batch has.
// A sequence's logits are therefore bit-identical at batch 1, 8 and 64.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/dtype.h"
#include "llmux/forward_batch.h"
#include "llmux/host_tensor.h"
#include "llmux/sampling.h"
#include "llmux/status.h"

namespace llmux {

// A non-owning 2-D row-major view of backend memory: [rows, cols], `stride` elements between
// rows (== cols when dense). A vector is rows == 1.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  static Tensor Dense(void* data, DType dtype, int64_t rows, int64_t cols) {
    return Tensor{data, dtype, rows, cols, cols};
  }
  // Rows [first, first + n) of this view.
  Tensor RowSlice(int64_t first, int64_t n) const {
    auto* p = static_cast<std::byte*>(data) + DTypeBytes(dtype, first * stride);
    return Tensor{p, dtype, n, cols, stride};
  }
  // Columns [first, first + n) of every row (a view with this tensor's stride). Element types
  // only (activations): a block-encoded weight row cannot be split by columns.
  Tensor ColSlice(int64_t first, int64_t n) const {
    auto* p = static_cast<std::byte*>(data) + first * static_cast<int64_t>(DTypeSize(dtype));
    return Tensor{p, dtype, rows, n, stride};
  }
};

// Activations of MatMuls on BF16 weights (CPU backend, docs/cpu_backend.md).
//   kBf16: rounded to bf16 (round to nearest even) once per MatMul and multiplied with AVX-512
//          BF16 vdpbf16ps, pairs of products accumulated in F32: what llama.cpp and GPUs do,
//          about twice the F32 path's multiply rate. Outputs differ from kF32 in the low bits.
//   kF32:  exact F32 activations, bf16 weights widened to F32 (the path of F32/F16 weights).
// Both are batch invariant. kBf16 needs a CPU with AVX-512 BF16; elsewhere it runs as kF32.
enum class CpuBf16Activations { kBf16, kF32 };

// How one weight shape's GEMMs run on a backend that chooses a kernel per shape (CUDA), for
// operators (GET /admin/pools `gemm.shapes`). See src/backend/cuda/gemm_choice.h.
struct GemmChoice {
  int64_t n = 0;  // output columns (weight rows)
  int64_t k = 0;  // reduction length
  bool out_f32 = false;
  // "cublaslt": one pinned algorithm for every M (batch invariant); "fallback": the
  // fixed-order kernel for every M (batch invariant); "per_m": chosen per M (fast mode).
  std::string kernel;
  int tile_n = 0, tile_m = 0;  // the pinned algorithm's output tile (cublaslt)
  int64_t ctas_at_m1 = 0;      // CTAs one M = 1 GEMM launches (0 when chosen per M)
  int candidates_tried = 0;    // algorithms that failed the bit-identity check before this one
  int m_plans = 0;             // GEMM layouts (M, strides) planned for this shape so far
  // Layouts the pinned algorithm rejected (cublasLtMatmulAlgoCheck): they run the fallback
  // kernel, which breaks batch invariance for them. 0 is expected (docs/isolation.md).
  int rejected_layouts = 0;
};

// Backend-owned memory. Freed when destroyed.
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual void* data() = 0;
  virtual size_t bytes() const = 0;
};

// How a weight is used, which decides the dtype a backend keeps it in.
enum class WeightKind {
  kMatrix,     // [out, in] projection used by MatMul; may stay F16/BF16 (converted on the fly)
  kEmbedding,  // [vocab, dim] table used by Embedding (and by MatMul when tied)
  kVector,     // norm weights and biases; kept in F32
};

// Shape of the attention layers and the paged KV cache a backend allocates.
struct KvCacheSpec {
  int num_layers = 0;
  int num_blocks = 0;
  int block_size = 16;  // tokens per block
  int num_heads = 0;    // query heads
  int num_kv_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF32;
  // Per layer, K and V are each [num_blocks, block_size, num_kv_heads, head_dim].
  size_t BlockBytes() const {  // one block of K (or V) in one layer
    return static_cast<size_t>(block_size) * num_kv_heads * head_dim * DTypeSize(dtype);
  }
};

// One logits row to sample and what the sampler needs to know about its sequence.
// Non-owning; valid for the duration of Backend::SampleTokens.
struct SampleRow {
  const SamplingParams* params = nullptr;  // passed Validate() for the vocabulary
  std::span<const int32_t> prompt_token_ids;
  std::span<const int32_t> output_token_ids;  // generated so far (this step's not included)
  // The effective seed (SamplingParams::seed, or the engine's draw at submit). The draw for
  // output index i = output_token_ids.size() is UniformAt(seed, i) (src/sampling/rng.h), so a
  // token depends only on (seed, i, logits), never on the batch (docs/isolation.md).
  uint64_t seed = 0;
  // Empty, or the grammar's packed allowed-token bitmask: [ceil(vocab / 32)] words, bit id % 32
  // of word id / 32 set when `id` may be sampled (GrammarMatcher::FillNextTokenBitmask).
  std::span<const uint32_t> allowed;
};

// One step's sampling: a row per logits row, in order.
struct SampleBatch {
  std::span<const int32_t> eos_token_ids;  // the model's; suppressed by min_tokens
  std::span<const SampleRow> rows;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view Name() const = 0;
  // The dtype of activations (hidden states, q/k/v) this backend's ops take and produce.
  // Logits are always F32.
  virtual DType ActivationDType() const = 0;

  // ---- Memory (any thread before serving starts; the engine thread afterwards) ----
  // Returns ResourceExhausted when the device cannot hold `bytes`.
  virtual StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) = 0;
  // Makes a weight usable by the ops. The backend owns any copy it makes; `src` (memory-mapped)
  // must outlive the backend when the backend aliases it (AliasesHostWeights).
  virtual StatusOr<Tensor> LoadWeight(const HostTensor& src, WeightKind kind) = 0;
  // True when LoadWeight may keep pointers into `src` (neither the CPU backend, which packs
  // every matrix and the embedding into its own memory, nor CUDA does). A caller that builds
  // a weight in its own host memory (the model's fused q/k/v and gate/up weights) keeps that
  // memory alive for the backend's use exactly when this is true, and may free it right after
  // LoadWeight otherwise.
  virtual bool AliasesHostWeights() const = 0;
  // True when each op has completed when it returns (the CPU backend), so a model may stop a
  // step between layers (ForwardBatch::stop) and the time not spent is saved. False when ops
  // are queued on a device stream and may replay as one captured graph (CUDA): a step then
  // always runs to its end.
  virtual bool StopsBetweenLayers() const { return false; }
  // Copies host F32 values into a new backend-owned F32 tensor [rows, cols].
  virtual StatusOr<Tensor> UploadF32(std::span<const float> values, int64_t rows, int64_t cols) = 0;

  // Allocates the paged KV cache (once). Blocks start zeroed.
  virtual Status InitKvCache(const KvCacheSpec& spec) = 0;
  virtual const KvCacheSpec& kv_spec() const = 0;

  // ---- One forward step, engine thread only ----
  // Makes `batch`'s metadata (token ids, positions, slot mapping, block tables, seq lens,
  // logits indices) current for the ops below. Returns InvalidArgument on inconsistent input.
  virtual Status BeginBatch(const ForwardBatch& batch) = 0;

  // out[t, :] = table[token_ids[t], :] for every token of the current batch.
  virtual void Embedding(const Tensor& table, Tensor out) = 0;
  // out[r] = x[r] / rms(x[r]) * weight.
  virtual void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) = 0;
  // residual[r] += x[r]; out[r] = RmsNorm(residual[r]).
  virtual void AddRmsNorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps,
                          Tensor out) = 0;
  // out[m, n] = sum_k x[m, k] * w[n, k] (+ bias[n]). x: activations [M, K]; w: [N, K] weight;
  // out: [M, N] in the activation dtype, or F32 when out.dtype says so (logits).
  virtual void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) = 0;
  // Rotary embedding in HF's rotate-half layout, in place, at the current batch's positions.
  // q: [T, num_heads * head_dim], k: [T, num_kv_heads * head_dim], inv_freq: [1, head_dim / 2].
  virtual void Rope(Tensor q, Tensor k, const Tensor& inv_freq) = 0;
  // Writes k, v ([T, num_kv_heads * head_dim]) into layer `layer` at the slot mapping.
  virtual void WriteKv(int layer, const Tensor& k, const Tensor& v) = 0;
  // Causal paged attention of the current batch's queries q ([T, num_heads * head_dim]) over
  // each sequence's cached K/V (through its block table) including this step's tokens; GQA.
  // out: [T, num_heads * head_dim].
  virtual void Attention(int layer, const Tensor& q, float scale, Tensor out) = 0;
  // out = silu(gate) * up, elementwise; all [T, ffn].
  virtual void SiluMul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // out[i] = x[logits_indices[i]] for the current batch.
  virtual void GatherLogitsRows(const Tensor& x, Tensor out) = 0;
  // Copies an F32 tensor to host memory (rows * cols floats) and waits for it. This is the
  // step's sync point: a device failure in any op of the step is returned here as Unavailable
  // (the ops themselves return nothing and never abort on a device error).
  virtual Status CopyToHostF32(const Tensor& src, float* dst) = 0;

  // Samples one token per row of `logits` ([batch.rows.size(), vocab] F32 in backend memory:
  // the tensor Model::ForwardLogits returned) and fills `out` (resized to one entry per row)
  // with the token and, where the row's params ask for them, its logprob and top logprobs.
  // The backend may overwrite `logits` with the processed logits. Semantics are
  // src/sampling/sampler.h's (logit_bias, min_tokens, penalties, mask, temperature, top-k,
  // top-p, min-p, the seeded draw, logprobs of the processed logits): the CPU backend runs
  // that sampler and is bit-identical to it; the CUDA backend's guarantee is stated in
  // docs/isolation.md. Like CopyToHostF32 this is the step's sync point: Unavailable when a
  // device error occurred in the step; InvalidArgument on a malformed call (rows != logits
  // rows, a token id outside the vocabulary, a mask of the wrong length). Zero rows: OK, no
  // sync.
  virtual Status SampleTokens(Tensor logits, const SampleBatch& batch,
                              std::vector<SampledToken>* out) = 0;

  // OK while the backend can run steps; Unavailable naming the fault once a device error left
  // it unusable for the rest of the process (CUDA: a sticky error such as an illegal address).
  // Every later step fails then; the engine reports it (EngineStats::device_fault). Engine
  // thread.
  virtual Status DeviceHealth() const = 0;

  // The kernel each weight shape's GEMMs run, in (n, k, out_f32) order; empty for a backend
  // that has one GEMM path (CPU). Engine thread.
  virtual std::vector<GemmChoice> GemmChoices() const { return {}; }
  // What MatMuls on BF16 weights round their activations to, as this backend runs them: the
  // CPU backend's CpuBackendOptions::bf16_activations, except that kBf16 runs as kF32 where the
  // CPU (or the build) lacks AVX-512 BF16. nullopt for a backend without that choice (CUDA).
  // Any thread; fixed for the backend's life.
  virtual std::optional<CpuBf16Activations> CpuBf16ActivationsInUse() const {
    return std::nullopt;
  }

  // ---- KV block hygiene and test hooks (engine thread) ----
  // Overwrites the given blocks with zeros in every layer (zero_kv_on_free).
  virtual Status ZeroKvBlocks(std::span<const int32_t> blocks) = 0;
  // Raw bytes of one block of K and V of one layer (tests: isolation, zeroing).
  virtual Status ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                             std::vector<std::byte>* v) = 0;
};

struct CpuBackendOptions {
  int threads = 0;  // 0: hardware concurrency
  // Batch-dependent fast path: large GEMMs through OpenBLAS. Faster prefill, but a row's
  // result then depends on the batch's shape (not batch-invariant). Off by default.
  bool use_blas = false;
  // Query tokens per attention tile (prefill): 0 = automatic. Tests set it to show that the
  // tiling never changes a result; any value gives the same bits.
  int attention_tile_tokens = 0;
  CpuBf16Activations bf16_activations = CpuBf16Activations::kBf16;
};
StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options);

struct CudaBackendOptions {
  int device = 0;
  bool batch_invariant = true;
  bool cuda_graphs = true;
  // Tests: every GEMM runs the fixed-order fallback kernel (kernels/gemm_fallback.cu), the
  // path a weight shape takes when no cuBLASLt algorithm passes the invariance check.
  bool force_gemm_fallback = false;
};
// Unavailable with a one-line reason when built without CUDA or when no device is present.
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

}  // namespace llmux
