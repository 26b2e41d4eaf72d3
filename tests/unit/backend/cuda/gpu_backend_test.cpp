// CUDA backend creation, weights, KV pool and batch validation.
#include <gtest/gtest.h>

#include <string>

#include "gpu_test_util.h"
#include "llmux/backend.h"
#include "reference_ops.h"

namespace llmux {
namespace {

TEST(GpuBackend, CreateFailsAsUnavailableWithOneLineOrSucceeds) {
  auto b = CreateCudaBackend({});
  if (b.ok()) {
    EXPECT_EQ((*b)->Name(), "cuda");
    EXPECT_EQ((*b)->ActivationDType(), DType::kBF16);
    return;
  }
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(b.status().message().find('\n'), std::string::npos);
#ifdef LLMUX_HAVE_CUDA
  EXPECT_EQ(b.status().message().rfind("no CUDA device: ", 0), 0u) << b.status().message();
#endif
}

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;

TEST(GpuBackend, BadDeviceIndexIsUnavailable) {
  LLMUX_CUDA_BACKEND_OR_SKIP(probe);
  CudaBackendOptions o;
  o.device = 1 << 20;
  auto b = CreateCudaBackend(o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
}

TEST(GpuBackend, LoadWeightConvertsMatricesToBf16AndVectorsToF32) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const std::vector<float> vals = {1.0f, -2.5f, 3.14159f, 1e-3f, 65504.0f, -0.1f};
  HostTensor h{"w", DType::kF32, {2, 3}, reinterpret_cast<const std::byte*>(vals.data()), 24};
  auto m = b->LoadWeight(h, WeightKind::kMatrix);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->dtype, DType::kBF16);
  EXPECT_EQ(m->rows, 2);
  EXPECT_EQ(m->cols, 3);
  const auto got = dev.Get(*m);
  for (size_t i = 0; i < vals.size(); ++i) {
    EXPECT_EQ(got[i], Bf16ToFloat(FloatToBf16(vals[i]))) << i;
  }
  std::vector<uint16_t> halves;
  for (float v : vals) halves.push_back(FloatToHalf(v));
  HostTensor hv{"v", DType::kF16, {6}, reinterpret_cast<const std::byte*>(halves.data()), 12};
  auto v = b->LoadWeight(hv, WeightKind::kVector);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->dtype, DType::kF32);
  EXPECT_EQ(v->rows, 1);
  const auto gv = dev.Get(*v);
  for (size_t i = 0; i < vals.size(); ++i) EXPECT_EQ(gv[i], HalfToFloat(halves[i])) << i;

  HostTensor bad{"bad", DType::kF32, {2, 3}, reinterpret_cast<const std::byte*>(vals.data()), 20};
  EXPECT_EQ(b->LoadWeight(bad, WeightKind::kMatrix).status().code(),
            StatusCode::kInvalidArgument);
}

KvCacheSpec SmallSpec() {
  KvCacheSpec s;
  s.num_layers = 2;
  s.num_blocks = 8;
  s.block_size = 4;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.head_dim = 8;
  s.dtype = DType::kBF16;
  return s;
}

TEST(GpuBackend, KvPoolStartsZeroedAndInitsOnce) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  ASSERT_TRUE(b->InitKvCache(SmallSpec()).ok());
  EXPECT_EQ(b->InitKvCache(SmallSpec()).code(), StatusCode::kFailedPrecondition);
  std::vector<std::byte> k, v;
  ASSERT_TRUE(b->ReadKvBlock(1, 7, &k, &v).ok());
  ASSERT_EQ(k.size(), SmallSpec().BlockBytes());
  for (auto x : k) ASSERT_EQ(x, std::byte{0});
  EXPECT_EQ(b->ReadKvBlock(2, 0, &k, &v).code(), StatusCode::kInvalidArgument);
  const int32_t bad[] = {8};
  EXPECT_EQ(b->ZeroKvBlocks(bad).code(), StatusCode::kInvalidArgument);
}

TEST(GpuBackend, RejectsUnsupportedHeadShapes) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  KvCacheSpec s = SmallSpec();
  s.head_dim = 12;
  EXPECT_EQ(b->InitKvCache(s).code(), StatusCode::kInvalidArgument);
  s = SmallSpec();
  s.num_heads = 6;
  s.num_kv_heads = 4;
  EXPECT_EQ(b->InitKvCache(s).code(), StatusCode::kInvalidArgument);
}

TEST(GpuBackend, BeginBatchValidatesItsInput) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  ForwardBatch fb;
  fb.token_ids = {5, 6};
  fb.positions = {0, 1};
  fb.slot_mapping = {0, 1};
  fb.query_start_loc = {0, 2};
  fb.seq_lens = {2};
  fb.block_tables = {3, -1};
  fb.max_blocks_per_seq = 2;
  fb.logits_indices = {1};
  EXPECT_EQ(b->BeginBatch(fb).code(), StatusCode::kFailedPrecondition);  // no KV pool yet
  ASSERT_TRUE(b->InitKvCache(SmallSpec()).ok());
  EXPECT_TRUE(b->BeginBatch(fb).ok());

  ForwardBatch bad = fb;
  bad.positions = {1, 2};
  EXPECT_EQ(b->BeginBatch(bad).code(), StatusCode::kInvalidArgument);
  bad = fb;
  bad.block_tables = {8, -1};
  EXPECT_EQ(b->BeginBatch(bad).code(), StatusCode::kInvalidArgument);
  bad = fb;
  bad.slot_mapping = {0, 32};
  EXPECT_EQ(b->BeginBatch(bad).code(), StatusCode::kInvalidArgument);
  bad = fb;
  bad.logits_indices = {2};
  EXPECT_EQ(b->BeginBatch(bad).code(), StatusCode::kInvalidArgument);
  bad = fb;
  bad.query_start_loc = {0, 1};
  EXPECT_EQ(b->BeginBatch(bad).code(), StatusCode::kInvalidArgument);
  bad = fb;
  bad.seq_lens = {9};  // more than two blocks of four
  EXPECT_EQ(b->BeginBatch(bad).code(), StatusCode::kInvalidArgument);
}

TEST(GpuBackend, WriteKvLandsInSlotsAndZeroKvBlocksClearsThem) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const KvCacheSpec spec = SmallSpec();
  ASSERT_TRUE(b->InitKvCache(spec).ok());
  DeviceTensors dev(b.get());
  // Three tokens of one sequence whose blocks are 5 then 2 (a non-contiguous table).
  ForwardBatch fb;
  fb.token_ids = {1, 2, 3, 4, 5};
  fb.positions = {0, 1, 2, 3, 4};
  fb.slot_mapping = {20, 21, 22, 23, 8};
  fb.query_start_loc = {0, 5};
  fb.seq_lens = {5};
  fb.block_tables = {5, 2, -1};
  fb.max_blocks_per_seq = 3;
  ASSERT_TRUE(b->BeginBatch(fb).ok());
  const int row = spec.num_kv_heads * spec.head_dim;
  const auto kv = cuda::testing::RandomBf16(5 * row, 11);
  const auto vv = cuda::testing::RandomBf16(5 * row, 12);
  Tensor k = dev.Upload(kv, DType::kBF16, 5, row, 3);  // strided source rows
  Tensor v = dev.Upload(vv, DType::kBF16, 5, row);
  b->WriteKv(1, k, v);
  std::vector<std::byte> kb, vb;
  ASSERT_TRUE(b->ReadKvBlock(1, 2, &kb, &vb).ok());
  const auto* k16 = reinterpret_cast<const uint16_t*>(kb.data());
  const auto* v16 = reinterpret_cast<const uint16_t*>(vb.data());
  for (int i = 0; i < row; ++i) {  // token 4 at offset 0 of block 2
    EXPECT_EQ(Bf16ToFloat(k16[i]), kv[4 * row + i]) << i;
    EXPECT_EQ(Bf16ToFloat(v16[i]), vv[4 * row + i]) << i;
  }
  for (int i = row; i < spec.block_size * row; ++i) EXPECT_EQ(k16[i], 0) << i;
  ASSERT_TRUE(b->ReadKvBlock(0, 2, &kb, &vb).ok());  // other layer untouched
  for (auto x : kb) ASSERT_EQ(x, std::byte{0});
  const int32_t blocks[] = {5, 2};
  ASSERT_TRUE(b->ZeroKvBlocks(blocks).ok());
  ASSERT_TRUE(b->ReadKvBlock(1, 5, &kb, &vb).ok());
  for (auto x : kb) ASSERT_EQ(x, std::byte{0});
  for (auto x : vb) ASSERT_EQ(x, std::byte{0});
}
#endif  // LLMUX_HAVE_CUDA

}  // namespace
}  // namespace llmux
