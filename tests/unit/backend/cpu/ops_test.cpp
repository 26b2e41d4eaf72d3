// Row-wise ops, memory, weights, the KV cache hooks and batch validation of the CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "unit/backend/cpu/test_util.h"

namespace llmux::cpu {
namespace {

using testing::MakeBackend;
using testing::MakeWeight;
using testing::RandomFloats;

KvCacheSpec SmallSpec() {
  KvCacheSpec s;
  s.num_layers = 2;
  s.num_blocks = 8;
  s.block_size = 4;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.head_dim = 8;
  return s;
}

// One sequence of `n` new tokens after `cached` ones, blocks 5, 2, 7, ...
ForwardBatch OneSeq(int cached, int n, std::vector<int32_t> tokens = {}) {
  const std::vector<int32_t> blocks = {5, 2, 7, 0};
  ForwardBatch b;
  for (int p = cached; p < cached + n; ++p) {
    b.token_ids.push_back(tokens.empty() ? p : tokens[p - cached]);
    b.positions.push_back(p);
    b.slot_mapping.push_back(int64_t{blocks[p / 4]} * 4 + p % 4);
  }
  b.query_start_loc = {0, n};
  b.seq_lens = {cached + n};
  b.block_tables = blocks;
  b.max_blocks_per_seq = 4;
  b.logits_indices = {n - 1};
  return b;
}

std::unique_ptr<Backend> BackendWithKv(int threads = 2) {
  auto be = MakeBackend(threads);
  EXPECT_TRUE(be->InitKvCache(SmallSpec()).ok());
  return be;
}

TEST(CpuOpsTest, EmbeddingConvertsEachDtypeExactly) {
  const auto table = RandomFloats(10 * 20, 1);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    auto be = BackendWithKv();
    auto img = MakeWeight(table, {10, 20}, dt);
    auto w = be->LoadWeight(img->tensor, WeightKind::kEmbedding);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(be->BeginBatch(OneSeq(0, 3, {7, 0, 9})).ok());
    std::vector<float> out(3 * 20);
    be->Embedding(*w, Tensor::Dense(out.data(), DType::kF32, 3, 20));
    const int ids[3] = {7, 0, 9};
    for (int t = 0; t < 3; ++t)
      for (int i = 0; i < 20; ++i)
        ASSERT_EQ(out[t * 20 + i], img->rounded[ids[t] * 20 + i]) << DTypeName(dt);
  }
}

TEST(CpuOpsTest, RmsNormAndAddRmsNormMatchReference) {
  auto be = MakeBackend(2);
  constexpr int kRows = 5, kCols = 37;
  auto x = RandomFloats(kRows * kCols, 2, -3, 3);
  auto res = RandomFloats(kRows * kCols, 3, -3, 3);
  auto wv = RandomFloats(kCols, 4);
  auto w = be->UploadF32(wv, 1, kCols);
  ASSERT_TRUE(w.ok());
  std::vector<float> out(kRows * kCols), out2(kRows * kCols);
  be->RmsNorm(Tensor::Dense(x.data(), DType::kF32, kRows, kCols), *w, 1e-5f,
              Tensor::Dense(out.data(), DType::kF32, kRows, kCols));
  auto res_after = res;
  be->AddRmsNorm(Tensor::Dense(res_after.data(), DType::kF32, kRows, kCols),
                 Tensor::Dense(x.data(), DType::kF32, kRows, kCols), *w, 1e-5f,
                 Tensor::Dense(out2.data(), DType::kF32, kRows, kCols));
  for (int r = 0; r < kRows; ++r) {
    double ss = 0, ss2 = 0;
    for (int i = 0; i < kCols; ++i) {
      ss += double{x[r * kCols + i]} * x[r * kCols + i];
      float sum = res[r * kCols + i] + x[r * kCols + i];
      ASSERT_EQ(res_after[r * kCols + i], sum);
      ss2 += double{sum} * sum;
    }
    const double inv = 1 / std::sqrt(ss / kCols + 1e-5), inv2 = 1 / std::sqrt(ss2 / kCols + 1e-5);
    for (int i = 0; i < kCols; ++i) {
      EXPECT_NEAR(out[r * kCols + i], x[r * kCols + i] * inv * wv[i], 1e-6);
      EXPECT_NEAR(out2[r * kCols + i], res_after[r * kCols + i] * inv2 * wv[i], 1e-6);
    }
  }
}

TEST(CpuOpsTest, RopeRotatesHalvesAtTheBatchPositions) {
  auto be = MakeBackend(2);
  KvCacheSpec spec = SmallSpec();
  spec.block_size = 256;
  ASSERT_TRUE(be->InitKvCache(spec).ok());
  constexpr int kT = 3, kHd = 8, kHalf = 4;
  ForwardBatch b;  // positions 1000..1002, in block 3
  b.token_ids = {1, 2, 3};
  b.positions = {1000, 1001, 1002};
  b.slot_mapping = {3 * 256 + 232, 3 * 256 + 233, 3 * 256 + 234};
  b.query_start_loc = {0, 3};
  b.seq_lens = {1003};
  b.block_tables = {0, 1, 2, 3};
  b.max_blocks_per_seq = 4;
  ASSERT_TRUE(be->BeginBatch(b).ok());
  std::vector<float> inv_freq(kHalf);
  for (int i = 0; i < kHalf; ++i) inv_freq[i] = 1.0f / std::pow(10000.0f, 2.0f * i / kHd);
  auto f = be->UploadF32(inv_freq, 1, kHalf);
  auto q = RandomFloats(kT * 4 * kHd, 5), k = RandomFloats(kT * 2 * kHd, 6);
  auto q0 = q, k0 = k;
  be->Rope(Tensor::Dense(q.data(), DType::kF32, kT, 4 * kHd),
           Tensor::Dense(k.data(), DType::kF32, kT, 2 * kHd), *f);
  auto check = [&](const std::vector<float>& before, const std::vector<float>& after, int w) {
    for (int t = 0; t < kT; ++t) {
      for (int h = 0; h < w / kHd; ++h) {
        for (int i = 0; i < kHalf; ++i) {
          const float angle = static_cast<float>(1000 + t) * inv_freq[i];  // float, as HF
          const double c = std::cos(double{angle}), s = std::sin(double{angle});
          const double x0 = before[t * w + h * kHd + i], x1 = before[t * w + h * kHd + i + kHalf];
          EXPECT_NEAR(after[t * w + h * kHd + i], x0 * c - x1 * s, 1e-6);
          EXPECT_NEAR(after[t * w + h * kHd + i + kHalf], x1 * c + x0 * s, 1e-6);
        }
      }
    }
  };
  check(q0, q, 4 * kHd);
  check(k0, k, 2 * kHd);
}

TEST(CpuOpsTest, SiluMulAndGather) {
  auto be = BackendWithKv();
  auto g = RandomFloats(3 * 21, 7, -20, 20), u = RandomFloats(3 * 21, 8);
  std::vector<float> out(3 * 21);
  be->SiluMul(Tensor::Dense(g.data(), DType::kF32, 3, 21),
              Tensor::Dense(u.data(), DType::kF32, 3, 21),
              Tensor::Dense(out.data(), DType::kF32, 3, 21));
  for (size_t i = 0; i < out.size(); ++i) {
    const double ref = g[i] / (1 + std::exp(-double{g[i]})) * u[i];
    EXPECT_NEAR(out[i], ref, 4e-7 * std::max(1.0, std::fabs(ref))) << i;
  }
  ForwardBatch b = OneSeq(0, 3);
  b.logits_indices = {2, 0};
  ASSERT_TRUE(be->BeginBatch(b).ok());
  std::vector<float> rows(2 * 21);
  be->GatherLogitsRows(Tensor::Dense(g.data(), DType::kF32, 3, 21),
                       Tensor::Dense(rows.data(), DType::kF32, 2, 21));
  EXPECT_EQ(0, std::memcmp(rows.data(), g.data() + 42, 21 * 4));
  EXPECT_EQ(0, std::memcmp(rows.data() + 21, g.data(), 21 * 4));
}

TEST(CpuOpsTest, WriteKvLandsInTheSlotAndZeroKvBlocksClearsIt) {
  auto be = BackendWithKv();
  ASSERT_TRUE(be->BeginBatch(OneSeq(3, 2)).ok());  // positions 3 (block 5, off 3), 4 (block 2)
  auto k = RandomFloats(2 * 16, 9), v = RandomFloats(2 * 16, 10);
  be->WriteKv(1, Tensor::Dense(k.data(), DType::kF32, 2, 16),
              Tensor::Dense(v.data(), DType::kF32, 2, 16));
  std::vector<std::byte> kb, vb;
  ASSERT_TRUE(be->ReadKvBlock(1, 5, &kb, &vb).ok());
  ASSERT_EQ(kb.size(), 4u * 16 * 4);
  EXPECT_EQ(0, std::memcmp(kb.data() + 3 * 64, k.data(), 64));
  EXPECT_EQ(0, std::memcmp(vb.data() + 3 * 64, v.data(), 64));
  ASSERT_TRUE(be->ReadKvBlock(1, 2, &kb, &vb).ok());
  EXPECT_EQ(0, std::memcmp(kb.data(), k.data() + 16, 64));
  ASSERT_TRUE(be->ReadKvBlock(0, 5, &kb, &vb).ok());  // other layer untouched
  EXPECT_EQ(std::vector<std::byte>(kb.size()), kb);

  const int32_t blocks[] = {5};
  ASSERT_TRUE(be->ZeroKvBlocks(blocks).ok());
  ASSERT_TRUE(be->ReadKvBlock(1, 5, &kb, &vb).ok());
  EXPECT_EQ(std::vector<std::byte>(kb.size()), kb);
  EXPECT_EQ(std::vector<std::byte>(vb.size()), vb);
  ASSERT_TRUE(be->ReadKvBlock(1, 2, &kb, &vb).ok());  // not zeroed
  EXPECT_EQ(0, std::memcmp(kb.data(), k.data() + 16, 64));

  const int32_t bad[] = {8};
  EXPECT_EQ(be->ZeroKvBlocks(bad).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(be->ReadKvBlock(2, 0, &kb, &vb).code(), StatusCode::kInvalidArgument);
}

TEST(CpuOpsTest, F16KvCacheStoresRoundedHalvesAtHalfTheBytes) {
  auto be = MakeBackend(2);
  KvCacheSpec spec = SmallSpec();
  spec.dtype = DType::kF16;
  ASSERT_TRUE(be->InitKvCache(spec).ok());
  EXPECT_EQ(be->kv_spec().BlockBytes(), 4u * 16 * 2);
  ASSERT_TRUE(be->BeginBatch(OneSeq(3, 2)).ok());  // positions 3 (block 5, off 3), 4 (block 2)
  // Values that need rounding (ties included) and one beyond F16's range (-> inf).
  auto k = RandomFloats(2 * 16, 11), v = RandomFloats(2 * 16, 12);
  k[5] = 1.0f + 1.0f / 2048;  // a tie: rounds to even (1.0)
  v[7] = 70000.0f;            // above 65504: inf
  be->WriteKv(1, Tensor::Dense(k.data(), DType::kF32, 2, 16),
              Tensor::Dense(v.data(), DType::kF32, 2, 16));
  std::vector<std::byte> kb, vb;
  ASSERT_TRUE(be->ReadKvBlock(1, 5, &kb, &vb).ok());
  ASSERT_EQ(kb.size(), 4u * 16 * 2);
  for (int e = 0; e < 16; ++e) {
    uint16_t kh, vh;
    std::memcpy(&kh, kb.data() + (3 * 16 + e) * 2, 2);
    std::memcpy(&vh, vb.data() + (3 * 16 + e) * 2, 2);
    EXPECT_EQ(kh, FloatToHalf(k[e])) << "k " << e;
    EXPECT_EQ(vh, FloatToHalf(v[e])) << "v " << e;
  }
  uint16_t tie, big;
  std::memcpy(&tie, kb.data() + (3 * 16 + 5) * 2, 2);
  std::memcpy(&big, vb.data() + (3 * 16 + 7) * 2, 2);
  EXPECT_EQ(HalfToFloat(tie), 1.0f);
  EXPECT_TRUE(std::isinf(HalfToFloat(big)));
  ASSERT_TRUE(be->ReadKvBlock(1, 2, &kb, &vb).ok());
  uint16_t first;
  std::memcpy(&first, kb.data(), 2);
  EXPECT_EQ(first, FloatToHalf(k[16]));
  const int32_t blocks[] = {5};
  ASSERT_TRUE(be->ZeroKvBlocks(blocks).ok());
  ASSERT_TRUE(be->ReadKvBlock(1, 5, &kb, &vb).ok());
  EXPECT_EQ(std::vector<std::byte>(kb.size()), kb);
  EXPECT_EQ(std::vector<std::byte>(vb.size()), vb);
}

TEST(CpuOpsTest, BeginBatchRejectsInconsistentInput) {
  auto be = MakeBackend(1);
  EXPECT_EQ(be->BeginBatch(OneSeq(0, 2)).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(be->InitKvCache(SmallSpec()).ok());
  ASSERT_TRUE(be->BeginBatch(OneSeq(2, 3)).ok());
  auto expect_bad = [&](ForwardBatch b, const char* what) {
    EXPECT_EQ(be->BeginBatch(b).code(), StatusCode::kInvalidArgument) << what;
  };
  ForwardBatch b = OneSeq(2, 3);
  b.positions.pop_back();
  expect_bad(b, "positions length");
  b = OneSeq(2, 3);
  b.positions[1] = 9;
  expect_bad(b, "position beyond seq_len");
  b = OneSeq(2, 3);
  b.slot_mapping[0] = 1;
  expect_bad(b, "slot outside the sequence's blocks");
  b = OneSeq(2, 3);
  b.block_tables[0] = 8;
  expect_bad(b, "block id outside the pool");
  b = OneSeq(2, 3);
  b.block_tables[1] = -1;
  expect_bad(b, "hole inside the used blocks");
  b = OneSeq(2, 3);
  b.logits_indices = {3};
  expect_bad(b, "logits index");
  b = OneSeq(2, 3);
  b.query_start_loc = {0, 2};
  expect_bad(b, "query_start_loc");
  b = OneSeq(2, 3);
  b.seq_lens = {17};
  expect_bad(b, "seq_len beyond the block table");
  b = OneSeq(2, 3);
  b.token_ids[0] = -1;
  expect_bad(b, "negative token");
}

TEST(CpuOpsTest, MemoryWeightsAndKvSpec) {
  auto be = MakeBackend(1);
  auto buf = be->Allocate(100);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*buf)->data()) % 64, 0u);
  EXPECT_EQ((*buf)->bytes(), 100u);

  auto vec = MakeWeight({1.5f, -2.25f, 3.0f}, {3}, DType::kBF16);
  auto t = be->LoadWeight(vec->tensor, WeightKind::kVector);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_NE(t->data, vec->tensor.data);
  std::vector<float> host(3);
  ASSERT_TRUE(be->CopyToHostF32(*t, host.data()).ok());
  EXPECT_EQ(host, (std::vector<float>{1.5f, -2.25f, 3.0f}));
  EXPECT_EQ(be->LoadWeight(vec->tensor, WeightKind::kMatrix).status().code(),
            StatusCode::kInvalidArgument);  // 1-D matrix
  auto mat = MakeWeight(RandomFloats(6, 1), {2, 3}, DType::kF16);
  mat->tensor.nbytes -= 2;
  EXPECT_EQ(be->LoadWeight(mat->tensor, WeightKind::kMatrix).status().code(),
            StatusCode::kInvalidArgument);  // size mismatch

  std::vector<float> vals = {1, 2, 3, 4, 5, 6};
  EXPECT_FALSE(be->UploadF32(vals, 4, 2).ok());
  auto up = be->UploadF32(vals, 3, 2);
  ASSERT_TRUE(up.ok());
  Tensor strided{up->data, DType::kF32, 3, 1, 2};  // first column
  ASSERT_TRUE(be->CopyToHostF32(strided, host.data()).ok());
  EXPECT_EQ(host, (std::vector<float>{1, 3, 5}));

  KvCacheSpec bf16 = SmallSpec();
  bf16.dtype = DType::kBF16;
  EXPECT_EQ(be->InitKvCache(bf16).code(), StatusCode::kUnimplemented);
  KvCacheSpec bad_gqa = SmallSpec();
  bad_gqa.num_heads = 3;
  EXPECT_EQ(be->InitKvCache(bad_gqa).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(be->InitKvCache(SmallSpec()).ok());
  EXPECT_EQ(be->kv_spec().num_blocks, 8);
  EXPECT_EQ(be->InitKvCache(SmallSpec()).code(), StatusCode::kFailedPrecondition);
  std::vector<std::byte> kb, vb;
  ASSERT_TRUE(be->ReadKvBlock(1, 7, &kb, &vb).ok());
  EXPECT_EQ(std::vector<std::byte>(kb.size()), kb) << "the cache starts zeroed";
}

}  // namespace
}  // namespace llmux::cpu
