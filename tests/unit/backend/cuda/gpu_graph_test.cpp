// Decode steps through a small Llama-like layer (every op of the Backend interface) with and
// without CUDA graphs: logits must be bit-identical and graphs must actually be replayed while
// positions and block tables change from step to step. Also checks that a sequence's logits do
// not depend on the other sequences of its batch (batch invariance end to end).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpu_test_util.h"
#include "reference_ops.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;
using cuda::testing::RandomBf16;

constexpr int kVocab = 300, kDim = 128, kHeads = 4, kKvHeads = 2, kHd = 32, kFfn = 200;
constexpr int kMaxBlocks = 8, kBlock = 16;

// A one-layer model over the Backend interface, with its own activation buffers.
class TinyModel {
 public:
  explicit TinyModel(Backend* b) : b_(b), dev_(b) {
    KvCacheSpec s;
    s.num_layers = 1;
    s.num_blocks = 64;
    s.block_size = kBlock;
    s.num_heads = kHeads;
    s.num_kv_heads = kKvHeads;
    s.head_dim = kHd;
    s.dtype = DType::kBF16;
    EXPECT_TRUE(b->InitKvCache(s).ok());
    emb_ = Load(RandomBf16(kVocab * kDim, 1), kVocab, kDim, WeightKind::kEmbedding);
    wq_ = Load(RandomBf16(kHeads * kHd * kDim, 2, 0.2f), kHeads * kHd, kDim, WeightKind::kMatrix);
    wk_ = Load(RandomBf16(kKvHeads * kHd * kDim, 3, 0.2f), kKvHeads * kHd, kDim,
               WeightKind::kMatrix);
    wv_ = Load(RandomBf16(kKvHeads * kHd * kDim, 4, 0.2f), kKvHeads * kHd, kDim,
               WeightKind::kMatrix);
    wo_ = Load(RandomBf16(kDim * kHeads * kHd, 5, 0.2f), kDim, kHeads * kHd, WeightKind::kMatrix);
    wg_ = Load(RandomBf16(kFfn * kDim, 6, 0.2f), kFfn, kDim, WeightKind::kMatrix);
    wu_ = Load(RandomBf16(kFfn * kDim, 7, 0.2f), kFfn, kDim, WeightKind::kMatrix);
    wd_ = Load(RandomBf16(kDim * kFfn, 8, 0.2f), kDim, kFfn, WeightKind::kMatrix);
    norm_ = Load(RandomBf16(kDim, 9), 1, kDim, WeightKind::kVector);
    std::vector<float> inv(kHd / 2);
    for (int i = 0; i < kHd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / kHd);
    inv_freq_ = *b->UploadF32(inv, 1, kHd / 2);
    const int t = 64;
    h_ = dev_.Make(DType::kBF16, t, kDim);
    x_ = dev_.Make(DType::kBF16, t, kDim);
    q_ = dev_.Make(DType::kBF16, t, kHeads * kHd);
    k_ = dev_.Make(DType::kBF16, t, kKvHeads * kHd);
    v_ = dev_.Make(DType::kBF16, t, kKvHeads * kHd);
    attn_ = dev_.Make(DType::kBF16, t, kHeads * kHd);
    gate_ = dev_.Make(DType::kBF16, t, kFfn);
    up_ = dev_.Make(DType::kBF16, t, kFfn);
    last_ = dev_.Make(DType::kBF16, t, kDim);
    logits_ = dev_.Make(DType::kF32, t, kVocab);
  }

  // Runs one step; returns [logits rows, vocab]. `eps` of the norms is an op argument, so a
  // different value gives the step another signature under the same batch shape.
  std::vector<float> Forward(const ForwardBatch& fb, float eps = 1e-5f) {
    EXPECT_TRUE(b_->BeginBatch(fb).ok());
    const int t = fb.num_tokens();
    const int n = static_cast<int>(fb.logits_indices.size());
    Tensor h = h_.RowSlice(0, t), x = x_.RowSlice(0, t), q = q_.RowSlice(0, t),
           k = k_.RowSlice(0, t), v = v_.RowSlice(0, t), attn = attn_.RowSlice(0, t),
           gate = gate_.RowSlice(0, t), up = up_.RowSlice(0, t);
    b_->Embedding(emb_, h);
    b_->RmsNorm(h, norm_, eps, x);
    b_->MatMul(x, wq_, nullptr, q);
    b_->MatMul(x, wk_, nullptr, k);
    b_->MatMul(x, wv_, nullptr, v);
    b_->Rope(q, k, inv_freq_);
    b_->WriteKv(0, k, v);
    b_->Attention(0, q, 1.0f / std::sqrt(float(kHd)), attn);
    b_->MatMul(attn, wo_, nullptr, x);
    b_->AddRmsNorm(h, x, norm_, eps, x);
    b_->MatMul(x, wg_, nullptr, gate);
    b_->MatMul(x, wu_, nullptr, up);
    b_->SiluMul(gate, up, gate);
    b_->MatMul(gate, wd_, nullptr, x);
    b_->AddRmsNorm(h, x, norm_, eps, x);
    Tensor last = last_.RowSlice(0, n), logits = logits_.RowSlice(0, n);
    b_->GatherLogitsRows(x, last);
    b_->MatMul(last, emb_, nullptr, logits);
    std::vector<float> out(size_t(n) * kVocab);
    EXPECT_TRUE(b_->CopyToHostF32(logits, out.data()).ok());
    return out;
  }

 private:
  Tensor Load(const std::vector<float>& w, int rows, int cols, WeightKind kind) {
    HostTensor ht{"w", DType::kF32, {rows, cols}, reinterpret_cast<const std::byte*>(w.data()),
                  w.size() * 4};
    if (rows == 1) ht.shape = {cols};
    auto t = b_->LoadWeight(ht, kind);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return *t;
  }

  Backend* b_;
  DeviceTensors dev_;
  Tensor emb_, wq_, wk_, wv_, wo_, wg_, wu_, wd_, norm_, inv_freq_;
  Tensor h_, x_, q_, k_, v_, attn_, gate_, up_, last_, logits_;
};

// Sequence s owns blocks [s * kMaxBlocks, (s + 1) * kMaxBlocks) in reverse order.
int32_t BlockOf(int s, int j) { return s * kMaxBlocks + (kMaxBlocks - 1 - j); }

// A batch where sequence seqs[i] has `lens[i]` tokens cached and `news[i]` new tokens whose ids
// are a function of (sequence, position).
ForwardBatch MakeBatch(const std::vector<int>& seqs, const std::vector<int>& lens,
                       const std::vector<int>& news) {
  ForwardBatch fb;
  fb.query_start_loc = {0};
  fb.max_blocks_per_seq = kMaxBlocks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int s = seqs[i];
    for (int j = 0; j < news[i]; ++j) {
      const int pos = lens[i] + j;
      fb.token_ids.push_back((s * 131 + pos * 7) % kVocab);
      fb.positions.push_back(pos);
      fb.slot_mapping.push_back(int64_t{BlockOf(s, pos / kBlock)} * kBlock + pos % kBlock);
    }
    fb.query_start_loc.push_back(fb.num_tokens());
    fb.seq_lens.push_back(lens[i] + news[i]);
    fb.logits_indices.push_back(fb.num_tokens() - 1);
    for (int j = 0; j < kMaxBlocks; ++j) {
      fb.block_tables.push_back(j * kBlock < lens[i] + news[i] ? BlockOf(s, j) : -1);
    }
  }
  return fb;
}

// Prefills 3 sequences, then decodes `steps` steps of all three (decode step i with norm eps
// eps[i] when given); returns every step's logits.
std::vector<std::vector<float>> RunSteps(Backend* b, int steps, std::vector<float> eps = {}) {
  TinyModel m(b);
  std::vector<std::vector<float>> all;
  std::vector<int> lens = {0, 0, 0};
  all.push_back(m.Forward(MakeBatch({0, 1, 2}, lens, {9, 17, 4})));
  lens = {9, 17, 4};
  for (int i = 0; i < steps; ++i) {
    const float e = i < static_cast<int>(eps.size()) ? eps[i] : 1e-5f;
    all.push_back(m.Forward(MakeBatch({0, 1, 2}, lens, {1, 1, 1}), e));
    for (int& l : lens) ++l;
  }
  return all;
}

TEST(GpuGraphs, DecodeStepsReplayGraphsWithIdenticalLogits) {
  CudaBackendOptions eager_opts;
  eager_opts.cuda_graphs = false;
  LLMUX_CUDA_BACKEND_OR_SKIP(eager, eager_opts);
  LLMUX_CUDA_BACKEND_OR_SKIP(graphed);
  const int steps = 8;
  const auto want = RunSteps(eager.get(), steps);
  const auto got = RunSteps(graphed.get(), steps);
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s) {
    ASSERT_EQ(got[s].size(), want[s].size());
    for (size_t i = 0; i < got[s].size(); ++i) {
      ASSERT_EQ(got[s][i], want[s][i]) << "step " << s << " element " << i;
    }
  }
  auto stats = cuda::GetGraphStats(*graphed);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->captures, 1);               // one shape: batch of 3 decodes
  EXPECT_EQ(stats->replays, steps - 1);        // the first decode step runs eagerly
  // From the third decode step on, the bucket's graph is launched at BeginBatch, before the
  // ops are called, and each step's recorded ops turn out to be that graph's.
  EXPECT_EQ(stats->early_launches, steps - 2);
  EXPECT_EQ(stats->early_misses, 0);
  auto none = cuda::GetGraphStats(*eager);
  EXPECT_EQ(none->replays, 0);
  EXPECT_EQ(none->early_launches, 0);
}

TEST(GpuGraphs, AnEarlyLaunchedGraphThatWasWrongIsOverwrittenByTheStepsOps) {
  CudaBackendOptions eager_opts;
  eager_opts.cuda_graphs = false;
  LLMUX_CUDA_BACKEND_OR_SKIP(eager, eager_opts);
  LLMUX_CUDA_BACKEND_OR_SKIP(graphed);
  // Decode steps 0-3 one signature (graph captured at step 1, launched early at 2 and 3); step
  // 4 has the same batch shape but other ops (eps): the early graph is the wrong one; steps 5
  // and 6 return to the first signature.
  const std::vector<float> eps = {1e-5f, 1e-5f, 1e-5f, 1e-5f, 1e-2f, 1e-5f, 1e-5f};
  const int steps = static_cast<int>(eps.size());
  const auto want = RunSteps(eager.get(), steps, eps);
  const auto got = RunSteps(graphed.get(), steps, eps);
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s) {
    ASSERT_EQ(got[s].size(), want[s].size());
    for (size_t i = 0; i < got[s].size(); ++i) {
      ASSERT_EQ(got[s][i], want[s][i]) << "step " << s << " element " << i;
    }
  }
  auto stats = cuda::GetGraphStats(*graphed);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->early_misses, 1);  // step 4 (its ops then ran eagerly: first sight)
  // Early at 2, 3, 4 (the miss), then step 5's prediction is step 4's signature, which has no
  // graph (no early launch); step 6 is early again.
  EXPECT_EQ(stats->early_launches, 4);
  EXPECT_EQ(stats->captures, 1);
}

TEST(GpuGraphs, LogitsOfASequenceDoNotDependOnItsBatch) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  TinyModel m(b.get());
  (void)m.Forward(MakeBatch({0, 1, 2}, {0, 0, 0}, {30, 12, 5}));
  // Sequence 1's next token decoded with the others, then alone (same KV, same slot).
  const auto batched = m.Forward(MakeBatch({0, 1, 2}, {30, 12, 5}, {1, 1, 1}));
  const auto alone = m.Forward(MakeBatch({1}, {12}, {1}));
  for (int i = 0; i < kVocab; ++i) ASSERT_EQ(alone[i], batched[kVocab + i]) << "logit " << i;
}
#else
TEST(GpuGraphs, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
