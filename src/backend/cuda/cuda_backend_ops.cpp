// CudaBackend's per-op launches. Each op checks its tensors (shapes and dtypes are the forward
// pass's invariants: a mismatch is a bug and aborts), then enqueues its kernel through
// StepGraphs with a signature of every host-side argument (see step_graphs.h).
#include <algorithm>
#include <bit>
#include <cstring>

#include "add_rms_norm.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "bias_add.cuh"
#include "elementwise_plan.h"
#include "embedding.cuh"
#include "gather_rows.cuh"
#include "kv_write.cuh"
#include "paged_attention.cuh"
#include "rms_norm.cuh"
#include "rope.cuh"
#include "silu_mul.cuh"

namespace llmux::cuda {
namespace {

enum OpId : uint64_t {
  kOpEmbedding = 1,
  kOpRmsNorm,
  kOpAddRmsNorm,
  kOpMatMul,
  kOpBias,
  kOpRope,
  kOpWriteKv,
  kOpAttention,
  kOpSiluMul,
  kOpGather,
};

uint64_t P(const void* p) { return reinterpret_cast<uint64_t>(p); }
uint64_t U(int64_t v) { return static_cast<uint64_t>(v); }
uint64_t F(float f) { return std::bit_cast<uint32_t>(f); }

void CheckTensor(const Tensor& t, DType dtype, int64_t rows, int64_t cols, const char* op,
                 const char* name) {
  LLMUX_CHECK(t.data != nullptr) << op << ": " << name << " has no data";
  LLMUX_CHECK(t.dtype == dtype) << op << ": " << name << " is " << DTypeName(t.dtype)
                                << ", expected " << DTypeName(dtype);
  LLMUX_CHECK(t.rows == rows && t.cols == cols)
      << op << ": " << name << " is [" << t.rows << ", " << t.cols << "], expected [" << rows
      << ", " << cols << "]";
  LLMUX_CHECK(t.stride >= t.cols) << op << ": " << name << " stride < cols";
}

// The shapes both norms take: x, out [rows, cols] bf16, weight [1, cols] f32, and a row the
// norm kernel can hold.
void CheckNorm(const Tensor& x, const Tensor& weight, const Tensor& out, const char* op) {
  CheckTensor(x, DType::kBF16, x.rows, x.cols, op, "x");
  CheckTensor(weight, DType::kF32, 1, x.cols, op, "weight");
  CheckTensor(out, DType::kBF16, x.rows, x.cols, op, "out");
  LLMUX_CHECK(kernels::NormColsSupported(static_cast<int>(x.cols)))
      << op << ": " << x.cols << " columns is wider than the norm kernel takes";
}

}  // namespace

void CudaBackend::OpResult(const char* op, cudaError_t err) {
  if (!inject_op_.empty() && inject_op_ == op) {
    err = inject_error_;
    inject_op_.clear();
  }
  if (err == cudaSuccess) return;
  faults_.Record(ClassifyCudaError(err), std::string(op) + ": " + cudaGetErrorString(err));
}

void CudaBackend::InjectFaultForTesting(std::string op, cudaError_t cuda_error) {
  inject_op_ = std::move(op);
  inject_error_ = cuda_error;
}

void CudaBackend::CheckBatch(const char* op) const {
  LLMUX_CHECK(have_batch_) << op << " outside a batch (BeginBatch failed or was not called)";
}

void CudaBackend::Embedding(const Tensor& table, Tensor out) {
  CheckBatch("Embedding");
  const int t_count = meta_.num_tokens();
  CheckTensor(out, DType::kBF16, t_count, table.cols, "Embedding", "out");
  CheckTensor(table, DType::kBF16, table.rows, table.cols, "Embedding", "table");
  for (int32_t id : meta_.token_ids()) {
    LLMUX_CHECK(id < table.rows) << "Embedding: token id " << id << " >= vocab " << table.rows;
  }
  const int32_t* ids = meta_.d_token_ids();
  graphs_.Enqueue({kOpEmbedding, P(table.data), U(table.stride), P(ids), P(out.data),
                   U(out.stride), U(t_count), U(table.cols)},
                  [=, this](cudaStream_t s) {
                    OpResult("Embedding", kernels::LaunchEmbedding(table.data, table.stride, ids,
                                                              out.data, out.stride, t_count,
                                                              static_cast<int>(table.cols), s));
                  });
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  CheckNorm(x, weight, out, "RmsNorm");
  graphs_.Enqueue({kOpRmsNorm, P(x.data), U(x.stride), P(weight.data), F(eps), P(out.data),
                   U(out.stride), U(x.rows), U(x.cols)},
                  [=, this](cudaStream_t s) {
                    OpResult("RmsNorm", kernels::LaunchRmsNorm(
                        x.data, x.stride, static_cast<const float*>(weight.data), eps, out.data,
                        out.stride, static_cast<int>(x.rows), static_cast<int>(x.cols), s));
                  });
}

void CudaBackend::AddRmsNorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps,
                             Tensor out) {
  CheckTensor(residual, DType::kBF16, x.rows, x.cols, "AddRmsNorm", "residual");
  CheckNorm(x, weight, out, "AddRmsNorm");
  graphs_.Enqueue({kOpAddRmsNorm, P(residual.data), U(residual.stride), P(x.data), U(x.stride),
                   P(weight.data), F(eps), P(out.data), U(out.stride), U(x.rows), U(x.cols)},
                  [=, this](cudaStream_t s) {
                    OpResult("AddRmsNorm", kernels::LaunchAddRmsNorm(
                        residual.data, residual.stride, x.data, x.stride,
                        static_cast<const float*>(weight.data), eps, out.data, out.stride,
                        static_cast<int>(x.rows), static_cast<int>(x.cols), s));
                  });
}

void CudaBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) {
  CheckTensor(x, DType::kBF16, x.rows, x.cols, "MatMul", "x");
  CheckTensor(w, DType::kBF16, w.rows, x.cols, "MatMul", "w");
  LLMUX_CHECK(out.dtype == DType::kBF16 || out.dtype == DType::kF32)
      << "MatMul: out must be BF16 or F32";
  CheckTensor(out, out.dtype, x.rows, w.rows, "MatMul", "out");
  if (bias != nullptr) CheckTensor(*bias, DType::kF32, 1, w.rows, "MatMul", "bias");
  if (x.rows == 0) return;
  GemmShape shape;
  shape.m = static_cast<int>(x.rows);
  shape.n = static_cast<int>(w.rows);
  shape.k = static_cast<int>(x.cols);
  shape.x_stride = x.stride;
  shape.w_stride = w.stride;
  shape.out_stride = out.stride;
  shape.out_f32 = out.dtype == DType::kF32;
  // NOTE: planned here, outside any capture: a new weight shape may be verified on the device.
  const GemmPlan* plan = gemm_->Prepare(shape, w.data);
  GemmRunner* gemm = gemm_.get();
  graphs_.Enqueue({kOpMatMul, P(plan), P(x.data), P(w.data), P(out.data)},
                  [=, this](cudaStream_t) {
                    const Status st = gemm->Run(*plan, x.data, w.data, out.data);
                    if (!st.ok()) faults_.Record(FaultKind::kStep, "MatMul: " + st.message());
                    OpResult("MatMul", cudaSuccess);  // an injected fault
                  });
  if (bias != nullptr) {
    const void* b = bias->data;
    graphs_.Enqueue({kOpBias, P(out.data), U(out.stride), P(b), U(out.rows), U(out.cols),
                     U(shape.out_f32)},
                    [=, this](cudaStream_t s) {
                      OpResult("Bias", kernels::LaunchBiasAdd(
                          out.data, out.stride, shape.out_f32, static_cast<const float*>(b),
                          static_cast<int>(out.rows), static_cast<int>(out.cols), s));
                    });
  }
}

void CudaBackend::Rope(Tensor q, Tensor k, const Tensor& inv_freq) {
  CheckBatch("Rope");
  const int t_count = meta_.num_tokens();
  const int hd = static_cast<int>(inv_freq.cols * 2);
  CheckTensor(inv_freq, DType::kF32, 1, inv_freq.cols, "Rope", "inv_freq");
  LLMUX_CHECK(hd > 0 && q.cols % hd == 0 && k.cols % hd == 0) << "Rope: head_dim mismatch";
  LLMUX_CHECK(hd <= kernels::kRopeMaxHeadDim) << "Rope: head_dim " << hd << " > 256";
  CheckTensor(q, DType::kBF16, t_count, q.cols, "Rope", "q");
  CheckTensor(k, DType::kBF16, t_count, k.cols, "Rope", "k");
  const int heads = static_cast<int>(q.cols / hd);
  const int kv_heads = static_cast<int>(k.cols / hd);
  const int32_t* pos = meta_.d_positions();
  graphs_.Enqueue({kOpRope, P(q.data), U(q.stride), P(k.data), U(k.stride), P(pos),
                   P(inv_freq.data), U(t_count), U(heads), U(kv_heads), U(hd)},
                  [=, this](cudaStream_t s) {
                    OpResult("Rope", kernels::LaunchRope(
                        q.data, q.stride, k.data, k.stride, pos,
                        static_cast<const float*>(inv_freq.data), t_count, heads, kv_heads, hd,
                        s));
                  });
}

void CudaBackend::WriteKv(int layer, const Tensor& k, const Tensor& v) {
  CheckBatch("WriteKv");
  LLMUX_CHECK(layer >= 0 && layer < spec_.num_layers) << "WriteKv: layer " << layer;
  const int t_count = meta_.num_tokens();
  const int64_t row = static_cast<int64_t>(spec_.num_kv_heads) * spec_.head_dim;
  CheckTensor(k, DType::kBF16, t_count, row, "WriteKv", "k");
  CheckTensor(v, DType::kBF16, t_count, row, "WriteKv", "v");
  const int64_t* slots = meta_.d_slot_mapping();
  void* kc = KCache(layer);
  void* vc = VCache(layer);
  const int kvh = spec_.num_kv_heads;
  const int hd = spec_.head_dim;
  graphs_.Enqueue({kOpWriteKv, P(k.data), U(k.stride), P(v.data), U(v.stride), P(slots), P(kc),
                   P(vc), U(t_count)},
                  [=, this](cudaStream_t s) {
                    OpResult("WriteKv", kernels::LaunchKvWrite(k.data, k.stride, v.data, v.stride,
                                                            slots, kc, vc, t_count, kvh, hd, s));
                  });
}

void CudaBackend::Attention(int layer, const Tensor& q, float scale, Tensor out) {
  CheckBatch("Attention");
  LLMUX_CHECK(layer >= 0 && layer < spec_.num_layers) << "Attention: layer " << layer;
  const int t_count = meta_.num_tokens();
  const int64_t width = static_cast<int64_t>(spec_.num_heads) * spec_.head_dim;
  CheckTensor(q, DType::kBF16, t_count, width, "Attention", "q");
  CheckTensor(out, DType::kBF16, t_count, width, "Attention", "out");
  for (int c = 0, t0 = 0; t0 < t_count; ++c, t0 += kAttnChunkTokens) {
    kernels::PagedAttentionArgs a;
    a.num_tokens = std::min(kAttnChunkTokens, t_count - t0);
    a.q = static_cast<const char*>(q.data) + t0 * q.stride * 2;
    a.q_stride = q.stride;
    a.out = static_cast<char*>(out.data) + t0 * out.stride * 2;
    a.out_stride = out.stride;
    a.k_cache = KCache(layer);
    a.v_cache = VCache(layer);
    a.token_seq = meta_.d_token_seq() + t0;
    a.positions = meta_.d_positions() + t0;
    a.block_tables = meta_.d_block_tables();
    a.tiles = meta_.d_attn_tiles() + 2 * meta_.chunk_first_tile(c);
    a.num_tiles = meta_.chunk_num_tiles(c);
    a.block_table_stride = meta_.block_table_stride();
    a.num_heads = spec_.num_heads;
    a.num_kv_heads = spec_.num_kv_heads;
    a.head_dim = spec_.head_dim;
    a.block_size = spec_.block_size;
    a.scale = scale;
    a.max_splits = meta_.chunk_max_splits(c);
    a.workspace = attn_workspace_->as<float>();
    graphs_.Enqueue({kOpAttention, P(a.q), U(a.q_stride), P(a.out), U(a.out_stride),
                     P(a.k_cache), P(a.token_seq), P(a.block_tables), U(a.block_table_stride),
                     P(a.tiles), U(a.num_tiles),
                     U(a.num_tokens), F(a.scale), U(a.max_splits), P(a.workspace)},
                    [=, this](cudaStream_t s) {
                      OpResult("Attention", kernels::LaunchPagedAttention(a, s));
                    });
  }
}

void CudaBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor out) {
  CheckTensor(gate, DType::kBF16, gate.rows, gate.cols, "SiluMul", "gate");
  CheckTensor(up, DType::kBF16, gate.rows, gate.cols, "SiluMul", "up");
  CheckTensor(out, DType::kBF16, gate.rows, gate.cols, "SiluMul", "out");
  graphs_.Enqueue({kOpSiluMul, P(gate.data), U(gate.stride), P(up.data), U(up.stride),
                   P(out.data), U(out.stride), U(gate.rows), U(gate.cols)},
                  [=, this](cudaStream_t s) {
                    OpResult("SiluMul", kernels::LaunchSiluMul(
                        gate.data, gate.stride, up.data, up.stride, out.data, out.stride,
                        static_cast<int>(gate.rows), static_cast<int>(gate.cols), s));
                  });
}

void CudaBackend::GatherLogitsRows(const Tensor& x, Tensor out) {
  CheckBatch("GatherLogitsRows");
  LLMUX_CHECK(x.dtype == DType::kBF16 || x.dtype == DType::kF32)
      << "GatherLogitsRows: x must be BF16 or F32";
  CheckTensor(x, x.dtype, meta_.num_tokens(), x.cols, "GatherLogitsRows", "x");
  const int n = meta_.num_logits();
  CheckTensor(out, x.dtype, n, x.cols, "GatherLogitsRows", "out");
  const int32_t* idx = meta_.d_logits_indices();
  const int es = static_cast<int>(DTypeSize(x.dtype));
  graphs_.Enqueue({kOpGather, P(x.data), U(x.stride), P(idx), P(out.data), U(out.stride), U(n),
                   U(x.cols), U(es)},
                  [=, this](cudaStream_t s) {
                    OpResult("Gather", kernels::LaunchGatherRows(x.data, x.stride, idx, out.data,
                                                               out.stride, n,
                                                               static_cast<int>(x.cols), es, s));
                  });
}

}  // namespace llmux::cuda
