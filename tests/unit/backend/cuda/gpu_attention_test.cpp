// Paged attention against the naive reference: mixed batches (prefill chunks over a cached
// prefix, fresh prefills, decodes), GQA ratios 1/4/8, non-contiguous block tables with -1
// holes, long contexts that take several splits, and batch invariance (bit-identical rows).
// Tolerance: bf16 output, rtol 1e-2 + atol 2e-3 (inputs are exact bf16; the device keeps
// scores and the softmax in f32, so the error is the final bf16 rounding plus f32 sums).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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

// Host mirror of the KV pool: per sequence, per position, K and V rows [kv_heads * head_dim].
class AttentionHarness {
 public:
  AttentionHarness(Backend* b, Shape shape, int num_seqs) : b_(b), dev_(b), shape_(shape) {
    spec_.num_layers = 2;
    spec_.num_blocks = 320;  // ~106 scattered blocks per sequence
    spec_.block_size = 16;
    spec_.num_heads = shape.heads;
    spec_.num_kv_heads = shape.kv_heads;
    spec_.head_dim = shape.head_dim;
    spec_.dtype = DType::kBF16;
    EXPECT_TRUE(b->InitKvCache(spec_).ok());
    // Each sequence owns a scattered set of blocks (reverse-interleaved ids).
    std::vector<int32_t> ids(spec_.num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::reverse(ids.begin(), ids.end());
    tables_.resize(num_seqs);
    for (int i = 0; i < spec_.num_blocks; ++i) tables_[i % num_seqs].push_back(ids[i]);
    k_.resize(num_seqs);
    v_.resize(num_seqs);
  }

  // One step: `news[s]` new tokens for sequence `seqs[i]` (after what it already has). Writes
  // their K/V into `layer` and runs attention; returns [tokens, heads * head_dim] and the
  // reference.
  std::pair<std::vector<float>, std::vector<float>> Step(const std::vector<int>& seqs,
                                                          const std::vector<int>& news,
                                                          int layer, uint64_t seed) {
    const int row = shape_.kv_heads * shape_.head_dim;
    const int width = shape_.heads * shape_.head_dim;
    ForwardBatch fb;
    fb.query_start_loc = {0};
    const int max_blocks = 100;
    fb.max_blocks_per_seq = max_blocks;
    std::vector<std::pair<int, int>> token_seq_pos;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      const int cached = static_cast<int>(k_[s].size());
      for (int j = 0; j < news[i]; ++j) {
        const int pos = cached + j;
        fb.token_ids.push_back(1);
        fb.positions.push_back(pos);
        fb.slot_mapping.push_back(int64_t{tables_[s][pos / 16]} * 16 + pos % 16);
        token_seq_pos.emplace_back(s, pos);
      }
      fb.query_start_loc.push_back(static_cast<int>(fb.token_ids.size()));
      const int seq_len = cached + news[i];
      fb.seq_lens.push_back(seq_len);
      const int used = (seq_len + 15) / 16;
      for (int j = 0; j < max_blocks; ++j) fb.block_tables.push_back(j < used ? tables_[s][j] : -1);
    }
    const int tokens = fb.num_tokens();
    EXPECT_TRUE(b_->BeginBatch(fb).ok());
    const auto kn = RandomBf16(size_t(tokens) * row, seed);
    const auto vn = RandomBf16(size_t(tokens) * row, seed + 1);
    const auto q = RandomBf16(size_t(tokens) * width, seed + 2);
    for (int t = 0; t < tokens; ++t) {
      const int s = token_seq_pos[t].first;
      k_[s].emplace_back(kn.begin() + t * row, kn.begin() + (t + 1) * row);
      v_[s].emplace_back(vn.begin() + t * row, vn.begin() + (t + 1) * row);
    }
    Tensor tk = dev_.Upload(kn, DType::kBF16, tokens, row);
    Tensor tv = dev_.Upload(vn, DType::kBF16, tokens, row, 8);
    Tensor tq = dev_.Upload(q, DType::kBF16, tokens, width, 24);
    Tensor out = dev_.Make(DType::kBF16, tokens, width);
    b_->WriteKv(layer, tk, tv);
    const float scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
    b_->Attention(layer, tq, scale, out);

    std::vector<float> want(size_t(tokens) * width);
    const int group = shape_.heads / shape_.kv_heads;
    for (int t = 0; t < tokens; ++t) {
      const auto [s, pos] = token_seq_pos[t];
      for (int h = 0; h < shape_.heads; ++h) {
        const int kvh = h / group;
        std::vector<const float*> keys, values;
        for (int p = 0; p <= pos; ++p) {
          keys.push_back(k_[s][p].data() + kvh * shape_.head_dim);
          values.push_back(v_[s][p].data() + kvh * shape_.head_dim);
        }
        const auto o = cuda::testing::RefAttentionHead(&q[size_t(t) * width + h * shape_.head_dim],
                                                       keys, values, shape_.head_dim, scale);
        std::copy(o.begin(), o.end(), want.begin() + size_t(t) * width + h * shape_.head_dim);
      }
    }
    return {dev_.Get(out), want};
  }

  // Forgets the last `n` tokens of sequence s on the host (to replay the same step).
  void Drop(int s, int n) {
    k_[s].resize(k_[s].size() - n);
    v_[s].resize(v_[s].size() - n);
  }

 private:
  Backend* b_;
  DeviceTensors dev_;
  Shape shape_;
  KvCacheSpec spec_;
  std::vector<std::vector<int32_t>> tables_;
  std::vector<std::vector<std::vector<float>>> k_, v_;
};

class GpuAttention : public ::testing::TestWithParam<Shape> {};

TEST_P(GpuAttention, MixedPrefillAndDecodeMatchReference) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  AttentionHarness h(b.get(), GetParam(), 3);
  // Step 1: prefill seq 0 (37 tokens) and seq 1 (1299 tokens: 21 splits at the end).
  auto [got1, want1] = h.Step({0, 1}, {37, 1299}, 1, 100);
  cuda::testing::ExpectClose(got1, want1, 1e-2f, 2e-3f, "prefill");
  // Step 2: a 20-token chunk over seq 0's cached prefix, a decode of seq 1 at position 1299,
  // and a fresh 5-token prefill of seq 2.
  auto [got2, want2] = h.Step({0, 1, 2}, {20, 1, 5}, 1, 200);
  cuda::testing::ExpectClose(got2, want2, 1e-2f, 2e-3f, "mixed");
}

TEST_P(GpuAttention, DecodeRowIsBitIdenticalAloneAndInABatch) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const Shape shape = GetParam();
  const int width = shape.heads * shape.head_dim;
  AttentionHarness h(b.get(), shape, 3);
  (void)h.Step({0, 1, 2}, {700, 1100, 40}, 0, 300);
  // Decode seq 1 inside a batch of three, then again alone with the same K/V and query.
  auto [batched, w1] = h.Step({0, 1, 2}, {1, 1, 1}, 0, 400);
  h.Drop(0, 1);
  h.Drop(1, 1);
  h.Drop(2, 1);
  // Same seed: the same new K/V rows for seq 1 would need the same position in the random
  // stream, so seq 1 goes first here and in a single-sequence batch below.
  auto [first, w2] = h.Step({1, 0, 2}, {1, 1, 1}, 0, 500);
  h.Drop(0, 1);
  h.Drop(1, 1);
  h.Drop(2, 1);
  auto [alone, w3] = h.Step({1}, {1}, 0, 500);
  ASSERT_EQ(alone.size(), static_cast<size_t>(width));
  for (int i = 0; i < width; ++i) ASSERT_EQ(alone[i], first[i]) << "element " << i;
  cuda::testing::ExpectClose(batched, w1, 1e-2f, 2e-3f, "batched decode");
}

INSTANTIATE_TEST_SUITE_P(GqaRatios, GpuAttention,
                         ::testing::Values(Shape{4, 4, 64}, Shape{8, 2, 64}, Shape{8, 1, 128},
                                           Shape{8, 4, 8}, Shape{16, 4, 128}),
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
