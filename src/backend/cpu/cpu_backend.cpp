// CpuBackend: construction, memory, weights, the KV cache and batch validation.
#include "backend/cpu/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "backend/cpu/matmul_bf16.h"

namespace llmux {
namespace cpu {
namespace {

// Transparent huge pages (x86-64): HostBuffers aligned to this are marked MADV_HUGEPAGE.
constexpr size_t kHugePage = size_t{2} << 20;
// Packed matrices are carved from slabs of this size (a larger matrix gets a slab of its own).
constexpr size_t kSlabBytes = size_t{32} << 20;

}  // namespace

std::unique_ptr<HostBuffer> HostBuffer::Create(size_t bytes, bool zeroed, size_t alignment) {
  alignment = std::max<size_t>(alignment, 64);
  if (bytes > std::numeric_limits<size_t>::max() - alignment) return nullptr;
  // aligned_alloc wants a size that is a multiple of the alignment.
  size_t rounded = std::max(alignment, (bytes + alignment - 1) / alignment * alignment);
  void* p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr) return nullptr;
#ifdef MADV_HUGEPAGE
  // Before the first touch (the zeroing below), so that the pages are faulted in huge.
  if (alignment >= kHugePage) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
  if (zeroed) std::memset(p, 0, rounded);
  return std::unique_ptr<HostBuffer>(new HostBuffer(p, bytes));
}

HostBuffer::~HostBuffer() { std::free(data_); }

CpuBackend::CpuBackend(const CpuBackendOptions& options)
    : options_(options), pool_(options.threads) {}

std::optional<CpuBf16Activations> CpuBackend::CpuBf16ActivationsInUse() const {
  // MatMul takes the vdpbf16ps path only where Bf16DotAvailable() (matmul.cpp).
  return options_.bf16_activations == CpuBf16Activations::kBf16 && Bf16DotAvailable()
             ? CpuBf16Activations::kBf16
             : CpuBf16Activations::kF32;
}

StatusOr<std::unique_ptr<DeviceBuffer>> CpuBackend::Allocate(size_t bytes) {
  auto buf = HostBuffer::Create(bytes);
  if (buf == nullptr) return ResourceExhausted("cpu: cannot allocate " + std::to_string(bytes) + " bytes");
  return std::unique_ptr<DeviceBuffer>(std::move(buf));
}

StatusOr<Tensor> CpuBackend::LoadWeight(const HostTensor& src, WeightKind kind) {
  const std::string who = "cpu: weight '" + src.name + "'";
  if (src.dtype == DType::kI32) {
    return InvalidArgument(who + ": dtype i32 is not a float type");
  }
  if (src.dtype == DType::kQ8_0) {
    // Q8_0 is a matrix format only: whole 32-element blocks along each row.
    if (kind == WeightKind::kVector || src.shape.size() != 2 ||
        src.shape[1] % kQ8BlockElems != 0) {
      return InvalidArgument(who + ": a q8_0 weight must be a matrix whose row length is a "
                                   "multiple of 32");
    }
  }
  if (src.data == nullptr || src.numel() <= 0 ||
      src.nbytes != DTypeBytes(src.dtype, src.numel())) {
    return InvalidArgument(who + ": empty or size does not match its shape");
  }
  switch (kind) {
    case WeightKind::kMatrix:
    case WeightKind::kEmbedding:
      // NOTE: the embedding is packed like any matrix: a tied lm_head then reads the panel
      // stream the decode GEMV wants, and the Embedding op gathers its rows from the panels
      // (UnpackRowsF32: the same floats as the row-major rows). One copy, no alias.
      if (src.shape.size() != 2) return InvalidArgument(who + ": a matrix must be 2-D");
      return PackMatrix(src, who);
    case WeightKind::kVector: {
      if (src.shape.size() != 1) return InvalidArgument(who + ": a vector must be 1-D");
      const int64_t n = src.shape[0];
      auto buf = HostBuffer::Create(n * sizeof(float));
      if (buf == nullptr) return ResourceExhausted(who + ": out of memory");
      auto* dst = static_cast<float*>(buf->data());
      for (int64_t i = 0; i < n; ++i) {
        switch (src.dtype) {
          case DType::kF32: std::memcpy(&dst[i], src.data + 4 * i, 4); break;
          case DType::kF16:
          case DType::kBF16: {
            uint16_t h;
            std::memcpy(&h, src.data + 2 * i, 2);
            dst[i] = src.dtype == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
            break;
          }
          case DType::kI32:
          case DType::kQ8_0: break;  // rejected above
        }
      }
      owned_.push_back(std::move(buf));
      return Tensor::Dense(dst, DType::kF32, 1, n);
    }
  }
  return InvalidArgument(who + ": unknown weight kind");
}

namespace {

// NOTE: a packed matrix is never read from its source again. MADV_PAGEOUT (Linux 5.4+) is a
// non-destructive hint: a mapped file's clean pages leave this process's resident memory (and
// are read from the file again if anyone touches them), anonymous memory is at most swapped
// out. So a mapped model's matrices stay resident once, as the packed copy. Only pages wholly
// inside [data, data + bytes) are named: a page shared with a neighbouring tensor (not packed
// yet) is left alone. Failure (an older kernel) changes nothing.
void ReleaseSourcePages(const std::byte* data, size_t bytes) {
#ifdef MADV_PAGEOUT
  const long page_size = sysconf(_SC_PAGESIZE);
  if (page_size <= 0) return;
  const auto page = static_cast<uintptr_t>(page_size);
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) {
    (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace

std::byte* CpuBackend::AllocatePacked(size_t bytes) {
  // NOTE: decode streams every matrix once per token, and with 4 KiB pages that is a TLB miss
  // (a page walk) per 4 KiB read: 65K walks per SmolLM-135M F16 token. Slabs aligned to 2 MiB
  // and marked MADV_HUGEPAGE get transparent huge pages (where THP is "always" or "madvise"):
  // one walk per 2 MiB, and each decode GEMV ran 9-16% faster, measured step by step in one
  // process (docs/performance.md). Slab tails are left unwritten, so only their address
  // space is spent; where THP is off the hint is ignored and nothing else changes.
  bytes = (bytes + 63) / 64 * 64;
  if (bytes > slab_left_) {
    const size_t slab = std::max(kSlabBytes, (bytes + kHugePage - 1) / kHugePage * kHugePage);
    auto buf = HostBuffer::Create(slab, /*zeroed=*/false, kHugePage);
    if (buf == nullptr) return nullptr;
    slab_next_ = static_cast<std::byte*>(buf->data());
    slab_left_ = slab;
    owned_.push_back(std::move(buf));
  }
  std::byte* p = slab_next_;
  slab_next_ += bytes;
  slab_left_ -= bytes;
  return p;
}

StatusOr<Tensor> CpuBackend::PackMatrix(const HostTensor& src, const std::string& who) {
  // NOTE: the packed copy replaces the source for MatMul: a mapped file's pages of this matrix
  // are not read again, and a caller's own copy (fused or quantized weights) can be freed.
  const PackedLayout layout{src.dtype, src.shape[0], src.shape[1]};
  // PackRows writes every byte, padding included.
  std::byte* dst = AllocatePacked(layout.bytes());
  if (dst == nullptr) return ResourceExhausted(who + ": out of memory packing the matrix");
  const int64_t panels = (layout.n + kPanelRows - 1) / kPanelRows;
  pool_.ParallelFor(panels, [&](int64_t p0, int64_t p1) {
    PackRows(layout, src.data, layout.k, p0 * kPanelRows, std::min(layout.n, p1 * kPanelRows),
             dst);
  });
  packed_.emplace(dst, PackedWeight{layout, dst});
  ReleaseSourcePages(src.data, src.nbytes);
  return Tensor::Dense(dst, src.dtype, layout.n, layout.k);
}

const PackedWeight* CpuBackend::PackedFor(const Tensor& w) const {
  auto it = packed_.upper_bound(w.data);
  if (it == packed_.begin()) return nullptr;
  --it;
  const PackedWeight& p = it->second;
  const auto* d = static_cast<const std::byte*>(w.data);
  if (d >= p.data + p.layout.bytes()) return nullptr;
  LLMUX_CHECK(d == p.data && w.rows == p.layout.n && w.cols == p.layout.k &&
              w.dtype == p.layout.dtype)
      << "MatMul: a view into part of a packed weight [" << p.layout.n << ", " << p.layout.k
      << "]; packed weights are used whole";
  return &p;
}

StatusOr<Tensor> CpuBackend::UploadF32(std::span<const float> values, int64_t rows,
                                       int64_t cols) {
  if (rows < 0 || cols < 0 || static_cast<int64_t>(values.size()) != rows * cols) {
    return InvalidArgument("cpu: UploadF32 got " + std::to_string(values.size()) +
                           " values for a [" + std::to_string(rows) + ", " +
                           std::to_string(cols) + "] tensor");
  }
  auto buf = HostBuffer::Create(values.size() * sizeof(float));
  if (buf == nullptr) return ResourceExhausted("cpu: UploadF32 out of memory");
  if (!values.empty()) std::memcpy(buf->data(), values.data(), values.size() * sizeof(float));
  Tensor t = Tensor::Dense(buf->data(), DType::kF32, rows, cols);
  owned_.push_back(std::move(buf));
  return t;
}

int64_t CpuBackend::LayerElems() const {
  return static_cast<int64_t>(spec_.num_blocks) * spec_.block_size * spec_.num_kv_heads *
         spec_.head_dim;
}

Status CpuBackend::InitKvCache(const KvCacheSpec& spec) {
  if (kv_cache_ != nullptr) return FailedPrecondition("cpu: the KV cache is already allocated");
  if (spec.num_layers <= 0 || spec.num_blocks <= 0 || spec.block_size <= 0 ||
      spec.num_heads <= 0 || spec.num_kv_heads <= 0 || spec.head_dim <= 0 ||
      spec.num_heads % spec.num_kv_heads != 0 || spec.head_dim % 2 != 0) {
    return InvalidArgument(
        "cpu: KV spec needs positive sizes, num_heads a multiple of num_kv_heads and an even "
        "head_dim");
  }
  if (spec.head_dim > 512) return InvalidArgument("cpu: head_dim above 512 is not supported");
  if (spec.dtype != DType::kF32 && spec.dtype != DType::kF16) {
    return Unimplemented("cpu: KV cache dtype " + std::string(DTypeName(spec.dtype)) +
                         " (the CPU backend keeps K/V in f32 or f16)");
  }
  const double bytes = 2.0 * spec.num_layers * spec.num_blocks * static_cast<double>(spec.BlockBytes());
  if (bytes > static_cast<double>(std::numeric_limits<int64_t>::max() / 2)) {
    return ResourceExhausted("cpu: KV cache size overflows");
  }
  // NOTE: huge pages for the cache as for the weights (AllocatePacked): a decode step reads
  // each layer's K/V after the weights streamed since have evicted them and their page-table
  // entries, so with 4 KiB pages every 4 KiB of K or V cost a page walk.
  const size_t kv_align = bytes >= static_cast<double>(kHugePage) ? kHugePage : 64;
  auto buf = HostBuffer::Create(static_cast<size_t>(bytes), /*zeroed=*/true, kv_align);
  if (buf == nullptr) {
    return ResourceExhausted("cpu: cannot allocate a " + std::to_string(bytes / (1 << 20)) +
                             " MiB KV cache");
  }
  spec_ = spec;
  kv_buffer_ = std::move(buf);
  kv_cache_ = static_cast<std::byte*>(kv_buffer_->data());
  return Status::Ok();
}

Status CpuBackend::BeginBatch(const ForwardBatch& b) {
  has_batch_ = false;
  // A step starts: workers resting since the last one wake while the batch is checked and
  // planned, so the first op does not wait for a futex wake-up.
  pool_.Wake();
  if (kv_cache_ == nullptr) return FailedPrecondition("cpu: BeginBatch before InitKvCache");
  const int64_t T = b.num_tokens();
  const int64_t S = b.num_seqs();
  const int64_t bs = spec_.block_size;
  const int64_t nslots = static_cast<int64_t>(spec_.num_blocks) * bs;
  auto bad = [](const std::string& m) { return InvalidArgument("cpu: batch: " + m); };
  if (static_cast<int64_t>(b.positions.size()) != T ||
      static_cast<int64_t>(b.slot_mapping.size()) != T) {
    return bad("token_ids, positions and slot_mapping differ in length");
  }
  if (static_cast<int64_t>(b.query_start_loc.size()) != S + 1 || b.query_start_loc[0] != 0 ||
      b.query_start_loc[S] != T) {
    return bad("query_start_loc must have num_seqs + 1 entries from 0 to num_tokens");
  }
  if (b.max_blocks_per_seq < 0 ||
      static_cast<int64_t>(b.block_tables.size()) != S * b.max_blocks_per_seq) {
    return bad("block_tables is not [num_seqs, max_blocks_per_seq]");
  }
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q0 = b.query_start_loc[s], q1 = b.query_start_loc[s + 1];
    const int64_t len = b.seq_lens[s];
    const std::string seq = "sequence " + std::to_string(s);
    if (q1 <= q0 || len < q1 - q0) return bad(seq + ": needs 1..seq_len new tokens");
    if (len > static_cast<int64_t>(b.max_blocks_per_seq) * bs) {
      return bad(seq + ": seq_len exceeds its block table");
    }
    const int32_t* table = b.block_tables.data() + s * b.max_blocks_per_seq;
    for (int64_t i = 0; i < (len + bs - 1) / bs; ++i) {
      if (table[i] < 0 || table[i] >= spec_.num_blocks) {
        return bad(seq + ": block id " + std::to_string(table[i]) + " outside the pool");
      }
    }
    for (int64_t t = q0; t < q1; ++t) {
      const int64_t pos = b.positions[t];
      // The new tokens occupy positions [seq_len - num_new, seq_len) (forward_batch.h).
      if (pos != len - (q1 - t)) return bad(seq + ": positions must be the last new tokens");
      // NOTE: each token's KV slot must be the one its own block table names; this keeps a
      // sequence from writing into a block it does not own.
      if (b.slot_mapping[t] != static_cast<int64_t>(table[pos / bs]) * bs + pos % bs ||
          b.slot_mapping[t] >= nslots) {
        return bad(seq + ": slot_mapping disagrees with the block table at token " +
                   std::to_string(t));
      }
      if (b.token_ids[t] < 0) return bad("negative token id");
    }
  }
  for (int32_t i : b.logits_indices) {
    if (i < 0 || i >= T) return bad("logits index " + std::to_string(i) + " out of range");
  }
  batch_.token_ids.assign(b.token_ids.begin(), b.token_ids.end());
  batch_.positions.assign(b.positions.begin(), b.positions.end());
  batch_.slot_mapping.assign(b.slot_mapping.begin(), b.slot_mapping.end());
  batch_.query_start_loc.assign(b.query_start_loc.begin(), b.query_start_loc.end());
  batch_.seq_lens.assign(b.seq_lens.begin(), b.seq_lens.end());
  batch_.block_tables.assign(b.block_tables.begin(), b.block_tables.end());
  batch_.max_blocks_per_seq = b.max_blocks_per_seq;
  batch_.logits_indices.assign(b.logits_indices.begin(), b.logits_indices.end());
  token_seq_.resize(T);
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t t = b.query_start_loc[s]; t < b.query_start_loc[s + 1]; ++t) token_seq_[t] = s;
  }
  rope_key_ = nullptr;
  PlanAttention();
  has_batch_ = true;
  return Status::Ok();
}

Status CpuBackend::CopyToHostF32(const Tensor& src, float* dst) {
  if (src.dtype != DType::kF32) return InvalidArgument("cpu: CopyToHostF32 needs an f32 tensor");
  for (int64_t r = 0; r < src.rows; ++r) {
    std::memcpy(dst + r * src.cols, static_cast<const float*>(src.data) + r * src.stride,
                src.cols * sizeof(float));
  }
  // The step's sync point ends its ops: workers sleep until the next step instead of spinning
  // through sampling, scheduling and the I/O threads' work.
  pool_.Rest();
  return Status::Ok();
}

Status CpuBackend::ZeroKvBlocks(std::span<const int32_t> blocks) {
  if (kv_cache_ == nullptr) return FailedPrecondition("cpu: no KV cache");
  for (int32_t b : blocks) {
    if (b < 0 || b >= spec_.num_blocks) {
      return InvalidArgument("cpu: ZeroKvBlocks: block " + std::to_string(b) + " outside the pool");
    }
  }
  const size_t bytes = spec_.BlockBytes();
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    for (int32_t b : blocks) {
      std::memset(KCache(layer) + b * bytes, 0, bytes);
      std::memset(VCache(layer) + b * bytes, 0, bytes);
    }
  }
  return Status::Ok();
}

Status CpuBackend::ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                               std::vector<std::byte>* v) {
  if (kv_cache_ == nullptr) return FailedPrecondition("cpu: no KV cache");
  if (layer < 0 || layer >= spec_.num_layers || block < 0 || block >= spec_.num_blocks) {
    return InvalidArgument("cpu: ReadKvBlock: layer or block out of range");
  }
  const size_t bytes = spec_.BlockBytes();
  const size_t esize = DTypeSize(spec_.dtype);
  const std::byte* kp = KCache(layer) + block * bytes;
  const std::byte* vp = VCache(layer) + block * bytes;
  // K is stored [num_kv_heads * head_dim, block_size] in the block; return it token-major.
  const int64_t bs = spec_.block_size;
  const int64_t row = static_cast<int64_t>(spec_.num_kv_heads) * spec_.head_dim;
  k->resize(bytes);
  for (int64_t e = 0; e < row; ++e) {
    for (int64_t o = 0; o < bs; ++o) {
      std::memcpy(k->data() + (o * row + e) * esize, kp + (e * bs + o) * esize, esize);
    }
  }
  v->assign(vp, vp + bytes);
  return Status::Ok();
}

}  // namespace cpu

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options) {
  if (options.threads < 0) return InvalidArgument("cpu: threads must be >= 0");
  return std::unique_ptr<Backend>(std::make_unique<cpu::CpuBackend>(options));
}

}  // namespace llmux
