// Embedding, RmsNorm, AddRmsNorm, RoPE, SiLU-mul and the logits gather against the naive CPU
// references, on odd shapes and strided views.
// Tolerances: bf16 outputs are compared with rtol 1e-2 (bf16 keeps 8 significant bits: one
// rounding is at most 2^-9 relative) plus a small atol for values near zero; copies are exact.
#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "reference_ops.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;
using cuda::testing::ExpectClose;
using cuda::testing::RandomBf16;
using cuda::testing::RoundBf16;

constexpr float kRtol = 1e-2f;
constexpr float kAtol = 1e-2f;

// A KV pool and a single-sequence prefill batch of `tokens` tokens with the given ids.
void StartBatch(Backend* b, const std::vector<int32_t>& ids, int start_pos = 0) {
  KvCacheSpec s;
  s.num_layers = 1;
  s.num_blocks = 64;
  s.block_size = 16;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.head_dim = 8;
  if (b->kv_spec().num_blocks == 0) {
    ASSERT_TRUE(b->InitKvCache(s).ok());
  }
  ForwardBatch fb;
  fb.token_ids = ids;
  const int n = static_cast<int>(ids.size());
  for (int i = 0; i < n; ++i) {
    fb.positions.push_back(start_pos + i);
    fb.slot_mapping.push_back(start_pos + i);
  }
  fb.query_start_loc = {0, n};
  fb.seq_lens = {start_pos + n};
  fb.max_blocks_per_seq = 64;
  for (int i = 0; i < 64; ++i) fb.block_tables.push_back(i);
  for (int i = 0; i < n; ++i) fb.logits_indices.push_back(n - 1 - i);
  ASSERT_TRUE(b->BeginBatch(fb).ok());
}

TEST(GpuElementwise, EmbeddingGathersRowsExactly) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int vocab = 37, dim = 75;
  const auto table_vals = RandomBf16(vocab * dim, 1);
  HostTensor h{"emb", DType::kF32, {vocab, dim},
               reinterpret_cast<const std::byte*>(table_vals.data()), table_vals.size() * 4};
  auto table = b->LoadWeight(h, WeightKind::kEmbedding);
  ASSERT_TRUE(table.ok());
  const std::vector<int32_t> ids = {36, 0, 5, 5, 17};
  StartBatch(b.get(), ids);
  Tensor out = dev.Make(DType::kBF16, 5, dim, 9);
  b->Embedding(*table, out);
  const auto got = dev.Get(out);
  for (int t = 0; t < 5; ++t) {
    for (int c = 0; c < dim; ++c) {
      ASSERT_EQ(got[t * dim + c], table_vals[ids[t] * dim + c]) << t << "," << c;
    }
  }
}

TEST(GpuElementwise, RmsNormMatchesReference) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  for (auto [rows, cols] : {std::pair{1, 64}, {7, 173}, {33, 4096}}) {
    const auto x = RandomBf16(size_t(rows) * cols, rows + cols, 3.0f);
    const auto w = RandomBf16(cols, 99);
    Tensor tx = dev.Upload(x, DType::kBF16, rows, cols, 5);
    auto tw = b->UploadF32(w, 1, cols);
    ASSERT_TRUE(tw.ok());
    Tensor out = dev.Make(DType::kBF16, rows, cols);
    b->RmsNorm(tx, *tw, 1e-5f, out);
    ExpectClose(dev.Get(out), cuda::testing::RefRmsNorm(x, w, 1e-5f, rows, cols), kRtol, kAtol,
                "rmsnorm");
    b->RmsNorm(tx, *tw, 1e-5f, tx);  // in place
    ExpectClose(dev.Get(tx), dev.Get(out), 0.0f, 0.0f, "rmsnorm in place");
  }
}

TEST(GpuElementwise, AddRmsNormUpdatesResidualAndNormalisesIt) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int rows = 9, cols = 257;
  const auto r = RandomBf16(rows * cols, 5, 2.0f);
  const auto x = RandomBf16(rows * cols, 6, 2.0f);
  const auto w = RandomBf16(cols, 7);
  Tensor tr = dev.Upload(r, DType::kBF16, rows, cols);
  Tensor tx = dev.Upload(x, DType::kBF16, rows, cols, 3);
  auto tw = b->UploadF32(w, 1, cols);
  ASSERT_TRUE(tw.ok());
  Tensor out = dev.Make(DType::kBF16, rows, cols);
  b->AddRmsNorm(tr, tx, *tw, 1e-6f, out);
  std::vector<float> sum(r.size());
  for (size_t i = 0; i < r.size(); ++i) sum[i] = RoundBf16(r[i] + x[i]);
  ExpectClose(dev.Get(tr), sum, 0.0f, 0.0f, "residual");  // one bf16 rounding, exact
  ExpectClose(dev.Get(out), cuda::testing::RefRmsNorm(sum, w, 1e-6f, rows, cols), kRtol, kAtol,
              "add_rmsnorm");
}

TEST(GpuElementwise, RopeRotatesHalvesAtBatchPositions) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int heads = 4, kv_heads = 2, hd = 8, tokens = 6;
  StartBatch(b.get(), {1, 2, 3, 4, 5, 6}, 500);
  std::vector<float> inv_freq(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / hd);
  auto tf = b->UploadF32(inv_freq, 1, hd / 2);
  ASSERT_TRUE(tf.ok());
  auto q = RandomBf16(tokens * heads * hd, 21);
  auto k = RandomBf16(tokens * kv_heads * hd, 22);
  Tensor tq = dev.Upload(q, DType::kBF16, tokens, heads * hd, 16);
  Tensor tk = dev.Upload(k, DType::kBF16, tokens, kv_heads * hd);
  b->Rope(tq, tk, *tf);
  std::vector<int> pos = {500, 501, 502, 503, 504, 505};
  cuda::testing::RefRope(q, pos, inv_freq, heads, hd);
  cuda::testing::RefRope(k, pos, inv_freq, kv_heads, hd);
  ExpectClose(dev.Get(tq), q, kRtol, kAtol, "rope q");
  ExpectClose(dev.Get(tk), k, kRtol, kAtol, "rope k");
}

TEST(GpuElementwise, SiluMulMatchesReference) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int rows = 5, cols = 1001;
  const auto g = RandomBf16(rows * cols, 31, 6.0f);
  const auto u = RandomBf16(rows * cols, 32, 2.0f);
  Tensor tg = dev.Upload(g, DType::kBF16, rows, cols, 7);
  Tensor tu = dev.Upload(u, DType::kBF16, rows, cols);
  Tensor out = dev.Make(DType::kBF16, rows, cols);
  b->SiluMul(tg, tu, out);
  std::vector<float> want(g.size());
  for (size_t i = 0; i < g.size(); ++i) want[i] = cuda::testing::RefSilu(g[i]) * u[i];
  ExpectClose(dev.Get(out), want, kRtol, kAtol, "silu_mul");
}

TEST(GpuElementwise, GatherLogitsRowsFollowsLogitsIndices) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  StartBatch(b.get(), {1, 2, 3, 4});  // logits_indices = {3, 2, 1, 0}
  const int cols = 19;
  const auto x = RandomBf16(4 * cols, 41);
  for (DType dt : {DType::kBF16, DType::kF32}) {
    Tensor tx = dev.Upload(x, dt, 4, cols, 2);
    Tensor out = dev.Make(dt, 4, cols);
    b->GatherLogitsRows(tx, out);
    const auto got = dev.Get(out);
    for (int i = 0; i < 4; ++i) {
      for (int c = 0; c < cols; ++c) ASSERT_EQ(got[i * cols + c], x[(3 - i) * cols + c]);
    }
  }
}
#else
TEST(GpuElementwise, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
