// Weight fusion at load (model/weight_fusion.h): byte-exact row concatenation,
// clear errors, and a fused GEMM on the CPU backend bit-identical to the
// separate GEMMs it replaces.
#include "model/weight_fusion.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "llmux/backend.h"

namespace llmux {
namespace {

struct Part {
  std::vector<std::byte> bytes;
  HostTensor t;
};

// A bf16 [rows, cols] tensor of seeded values.
Part Bf16Part(const std::string& name, int64_t rows, int64_t cols, uint32_t seed) {
  Part p;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  p.bytes.resize(static_cast<size_t>(rows * cols) * 2);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const uint16_t h = FloatToBf16(u(rng));
    std::memcpy(p.bytes.data() + 2 * i, &h, 2);
  }
  p.t = HostTensor{name, DType::kBF16, {rows, cols}, p.bytes.data(), p.bytes.size()};
  return p;
}

TEST(WeightFusionTest, StacksRowsInOrderByteForByte) {
  Part q = Bf16Part("q", 5, 7, 1), k = Bf16Part("k", 2, 7, 2), v = Bf16Part("v", 3, 7, 3);
  const HostTensor* parts[] = {&q.t, &k.t, &v.t};
  auto fused = ConcatRows("qkv", parts);
  ASSERT_TRUE(fused.ok()) << fused.status().ToString();
  EXPECT_EQ(fused->tensor.name, "qkv");
  EXPECT_EQ(fused->tensor.dtype, DType::kBF16);
  EXPECT_EQ(fused->tensor.shape, (std::vector<int64_t>{10, 7}));
  ASSERT_EQ(fused->tensor.nbytes, 10u * 7u * 2u);
  const std::byte* d = fused->tensor.data;
  EXPECT_EQ(std::memcmp(d, q.bytes.data(), q.bytes.size()), 0);
  EXPECT_EQ(std::memcmp(d + q.bytes.size(), k.bytes.data(), k.bytes.size()), 0);
  EXPECT_EQ(std::memcmp(d + q.bytes.size() + k.bytes.size(), v.bytes.data(), v.bytes.size()), 0);
  // The bytes stay where they are when the owner moves.
  OwnedHostTensor moved = std::move(fused).value();
  EXPECT_EQ(moved.tensor.data, moved.bytes.get());
}

TEST(WeightFusionTest, StacksVectors) {
  std::vector<float> a = {1, 2, 3}, b = {4, 5};
  HostTensor ta{"bq", DType::kF32, {3}, reinterpret_cast<const std::byte*>(a.data()), 12};
  HostTensor tb{"bk", DType::kF32, {2}, reinterpret_cast<const std::byte*>(b.data()), 8};
  const HostTensor* parts[] = {&ta, &tb};
  auto fused = ConcatRows("b", parts);
  ASSERT_TRUE(fused.ok()) << fused.status().ToString();
  EXPECT_EQ(fused->tensor.shape, (std::vector<int64_t>{5}));
  std::vector<float> got(5);
  std::memcpy(got.data(), fused->tensor.data, 20);
  EXPECT_EQ(got, (std::vector<float>{1, 2, 3, 4, 5}));
}

// Rows are copied whole without interpreting them: a row encoding whose byte
// length is not cols * element size (a block-quantised row: 34 bytes per 32
// values) fuses all the same.
TEST(WeightFusionTest, TreatsRowsAsOpaqueBytes) {
  std::vector<std::byte> a(2 * 34), b(3 * 34);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::byte>(i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>(200 - i);
  HostTensor ta{"gate", DType::kBF16, {2, 32}, a.data(), a.size()};
  HostTensor tb{"up", DType::kBF16, {3, 32}, b.data(), b.size()};
  const HostTensor* parts[] = {&ta, &tb};
  auto fused = ConcatRows("gate_up", parts);
  ASSERT_TRUE(fused.ok()) << fused.status().ToString();
  EXPECT_EQ(fused->tensor.shape, (std::vector<int64_t>{5, 32}));
  ASSERT_EQ(fused->tensor.nbytes, 5u * 34u);
  EXPECT_EQ(std::memcmp(fused->tensor.data, a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(fused->tensor.data + a.size(), b.data(), b.size()), 0);
}

TEST(WeightFusionTest, RejectsPartsThatDoNotStack) {
  Part q = Bf16Part("model.layers.0.self_attn.q_proj.weight", 4, 8, 1);
  Part narrow = Bf16Part("model.layers.0.self_attn.k_proj.weight", 2, 6, 2);
  const HostTensor* cols[] = {&q.t, &narrow.t};
  auto s = ConcatRows("qkv", cols);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("k_proj"), std::string::npos) << s.status().message();

  std::vector<float> f(2 * 8);
  HostTensor f32{"model.layers.0.self_attn.v_proj.weight",
                 DType::kF32,
                 {2, 8},
                 reinterpret_cast<const std::byte*>(f.data()),
                 f.size() * 4};
  const HostTensor* dtypes[] = {&q.t, &f32};
  s = ConcatRows("qkv", dtypes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("v_proj.weight' is f32"), std::string::npos)
      << s.status().message();

  HostTensor ragged = q.t;
  ragged.nbytes -= 1;  // not whole rows
  const HostTensor* r[] = {&ragged};
  EXPECT_FALSE(ConcatRows("x", r).ok());
  EXPECT_FALSE(ConcatRows("x", std::span<const HostTensor* const>()).ok());
}

// The fused GEMM's output columns are bit-identical to the separate GEMMs'
// outputs on the CPU backend (the project's reference), at several batch sizes
// and with a K tail.
TEST(WeightFusionTest, FusedMatMulIsBitIdenticalToSeparateOnCpu) {
  auto be = CreateCpuBackend(CpuBackendOptions{.threads = 2});
  ASSERT_TRUE(be.ok());
  Backend& b = **be;
  constexpr int64_t kK = 100, kQ = 40, kKv = 24;
  Part q = Bf16Part("q", kQ, kK, 11), k = Bf16Part("k", kKv, kK, 12),
       v = Bf16Part("v", kKv, kK, 13);
  const HostTensor* parts[] = {&q.t, &k.t, &v.t};
  auto fused_host = ConcatRows("qkv", parts);
  ASSERT_TRUE(fused_host.ok());
  const Tensor wq = b.LoadWeight(q.t, WeightKind::kMatrix).value();
  const Tensor wk = b.LoadWeight(k.t, WeightKind::kMatrix).value();
  const Tensor wv = b.LoadWeight(v.t, WeightKind::kMatrix).value();
  const Tensor wqkv = b.LoadWeight(fused_host->tensor, WeightKind::kMatrix).value();
  std::vector<float> bias(kQ + 2 * kKv);
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.01f * static_cast<float>(i) - 0.3f;
  const Tensor b_all = b.UploadF32(bias, 1, kQ + 2 * kKv).value();
  const Tensor bq = b.UploadF32(std::span(bias).subspan(0, kQ), 1, kQ).value();
  const Tensor bk = b.UploadF32(std::span(bias).subspan(kQ, kKv), 1, kKv).value();
  const Tensor bv = b.UploadF32(std::span(bias).subspan(kQ + kKv, kKv), 1, kKv).value();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (int64_t m : {1, 3, 7, 64}) {
    std::vector<float> x(m * kK);
    for (float& e : x) e = u(rng);
    const Tensor xt = Tensor::Dense(x.data(), DType::kF32, m, kK);
    std::vector<float> fused(m * (kQ + 2 * kKv)), sq(m * kQ), sk(m * kKv), sv(m * kKv);
    const Tensor out = Tensor::Dense(fused.data(), DType::kF32, m, kQ + 2 * kKv);
    b.MatMul(xt, wqkv, &b_all, out);
    b.MatMul(xt, wq, &bq, Tensor::Dense(sq.data(), DType::kF32, m, kQ));
    b.MatMul(xt, wk, &bk, Tensor::Dense(sk.data(), DType::kF32, m, kKv));
    b.MatMul(xt, wv, &bv, Tensor::Dense(sv.data(), DType::kF32, m, kKv));
    for (int64_t r = 0; r < m; ++r) {
      const float* row = fused.data() + r * (kQ + 2 * kKv);
      EXPECT_EQ(std::memcmp(row, sq.data() + r * kQ, kQ * 4), 0) << "q, M=" << m << " row " << r;
      EXPECT_EQ(std::memcmp(row + kQ, sk.data() + r * kKv, kKv * 4), 0) << "k, M=" << m;
      EXPECT_EQ(std::memcmp(row + kQ + kKv, sv.data() + r * kKv, kKv * 4), 0) << "v, M=" << m;
    }
    // Column views of the fused output address exactly those columns.
    const Tensor kview = out.ColSlice(kQ, kKv);
    EXPECT_EQ(kview.stride, kQ + 2 * kKv);
    EXPECT_EQ(static_cast<float*>(kview.data), fused.data() + kQ);
  }
}

}  // namespace
}  // namespace llmux
