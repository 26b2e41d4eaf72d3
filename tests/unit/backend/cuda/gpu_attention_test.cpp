// Paged attention against the CPU backend's Attention op: mixed batches (prefill chunks over a
// cached prefix, fresh prefills, decodes), GQA ratios 1/4/8/2/4/7, head_dim 8 to 128,
// non-contiguous block tables with -1 holes, long contexts that take several (and longer)
// splits, and batch invariance: a decode row alone vs batched, and every token of a sequence
// bit-identical across prefill chunkings and decodes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <numeric>

#include "gpu_test_util.h"
#include "reference_ops.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;
using cuda::testing::RandomBf16;

struct Shape {
  int heads, kv_heads, head_dim;
};

// Runs the same steps on the CUDA backend and on the CPU backend (the reference op, f32 KV
// cache). K, V and q of a token are a function of (sequence, position) only, so a
// sequence's values do not depend on how its tokens are split into steps.
class AttentionHarness {
 public:
  AttentionHarness(Backend* b, Shape shape, int num_seqs, int num_blocks = 320)
      : b_(b), dev_(b), shape_(shape), cpu_(CreateCpuBackend({.threads = 4}).value()) {
    spec_.num_layers = 2;
    spec_.num_blocks = num_blocks;  // 320: ~106 scattered blocks per sequence of three
    spec_.block_size = 16;
    spec_.num_heads = shape.heads;
    spec_.num_kv_heads = shape.kv_heads;
    spec_.head_dim = shape.head_dim;
    spec_.dtype = DType::kBF16;
    EXPECT_TRUE(b->InitKvCache(spec_).ok());
    KvCacheSpec cpu_spec = spec_;
    cpu_spec.dtype = DType::kF32;
    EXPECT_TRUE(cpu_->InitKvCache(cpu_spec).ok());
    // Each sequence owns a scattered set of blocks (reverse-interleaved ids).
    std::vector<int32_t> ids(spec_.num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::reverse(ids.begin(), ids.end());
    tables_.resize(num_seqs);
    for (int i = 0; i < spec_.num_blocks; ++i) tables_[i % num_seqs].push_back(ids[i]);
    lengths_.assign(num_seqs, 0);
    max_blocks_ = (num_blocks + num_seqs - 1) / num_seqs;
  }

  // Bit-identity tests compare CUDA with itself: they skip the CPU op (seconds per step at
  // 1k-token prefills).
  void set_cpu_reference(bool on) { cpu_reference_ = on; }

  // One step: `news[i]` new tokens for sequence `seqs[i]` (after what it already has). Writes
  // their K/V into `layer` on both backends and runs attention; returns the CUDA output and
  // the CPU backend's, [tokens, heads * head_dim] each (the latter empty without the CPU
  // reference).
  std::pair<std::vector<float>, std::vector<float>> Step(const std::vector<int>& seqs,
                                                          const std::vector<int>& news,
                                                          int layer) {
    const int row = shape_.kv_heads * shape_.head_dim;
    const int width = shape_.heads * shape_.head_dim;
    ForwardBatch fb;
    fb.query_start_loc = {0};
    const int max_blocks = max_blocks_;
    fb.max_blocks_per_seq = max_blocks;
    std::vector<float> kn, vn, q;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      const int cached = lengths_[s];
      for (int j = 0; j < news[i]; ++j) {
        const int pos = cached + j;
        fb.token_ids.push_back(1);
        fb.positions.push_back(pos);
        fb.slot_mapping.push_back(int64_t{tables_[s][pos / 16]} * 16 + pos % 16);
        const uint64_t key = static_cast<uint64_t>(s) * 1000003 + pos;
        const auto k1 = RandomBf16(row, key * 3 + 1);
        const auto v1 = RandomBf16(row, key * 3 + 2);
        const auto q1 = RandomBf16(width, key * 3 + 3);
        kn.insert(kn.end(), k1.begin(), k1.end());
        vn.insert(vn.end(), v1.begin(), v1.end());
        q.insert(q.end(), q1.begin(), q1.end());
      }
      fb.query_start_loc.push_back(static_cast<int>(fb.token_ids.size()));
      lengths_[s] = cached + news[i];
      fb.seq_lens.push_back(lengths_[s]);
      const int used = (lengths_[s] + 15) / 16;
      for (int j = 0; j < max_blocks; ++j) fb.block_tables.push_back(j < used ? tables_[s][j] : -1);
    }
    const int tokens = fb.num_tokens();
    const float scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));

    EXPECT_TRUE(b_->BeginBatch(fb).ok());
    Tensor tk = dev_.Upload(kn, DType::kBF16, tokens, row);
    Tensor tv = dev_.Upload(vn, DType::kBF16, tokens, row, 8);
    Tensor tq = dev_.Upload(q, DType::kBF16, tokens, width, 24);
    Tensor out = dev_.Make(DType::kBF16, tokens, width);
    b_->WriteKv(layer, tk, tv);
    b_->Attention(layer, tq, scale, out);

    if (!cpu_reference_) return {dev_.Get(out), {}};
    EXPECT_TRUE(cpu_->BeginBatch(fb).ok());
    Tensor ck = CpuF32(kn, tokens, row);
    Tensor cv = CpuF32(vn, tokens, row);
    Tensor cq = CpuF32(q, tokens, width);
    Tensor cout = CpuF32(std::vector<float>(size_t(tokens) * width), tokens, width);
    cpu_->WriteKv(layer, ck, cv);
    cpu_->Attention(layer, cq, scale, cout);
    const float* co = static_cast<const float*>(cout.data);
    return {dev_.Get(out), std::vector<float>(co, co + size_t(tokens) * width)};
  }

  // Forgets the last `n` tokens of sequence s (to replay them in another step layout).
  void Drop(int s, int n) { lengths_[s] -= n; }

 private:
  Tensor CpuF32(const std::vector<float>& values, int64_t rows, int64_t cols) {
    auto buf = cpu_->Allocate(values.size() * sizeof(float));
    EXPECT_TRUE(buf.ok());
    std::memcpy((*buf)->data(), values.data(), values.size() * sizeof(float));
    Tensor t = Tensor::Dense((*buf)->data(), DType::kF32, rows, cols);
    cpu_bufs_.push_back(std::move(buf).value());
    return t;
  }

  Backend* b_;
  DeviceTensors dev_;
  Shape shape_;
  std::unique_ptr<Backend> cpu_;
  std::vector<std::unique_ptr<DeviceBuffer>> cpu_bufs_;
  KvCacheSpec spec_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<int> lengths_;
  int max_blocks_ = 0;
  bool cpu_reference_ = true;
};

// NOTE: tolerance. Inputs are exact bf16 on both sides; the CUDA kernel keeps scores and the
// softmax in f32 but rounds the probabilities to bf16 for the tensor-core PV product (relative
// 2^-9 per weight, at most 2^-9 max|v| = 2e-3 in total) and the output to bf16 (2^-9 relative).
constexpr float kRtol = 1e-2f;
constexpr float kAtol = 4e-3f;

class GpuAttention : public ::testing::TestWithParam<Shape> {};

TEST_P(GpuAttention, MixedPrefillAndDecodeMatchTheCpuBackend) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  AttentionHarness h(b.get(), GetParam(), 3);
  // Step 1: prefill seq 0 (37 tokens) and seq 1 (1299 tokens: 21 splits at the end).
  auto [got1, want1] = h.Step({0, 1}, {37, 1299}, 1);
  cuda::testing::ExpectClose(got1, want1, kRtol, kAtol, "prefill");
  // Step 2: a 20-token chunk over seq 0's cached prefix, a decode of seq 1 at position 1299,
  // and a fresh 5-token prefill of seq 2.
  auto [got2, want2] = h.Step({0, 1, 2}, {20, 1, 5}, 1);
  cuda::testing::ExpectClose(got2, want2, kRtol, kAtol, "mixed");
}

// Long contexts: splits longer than one tile (contexts past 32 x 64 keys: 128-key splits).
TEST_P(GpuAttention, LongContextMatchesTheCpuBackend) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  AttentionHarness h(b.get(), GetParam(), 2, /*num_blocks=*/300);
  auto [got1, want1] = h.Step({0, 1}, {2200, 3}, 0);
  cuda::testing::ExpectClose(got1, want1, kRtol, kAtol, "long prefill");
  auto [got2, want2] = h.Step({0, 1}, {1, 1}, 0);
  cuda::testing::ExpectClose(got2, want2, kRtol, kAtol, "long decode");
}

TEST_P(GpuAttention, DecodeRowIsBitIdenticalAloneAndInABatch) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const Shape shape = GetParam();
  const int width = shape.heads * shape.head_dim;
  AttentionHarness h(b.get(), shape, 3);
  (void)h.Step({0, 1, 2}, {700, 1100, 40}, 0);
  // Decode seq 1 inside a batch of three, then alone with the same K/V and query.
  auto [batched, want] = h.Step({0, 1, 2}, {1, 1, 1}, 0);
  h.Drop(0, 1);
  h.Drop(1, 1);
  h.Drop(2, 1);
  auto [alone, w2] = h.Step({1}, {1}, 0);
  ASSERT_EQ(alone.size(), static_cast<size_t>(width));
  for (int i = 0; i < width; ++i) ASSERT_EQ(alone[i], batched[width + i]) << "element " << i;
  cuda::testing::ExpectClose(batched, want, kRtol, kAtol, "batched decode");
}

// A token's output is the same bits whichever step layout computed it: one prefill chunk,
// other chunkings (tiles cut at other tokens), or a decode of its own beside other sequences.
// This is what makes prompt chunking and preemption-recompute batch invariant.
TEST_P(GpuAttention, TokensAreBitIdenticalAcrossChunkingsAndDecodes) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const Shape shape = GetParam();
  const size_t width = static_cast<size_t>(shape.heads) * shape.head_dim;
  AttentionHarness h(b.get(), shape, 2);
  h.set_cpu_reference(false);
  const int total = 1350;  // up to 22 one-tile splits
  auto [whole, unused] = h.Step({0}, {total}, 1);
  h.Drop(0, total);
  // The same positions in chunks of 37, 700 and 583, the first two beside sequence 1.
  std::vector<float> pieces;
  for (auto [n, other] : {std::pair{37, 5}, std::pair{700, 64}, std::pair{total - 737 - 30, 1}}) {
    auto [got, w] = h.Step({1, 0}, {other, n}, 1);
    pieces.insert(pieces.end(), got.begin() + static_cast<size_t>(other) * width, got.end());
  }
  // The last 30 positions as decodes, each beside a decode of sequence 1.
  for (int i = 0; i < 30; ++i) {
    auto [got, w] = h.Step({1, 0}, {1, 1}, 1);
    pieces.insert(pieces.end(), got.begin() + width, got.end());
  }
  ASSERT_EQ(pieces.size(), whole.size());
  for (size_t e = 0; e < whole.size(); ++e) {
    ASSERT_EQ(pieces[e], whole[e]) << "position " << e / width << " element " << e % width;
  }
}

INSTANTIATE_TEST_SUITE_P(GqaRatios, GpuAttention,
                         ::testing::Values(Shape{4, 4, 64}, Shape{8, 2, 64}, Shape{8, 1, 128},
                                           Shape{8, 4, 8}, Shape{16, 4, 128},
                                           Shape{14, 2, 64}),  // group 7: 9-token tiles
                         [](const auto& info) {
                           char name[64];
                           std::snprintf(name, sizeof(name), "h%dkv%dd%d", info.param.heads,
                                         info.param.kv_heads, info.param.head_dim);
                           return std::string(name);
                         });
#else
TEST(GpuAttention, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
