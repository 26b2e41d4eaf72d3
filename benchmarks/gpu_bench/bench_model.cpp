// Built only with CUDA (gpu_bench has no work to do otherwise).
#ifdef LLMUX_HAVE_CUDA
#include "bench_model.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <cstdio>

#include "backend/cuda/cuda_access.h"
#include "llmux/dtype.h"

namespace llmux::bench {
namespace {

constexpr int kBlockSize = 16;

// Column slice [first, first + n) of a row-major view.
Tensor Cols(const Tensor& t, int64_t first, int64_t n) {
  Tensor r = t;
  r.data = static_cast<std::byte*>(t.data) + first * static_cast<int64_t>(DTypeSize(t.dtype));
  r.cols = n;
  return r;
}

}  // namespace

BenchModel::BenchModel(Backend* backend, ModelShape shape, int max_batch, int context)
    : b_(backend),
      s_(shape),
      max_batch_(max_batch),
      context_(context),
      blocks_per_seq_((context + kBlockSize - 1) / kBlockSize) {}

StatusOr<Tensor> BenchModel::Weight(int rows, int cols, WeightKind kind, uint64_t seed) {
  // Small values (|w| < 0.03) keep activations finite through many layers.
  std::vector<uint16_t> host(static_cast<size_t>(rows) * cols);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 12345;
  for (auto& v : host) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = FloatToBf16((static_cast<float>(x >> 40) / 16777216.0f - 0.5f) * 0.06f);
  }
  if (kind == WeightKind::kVector) {
    std::vector<float> ones(host.size(), 1.0f);
    return b_->UploadF32(ones, 1, cols);
  }
  HostTensor h{"bench", DType::kBF16, {rows, cols}, reinterpret_cast<const std::byte*>(host.data()),
               host.size() * 2};
  return b_->LoadWeight(h, kind);
}

Status BenchModel::Init() {
  const int q = s_.heads * s_.head_dim;
  const int kv = s_.kv_heads * s_.head_dim;
  LLMUX_ASSIGN_OR_RETURN(embedding_, Weight(s_.vocab, s_.dim, WeightKind::kEmbedding, 1));
  LLMUX_ASSIGN_OR_RETURN(lm_head_, Weight(s_.vocab, s_.dim, WeightKind::kMatrix, 2));
  LLMUX_ASSIGN_OR_RETURN(final_norm_, Weight(1, s_.dim, WeightKind::kVector, 3));
  for (int l = 0; l < s_.layers; ++l) {
    Layer L;
    LLMUX_ASSIGN_OR_RETURN(L.attn_norm, Weight(1, s_.dim, WeightKind::kVector, 10));
    LLMUX_ASSIGN_OR_RETURN(L.qkv, Weight(q + 2 * kv, s_.dim, WeightKind::kMatrix, 11 + l));
    LLMUX_ASSIGN_OR_RETURN(L.o, Weight(s_.dim, q, WeightKind::kMatrix, 12 + l));
    LLMUX_ASSIGN_OR_RETURN(L.ffn_norm, Weight(1, s_.dim, WeightKind::kVector, 13));
    LLMUX_ASSIGN_OR_RETURN(L.gate_up, Weight(2 * s_.ffn, s_.dim, WeightKind::kMatrix, 14 + l));
    LLMUX_ASSIGN_OR_RETURN(L.down, Weight(s_.dim, s_.ffn, WeightKind::kMatrix, 15 + l));
    layers_.push_back(L);
  }
  std::vector<float> inv(s_.head_dim / 2);
  for (int i = 0; i < s_.head_dim / 2; ++i) {
    inv[i] = std::pow(500000.0f, -2.0f * i / s_.head_dim);
  }
  LLMUX_ASSIGN_OR_RETURN(inv_freq_, b_->UploadF32(inv, 1, s_.head_dim / 2));
  gemms_ = {{"qkv", q + 2 * kv, s_.dim, false, layers_[0].qkv},
            {"o", s_.dim, q, false, layers_[0].o},
            {"gate_up", 2 * s_.ffn, s_.dim, false, layers_[0].gate_up},
            {"down", s_.dim, s_.ffn, false, layers_[0].down},
            {"lm_head", s_.vocab, s_.dim, true, lm_head_}};

  KvCacheSpec spec;
  spec.num_layers = s_.layers;
  spec.num_blocks = max_batch_ * blocks_per_seq_ + 1;
  spec.block_size = kBlockSize;
  spec.num_heads = s_.heads;
  spec.num_kv_heads = s_.kv_heads;
  spec.head_dim = s_.head_dim;
  spec.dtype = DType::kBF16;
  LLMUX_RETURN_IF_ERROR(b_->InitKvCache(spec));

  auto make = [&](DType dt, int64_t rows, int64_t cols) -> StatusOr<Tensor> {
    LLMUX_ASSIGN_OR_RETURN(auto buf, b_->Allocate(rows * cols * DTypeSize(dt)));
    Tensor t = Tensor::Dense(buf->data(), dt, rows, cols);
    buffers_.push_back(std::move(buf));
    return t;
  };
  const int m = std::max(max_batch_, 16);
  LLMUX_ASSIGN_OR_RETURN(h_, make(DType::kBF16, m, s_.dim));
  LLMUX_ASSIGN_OR_RETURN(x_, make(DType::kBF16, m, s_.dim));
  LLMUX_ASSIGN_OR_RETURN(qkv_, make(DType::kBF16, m, q + 2 * kv));
  LLMUX_ASSIGN_OR_RETURN(attn_, make(DType::kBF16, m, q));
  LLMUX_ASSIGN_OR_RETURN(gate_up_, make(DType::kBF16, m, 2 * s_.ffn));
  LLMUX_ASSIGN_OR_RETURN(act_, make(DType::kBF16, m, s_.ffn));
  LLMUX_ASSIGN_OR_RETURN(last_, make(DType::kBF16, m, s_.dim));
  LLMUX_ASSIGN_OR_RETURN(logits_, make(DType::kF32, m, s_.vocab));
  host_logits_.resize(static_cast<size_t>(m) * s_.vocab);
  return Status::Ok();
}

ForwardBatch BenchModel::MakeBatch(int batch) const {
  ForwardBatch fb;
  fb.query_start_loc = {0};
  fb.max_blocks_per_seq = blocks_per_seq_;
  const int pos = context_ - 1;
  for (int s = 0; s < batch; ++s) {
    const int32_t first = s * blocks_per_seq_;
    fb.token_ids.push_back((s * 7919) % s_.vocab);
    fb.positions.push_back(pos);
    fb.slot_mapping.push_back(int64_t{first + pos / kBlockSize} * kBlockSize + pos % kBlockSize);
    fb.query_start_loc.push_back(s + 1);
    fb.seq_lens.push_back(context_);
    for (int j = 0; j < blocks_per_seq_; ++j) fb.block_tables.push_back(first + j);
    fb.logits_indices.push_back(s);
  }
  return fb;
}

void BenchModel::BeginDecode(int batch) {
  current_batch_ = batch;
  const Status st = b_->BeginBatch(MakeBatch(batch));
  if (!st.ok()) {
    std::fprintf(stderr, "gpu_bench: BeginBatch: %s\n", st.ToString().c_str());
    std::abort();
  }
}

void BenchModel::DecodeStep(int batch) {
  BeginDecode(batch);
  const int q = s_.heads * s_.head_dim;
  const int kv = s_.kv_heads * s_.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s_.head_dim));
  Tensor h = h_.RowSlice(0, batch), x = x_.RowSlice(0, batch), qkv = qkv_.RowSlice(0, batch),
         attn = attn_.RowSlice(0, batch), gu = gate_up_.RowSlice(0, batch),
         act = act_.RowSlice(0, batch), logits = logits_.RowSlice(0, batch);
  b_->Embedding(embedding_, h);
  for (int l = 0; l < s_.layers; ++l) {
    const Layer& L = layers_[l];
    if (l == 0) {
      b_->RmsNorm(h, L.attn_norm, 1e-5f, x);
    }
    b_->MatMul(x, L.qkv, nullptr, qkv);
    Tensor qv = Cols(qkv, 0, q), kv_k = Cols(qkv, q, kv), kv_v = Cols(qkv, q + kv, kv);
    b_->Rope(qv, kv_k, inv_freq_);
    b_->WriteKv(l, kv_k, kv_v);
    b_->Attention(l, qv, scale, attn);
    b_->MatMul(attn, L.o, nullptr, x);
    b_->AddRmsNorm(h, x, L.ffn_norm, 1e-5f, x);
    b_->MatMul(x, L.gate_up, nullptr, gu);
    b_->SiluMul(Cols(gu, 0, s_.ffn), Cols(gu, s_.ffn, s_.ffn), act);
    b_->MatMul(act, L.down, nullptr, x);
    const Tensor& next_norm = l + 1 < s_.layers ? layers_[l + 1].attn_norm : final_norm_;
    b_->AddRmsNorm(h, x, next_norm, 1e-5f, x);
  }
  Tensor last = last_.RowSlice(0, batch);
  b_->GatherLogitsRows(x, last);
  b_->MatMul(last, lm_head_, nullptr, logits);
  const Status st = b_->CopyToHostF32(logits, host_logits_.data());
  if (!st.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", st.ToString().c_str());
    std::abort();
  }
}

double BenchModel::TimeAttention(int iters) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s_.head_dim));
  const Tensor q = Cols(qkv_.RowSlice(0, current_batch_), 0, s_.heads * s_.head_dim);
  const Tensor out = attn_.RowSlice(0, current_batch_);
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i) b_->Attention(0, q, scale, out);
    (void)cuda::Synchronize(*b_);
  };
  run(3);
  auto t0 = std::chrono::steady_clock::now();
  run(iters);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

double BenchModel::TimeGemm(const GemmCase& g, int m, int iters) {
  Tensor x = Tensor::Dense(act_.data, DType::kBF16, m, g.k);
  Tensor out = g.f32_out ? Tensor::Dense(logits_.data, DType::kF32, m, g.n)
                         : Tensor::Dense(gate_up_.data, DType::kBF16, m, g.n);
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i) b_->MatMul(x, g.w, nullptr, out);
    (void)cuda::Synchronize(*b_);
  };
  run(3);
  auto t0 = std::chrono::steady_clock::now();
  run(iters);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

double BenchModel::WeightBytes() const {
  const double q = s_.heads * s_.head_dim;
  const double kv = s_.kv_heads * s_.head_dim;
  const double per_layer = s_.dim * (q + 2 * kv) + q * s_.dim + 3.0 * s_.dim * s_.ffn;
  return 2.0 * (per_layer * s_.layers + static_cast<double>(s_.vocab) * s_.dim);
}

double BenchModel::KvBytesPerStep(int batch) const {
  return 2.0 * 2.0 * batch * static_cast<double>(context_) * s_.kv_heads * s_.head_dim *
         s_.layers;
}

}  // namespace llmux::bench

#endif  // LLMUX_HAVE_CUDA
