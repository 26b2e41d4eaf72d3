// MatMul: exactness against a double-precision reference and batch invariance (bit-identical
// rows for any M and thread count) for F32, F16, BF16 and Q8_0 weights; weights prepacked at
// load give the bits of the row-major weight.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>

#include "backend/cpu/matmul.h"
#include "backend/cpu/packed_weight.h"
#include "backend/cpu/simd.h"
#include "unit/backend/cpu/test_util.h"

namespace llmux::cpu {
namespace {

using testing::MakeBackend;
using testing::MakeWeight;
using testing::RandomFloats;

struct Case {
  DType dtype;
  int64_t n;
  int64_t k;
  bool bias;
};

std::string Name(const Case& c) {
  std::ostringstream os;
  os << DTypeName(c.dtype) << "_n" << c.n << "_k" << c.k << (c.bias ? "_bias" : "");
  return os.str();
}

class MatMulTest : public ::testing::TestWithParam<Case> {};

// out rows [first, first + m) of x computed as one MatMul call.
std::vector<float> RunMatMul(Backend& be, const std::vector<float>& x, int64_t first, int64_t m,
                       int64_t k, const Tensor& w, const Tensor* bias) {
  std::vector<float> out(m * w.rows, -7.0f);
  Tensor xt = Tensor::Dense(const_cast<float*>(x.data()) + first * k, DType::kF32, m, k);
  be.MatMul(xt, w, bias, Tensor::Dense(out.data(), DType::kF32, m, w.rows));
  return out;
}

TEST_P(MatMulTest, MatchesReferenceAndIsBatchInvariant) {
  const Case c = GetParam();
  constexpr int64_t kM = 64;
  const auto x = RandomFloats(kM * c.k, 11);
  auto img = MakeWeight(RandomFloats(c.n * c.k, 12), {c.n, c.k}, c.dtype);
  const auto bias_values = RandomFloats(c.n, 13);

  std::vector<std::vector<float>> single(kM);  // row m computed alone, 1 thread
  std::vector<float> all_by_threads[2];
  for (int threads : {1, 2}) {
    auto be = MakeBackend(threads);
    ASSERT_NE(be, nullptr);
    auto w = be->LoadWeight(img->tensor, WeightKind::kMatrix);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_NE(w->data, img->tensor.data) << "matrices are packed copies, not aliased";
    auto b = be->UploadF32(bias_values, 1, c.n);
    ASSERT_TRUE(b.ok());
    const Tensor* bias = c.bias ? &b.value() : nullptr;

    for (int64_t m = 0; m < kM; ++m) {
      auto row = RunMatMul(*be, x, m, 1, c.k, *w, bias);
      if (threads == 1) {
        single[m] = row;
      } else {
        ASSERT_EQ(0, std::memcmp(row.data(), single[m].data(), 4 * c.n)) << "M=1 row " << m;
      }
    }
    auto all = RunMatMul(*be, x, 0, kM, c.k, *w, bias);
    all_by_threads[threads - 1] = all;
    // Sub-batches of several sizes at several offsets.
    for (auto [first, m] : {std::pair<int64_t, int64_t>{0, 8}, {3, 5}, {17, 13}, {50, 2},
                            {40, 3}, {9, 4}, {0, 64}}) {
      auto part = RunMatMul(*be, x, first, m, c.k, *w, bias);
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_EQ(0, std::memcmp(part.data() + r * c.n, single[first + r].data(), 4 * c.n))
            << "row " << first + r << " in a batch of " << m << " with " << threads
            << " threads differs from the row alone";
      }
    }
  }
  ASSERT_EQ(0, std::memcmp(all_by_threads[0].data(), all_by_threads[1].data(), 4 * kM * c.n));

  // Reference in double on the dtype-rounded weights. Stated tolerance: each of the 16 lanes
  // sums ceil(K / 16) products and the horizontal tree adds 4 levels, so the error is below
  // (K / 16 + 6) * 2^-24 * sum_k |x w| (+ |bias| * 2^-24); we allow twice that.
  for (int64_t m = 0; m < kM; ++m) {
    for (int64_t n = 0; n < c.n; ++n) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < c.k; ++k) {
        double p = static_cast<double>(x[m * c.k + k]) * img->rounded[n * c.k + k];
        ref += p;
        mag += std::fabs(p);
      }
      if (c.bias) {
        ref += bias_values[n];
        mag += std::fabs(bias_values[n]);
      }
      const double tol = 2.0 * (c.k / 16.0 + 6.0) * std::ldexp(1.0, -24) * mag;
      ASSERT_NEAR(single[m][n], ref, tol) << "m=" << m << " n=" << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MatMulTest,
    ::testing::Values(Case{DType::kF32, 77, 288, false}, Case{DType::kF16, 77, 288, true},
                      Case{DType::kBF16, 77, 288, false}, Case{DType::kF32, 100, 100, true},
                      Case{DType::kF16, 100, 100, false}, Case{DType::kBF16, 130, 37, true},
                      Case{DType::kF32, 7, 5, false}, Case{DType::kF16, 96, 576, false},
                      Case{DType::kQ8_0, 77, 288, true}, Case{DType::kQ8_0, 96, 576, false},
                      Case{DType::kQ8_0, 5, 32, false}),
    [](const auto& info) { return Name(info.param); });

// A Q8_0 weight gives the bits of the F32 matrix it dequantizes to, at every M (decode streams
// the blocks, prefill packs them into F32 panels; both must agree with F32).
TEST(MatMulQ8Test, BitIdenticalToItsDequantizedF32Matrix) {
  constexpr int64_t kM = 12, kN = 101, kK = 320;
  const auto x = RandomFloats(kM * kK, 31);
  auto q8 = MakeWeight(RandomFloats(kN * kK, 32, -3.0f, 3.0f), {kN, kK}, DType::kQ8_0);
  auto f32 = MakeWeight(q8->rounded, {kN, kK}, DType::kF32);
  auto be = MakeBackend(2);
  auto wq = be->LoadWeight(q8->tensor, WeightKind::kMatrix);
  auto wf = be->LoadWeight(f32->tensor, WeightKind::kMatrix);
  ASSERT_TRUE(wq.ok() && wf.ok());
  EXPECT_EQ(wq->dtype, DType::kQ8_0);
  for (int64_t m : {1, 3, 4, 5, 12}) {
    auto a = RunMatMul(*be, x, 0, m, kK, *wq, nullptr);
    auto b = RunMatMul(*be, x, 0, m, kK, *wf, nullptr);
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), 4 * a.size())) << "M=" << m;
  }
  // The embedding lookup dequantizes the same way.
  auto emb = be->LoadWeight(q8->tensor, WeightKind::kEmbedding);
  ASSERT_TRUE(emb.ok());
  ForwardBatch fb;
  fb.token_ids = {7, 0, 100};
  fb.positions = {0, 1, 2};
  fb.slot_mapping = {0, 1, 2};
  fb.query_start_loc = {0, 3};
  fb.seq_lens = {3};
  fb.block_tables = {0};
  fb.max_blocks_per_seq = 1;
  ASSERT_TRUE(be->InitKvCache(KvCacheSpec{1, 1, 16, 1, 1, 2, DType::kF32}).ok());
  ASSERT_TRUE(be->BeginBatch(fb).ok());
  std::vector<float> rows(3 * kK);
  be->Embedding(*emb, Tensor::Dense(rows.data(), DType::kF32, 3, kK));
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(0, std::memcmp(rows.data() + r * kK, q8->rounded.data() + fb.token_ids[r] * kK,
                             4 * kK))
        << "token " << fb.token_ids[r];
  }
}

TEST(MatMulQ8Test, LoadWeightRejectsMalformedQ8) {
  auto be = MakeBackend(1);
  auto img = MakeWeight(RandomFloats(4 * 64, 33), {4, 64}, DType::kQ8_0);
  HostTensor t = img->tensor;
  t.nbytes -= 1;
  EXPECT_EQ(be->LoadWeight(t, WeightKind::kMatrix).status().code(), StatusCode::kInvalidArgument);
  t = img->tensor;
  t.shape = {8, 32};  // same bytes, but every row is 32 elements: accepted
  EXPECT_TRUE(be->LoadWeight(t, WeightKind::kMatrix).ok());
  t.shape = {16, 16};  // a row must be whole blocks
  auto bad = be->LoadWeight(t, WeightKind::kMatrix);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("multiple of 32"), std::string::npos);
  t = img->tensor;
  t.shape = {256};
  EXPECT_EQ(be->LoadWeight(t, WeightKind::kVector).status().code(), StatusCode::kInvalidArgument);
}

// The packed layout holds every element exactly: unpacking gives the dtype-rounded values.
TEST(PackedWeightTest, UnpacksToTheRoundedValues) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{77, 288}, {13, 64}, {25, 37}, {12, 48},
                        {1, 17}}) {
      if (dt == DType::kQ8_0 && k % 32 != 0) continue;
      auto img = MakeWeight(RandomFloats(n * k, 41), {n, k}, dt);
      const PackedLayout layout{dt, n, k};
      std::vector<std::byte> buf(layout.bytes(), std::byte{0x5a});
      PackRows(layout, img->tensor.data, k, 0, n, buf.data());
      std::vector<float> out(n * k);
      UnpackRowsF32(PackedWeight{layout, buf.data()}, 0, n, out.data());
      ASSERT_EQ(0, std::memcmp(out.data(), img->rounded.data(), 4 * out.size()))
          << DTypeName(dt) << " [" << n << ", " << k << "]";
      EXPECT_EQ(layout.bytes(), dt == DType::kQ8_0 ? img->tensor.nbytes
                                                   : DTypeBytes(dt, n * ((k + 31) / 32 * 32)));
    }
  }
}

// The Q8_0 panel layout (packed_weight.h): per group, each half of a panel (rows 0..5, 6..11)
// holds its rows' F16 scales side by side, then their int8; every byte of the group is one
// scale byte or one int8 of exactly one row, and the 34 bytes per row and group stay.
TEST(PackedWeightTest, Q8PanelGroupsKeepEachHalfsScalesTogether) {
  // Fixed offsets of a full panel and of a 5-row last panel.
  EXPECT_EQ(Q8Offsets(12, 0).scale, 0);
  EXPECT_EQ(Q8Offsets(12, 0).q, 12);
  EXPECT_EQ(Q8Offsets(12, 5).scale, 10);
  EXPECT_EQ(Q8Offsets(12, 5).q, 12 + 5 * 32);
  EXPECT_EQ(Q8Offsets(12, 6).scale, 6 * 34);
  EXPECT_EQ(Q8Offsets(12, 6).q, 6 * 34 + 12);
  EXPECT_EQ(Q8Offsets(12, 11).q, 6 * 34 + 12 + 5 * 32);
  EXPECT_EQ(Q8Offsets(8, 7).scale, 6 * 34 + 2);
  EXPECT_EQ(Q8Offsets(8, 7).q, 6 * 34 + 4 + 32);
  EXPECT_EQ(Q8Offsets(5, 4).q, 10 + 4 * 32);
  for (auto [n, k] : {std::pair<int64_t, int64_t>{29, 96}, {12, 32}, {7, 64}, {20, 32}, {1, 32}}) {
    auto img = MakeWeight(RandomFloats(n * k, 44), {n, k}, DType::kQ8_0);
    const PackedLayout layout{DType::kQ8_0, n, k};
    ASSERT_EQ(layout.bytes(), img->tensor.nbytes);
    std::vector<std::byte> buf(layout.bytes(), std::byte{0x5a});
    PackRows(layout, img->tensor.data, k, 0, n, buf.data());
    const auto* src = static_cast<const std::byte*>(img->tensor.data);
    const int64_t groups = k / 32;
    for (int64_t p = 0; p * kPanelRows < n; ++p) {
      const int64_t rows = layout.PanelRows(p);
      for (int64_t g = 0; g < groups; ++g) {
        const std::byte* group = buf.data() + layout.PanelOffset(p) + g * rows * kQ8BlockBytes;
        std::vector<int> owners(rows * kQ8BlockBytes, 0);
        for (int64_t j = 0; j < rows; ++j) {
          const std::byte* block = src + ((p * kPanelRows + j) * groups + g) * kQ8BlockBytes;
          const Q8RowOffsets o = Q8Offsets(rows, j);
          ASSERT_EQ(0, std::memcmp(group + o.scale, block, 2))
              << "[" << n << ", " << k << "] panel " << p << " row " << j << " group " << g;
          ASSERT_EQ(0, std::memcmp(group + o.q, block + 2, 32))
              << "[" << n << ", " << k << "] panel " << p << " row " << j << " group " << g;
          for (int64_t b = 0; b < 2; ++b) ++owners[o.scale + b];
          for (int64_t b = 0; b < 32; ++b) ++owners[o.q + b];
          // The scales of a half are adjacent: row j's follows row j - 1's.
          if (j % kQ8HalfRows != 0) {
            EXPECT_EQ(o.scale, Q8Offsets(rows, j - 1).scale + 2);
          }
        }
        for (int64_t b = 0; b < rows * static_cast<int64_t>(kQ8BlockBytes); ++b) {
          ASSERT_EQ(owners[b], 1) << "[" << n << ", " << k << "] panel " << p << " byte " << b;
        }
      }
    }
  }
}

// Packed Q8_0 weights whose scales are negative, +0 or -0 (with q of both signs), infinite or
// NaN, next to ordinary ones, give every output of Dot(x, d * q) bit for bit in decode and
// prefill tiles, including the sign of a zero weight (x row 0 against weight row 3 sums to -0
// only if d * 0 with d < 0 is -0) and an infinite one (x row 1 against row 13 is +inf, not
// NaN). A faster exact-looking form such as fma(2^23 + 2^15 + 256 q, d / 256, -(2^15 + 2^7) d)
// fails here (docs/performance.md).
TEST(PackedWeightTest, Q8ScalesOfEverySignAndClassGiveTheDotOfDTimesQ) {
  constexpr int64_t kN = 25, kK = 96, kGroups = kK / 32;
  auto img = MakeWeight(RandomFloats(kN * kK, 91, -2.0f, 2.0f), {kN, kK}, DType::kQ8_0);
  std::vector<std::byte> w(static_cast<const std::byte*>(img->tensor.data),
                           static_cast<const std::byte*>(img->tensor.data) + img->tensor.nbytes);
  const auto set_scale = [&](int64_t row, int64_t g, uint16_t bits) {
    std::memcpy(w.data() + (row * kGroups + g) * kQ8BlockBytes, &bits, 2);
  };
  set_scale(1, 0, 0xb800);   // -0.5
  set_scale(7, 1, 0x0000);   // +0 (q of both signs)
  set_scale(8, 1, 0x8000);   // -0
  set_scale(13, 2, 0x7c00);  // +inf
  set_scale(14, 0, 0xfc00);  // -inf
  set_scale(20, 2, 0x7e01);  // NaN
  set_scale(24, 1, 0x0001);  // smallest F16 denormal (positive: the FMA form)
  // Row 3, group 0: d = -2^-24, q = -1 then 0: weights +2^-24 then -0 (d * 0 with d < 0).
  // Row 13, group 2: d = +inf, q = +1: weights +inf.
  const auto set_q = [&](int64_t row, int64_t g, int64_t i, int8_t q) {
    std::memcpy(w.data() + (row * kGroups + g) * kQ8BlockBytes + 2 + i, &q, 1);
  };
  set_scale(3, 0, 0x8001);
  for (int64_t i = 0; i < 32; ++i) set_q(3, 0, i, i < 16 ? -1 : 0);
  for (int64_t i = 0; i < 32; ++i) set_q(13, 2, i, 1);
  std::vector<float> deq(kN * kK);
  for (int64_t r = 0; r < kN; ++r) {
    DequantizeRowQ8_0(w.data() + r * kGroups * kQ8BlockBytes, kK, deq.data() + r * kK);
  }
  const PackedLayout layout{DType::kQ8_0, kN, kK};
  std::vector<std::byte> storage(layout.bytes() + 64);
  auto* buf = reinterpret_cast<std::byte*>(
      (reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t{63});
  PackRows(layout, w.data(), kK, 0, kN, buf);
  const PackedWeight packed{layout, buf};
  // The packed table also unpacks to d * q exactly (NaN compared by bits, like everything).
  std::vector<float> unpacked(kN * kK);
  UnpackRowsF32(packed, 0, kN, unpacked.data());
  ASSERT_EQ(0, std::memcmp(unpacked.data(), deq.data(), 4 * deq.size()));
  ThreadPool pool(2);
  constexpr int64_t kM = 6;
  auto x = RandomFloats(kM * kK, 92);
  // x row 0 against weight row 3: every lane ends at -0 only if the -0 weights are -0: lanes
  // become -0 from products below the smallest denormal (-1e-40 * 2^-24), then add 1 * (-0);
  // every later product is made -0 by the sign of x (no +0 may be added).
  for (int64_t k = 0; k < kK; ++k) {
    const float wk = deq[3 * kK + k];
    x[k] = k < 16 ? -1e-40f : k < 32 ? 1.0f : (std::signbit(wk) ? 0.0f : -0.0f);
  }
  // x row 1 against weight row 13: all products of its +inf weights are +inf: out = +inf.
  for (int64_t k = 0; k < kK; ++k) x[kK + k] = 1.0f;
  for (int64_t m : {1, 2, 3, 6}) {
    std::vector<float> out(m * kN, -7.0f);
    MatMulArgs a;
    a.x = x.data();
    a.x_stride = kK;
    a.packed = &packed;
    a.w_dtype = DType::kQ8_0;
    a.out = out.data();
    a.out_stride = kN;
    a.M = m;
    a.N = kN;
    a.K = kK;
    MatMulInvariant(a, pool);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < kN; ++c) {
        const float want = Dot(x.data() + r * kK, deq.data() + c * kK, kK);
        if (r == 0 && c == 3) {
          ASSERT_TRUE(want == 0.0f && std::signbit(want)) << want;
        }
        if (r == 1 && c == 13) {
          ASSERT_TRUE(std::isinf(want) && want > 0) << want;
        }
        ASSERT_EQ(0, std::memcmp(&out[r * kN + c], &want, 4))
            << "M=" << m << " out[" << r << ", " << c << "] = " << out[r * kN + c]
            << ", Dot gives " << want;
      }
    }
  }
}

// The packed kernels (decode: whole-panel tiles, prefill: half-panel tiles) give the bits of
// the row-major kernels for every dtype, M, and K with and without a 16/32-element tail.
TEST(PackedWeightTest, BitIdenticalToTheRowMajorWeight) {
  ThreadPool pool(2);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    // 19 rows: a 7-row last panel, whose second half (Q8_0 scales) holds one row.
    for (auto [n, k] : {std::pair<int64_t, int64_t>{77, 288}, {130, 37}, {25, 48}, {60, 96},
                        {19, 64}, {5, 17}}) {
      if (dt == DType::kQ8_0 && k % 32 != 0) continue;
      constexpr int64_t kM = 13;
      const auto x = RandomFloats(kM * k, 51);
      auto img = MakeWeight(RandomFloats(n * k, 52), {n, k}, dt);
      const auto bias = RandomFloats(n, 53);
      const PackedLayout layout{dt, n, k};
      std::vector<std::byte> storage(layout.bytes() + 64);
      auto* buf = reinterpret_cast<std::byte*>(
          (reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t{63});
      PackRows(layout, img->tensor.data, k, 0, n, buf);
      const PackedWeight packed{layout, buf};
      for (int64_t m : {1, 2, 3, 4, 5, 7, 13}) {
        std::vector<float> out[2];
        for (int p = 0; p < 2; ++p) {
          out[p].assign(m * n, -7.0f);
          MatMulArgs a;
          a.x = x.data();
          a.x_stride = k;
          a.packed = p == 0 ? nullptr : &packed;
          a.w = img->tensor.data;
          a.w_dtype = dt;
          a.w_stride = k;
          a.bias = bias.data();
          a.out = out[p].data();
          a.out_stride = n;
          a.M = m;
          a.N = n;
          a.K = k;
          MatMulInvariant(a, pool);
        }
        ASSERT_EQ(0, std::memcmp(out[0].data(), out[1].data(), 4 * out[0].size()))
            << DTypeName(dt) << " [" << n << ", " << k << "] M=" << m;
      }
    }
  }
}

// The contract of matmul.h, bit for bit: out[m, n] = Dot(x[m, :], w[n, :]) + bias[n] with
// simd.h's Dot on the dtype-rounded weight, whatever the layout, tile or M.
TEST(PackedWeightTest, EveryOutputIsTheDotOrderBitForBit) {
  constexpr int64_t kM = 9;
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{29, 96}, {14, 37}, {40, 48}}) {
      if (dt == DType::kQ8_0 && k % 32 != 0) continue;
      const auto x = RandomFloats(kM * k, 71);
      auto img = MakeWeight(RandomFloats(n * k, 72), {n, k}, dt);
      const auto bias_values = RandomFloats(n, 73);
      auto be = MakeBackend(2);
      auto w = be->LoadWeight(img->tensor, WeightKind::kMatrix);
      auto b = be->UploadF32(bias_values, 1, n);
      ASSERT_TRUE(w.ok() && b.ok());
      for (int64_t m : {1, 2, 3, 4, 9}) {
        auto out = RunMatMul(*be, x, 0, m, k, *w, &b.value());
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t c = 0; c < n; ++c) {
            const float want = Dot(x.data() + r * k, img->rounded.data() + c * k, k) +
                               bias_values[c];
            ASSERT_EQ(0, std::memcmp(&out[r * n + c], &want, 4))
                << DTypeName(dt) << " [" << n << ", " << k << "] M=" << m << " out[" << r
                << ", " << c << "] = " << out[r * n + c] << ", Dot gives " << want;
          }
        }
      }
    }
  }
}

// Hsum4 (the MatMul tiles' reduction) is Hsum four times over, bit for bit.
TEST(PackedWeightTest, Hsum4IsHsum) {
  const auto v = RandomFloats(64 * 200, 81, -1e4f, 1e4f);
  for (size_t t = 0; t + 64 <= v.size(); t += 64) {
    __m512 a[4];
    for (int i = 0; i < 4; ++i) a[i] = _mm512_loadu_ps(v.data() + t + 16 * i);
    float got[4];
    _mm_storeu_ps(got, Hsum4(a[0], a[1], a[2], a[3]));
    for (int i = 0; i < 4; ++i) {
      const float want = Hsum(a[i]);
      ASSERT_EQ(0, std::memcmp(&got[i], &want, 4)) << "vector " << t / 64 << " lane " << i;
    }
  }
}

// LoadWeight's packed copy is what MatMul reads: the source may change or go away after it.
TEST(PackedWeightTest, MatMulNoLongerReadsTheSource) {
  constexpr int64_t kM = 6, kN = 40, kK = 96;
  const auto x = RandomFloats(kM * kK, 61);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    auto img = MakeWeight(RandomFloats(kN * kK, 62), {kN, kK}, dt);
    auto be = MakeBackend(2);
    auto w = be->LoadWeight(img->tensor, WeightKind::kMatrix);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    auto before = RunMatMul(*be, x, 0, kM, kK, *w, nullptr);
    auto before1 = RunMatMul(*be, x, 0, 1, kK, *w, nullptr);
    std::memset(const_cast<std::byte*>(img->tensor.data), 0xff, img->tensor.nbytes);  // NaN
    auto after = RunMatMul(*be, x, 0, kM, kK, *w, nullptr);
    auto after1 = RunMatMul(*be, x, 0, 1, kK, *w, nullptr);
    ASSERT_EQ(0, std::memcmp(before.data(), after.data(), 4 * after.size())) << DTypeName(dt);
    ASSERT_EQ(0, std::memcmp(before1.data(), after1.data(), 4 * after1.size())) << DTypeName(dt);
  }
}

// The embedding table is packed at load like a matrix: the tied lm_head's MatMul reads the
// panels and gives the row-major table's logits bit for bit at every M, Embedding gathers the
// exact rows from the panels (nothing written past a row's K elements), and neither reads the
// source again: one owned copy, no alias.
TEST(PackedWeightTest, PackedEmbeddingServesEmbeddingAndTiedLmHead) {
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{101, 96}, {40, 37}, {24, 64}, {7, 17}}) {
      if (dt == DType::kQ8_0 && k % 32 != 0) continue;
      SCOPED_TRACE(std::string(DTypeName(dt)) + " [" + std::to_string(n) + ", " +
                   std::to_string(k) + "]");
      constexpr int64_t kM = 9;
      const auto x = RandomFloats(kM * k, 71);
      auto img = MakeWeight(RandomFloats(n * k, 72), {n, k}, dt);
      auto be = MakeBackend(2);
      EXPECT_FALSE(be->AliasesHostWeights());
      ASSERT_TRUE(be->InitKvCache(KvCacheSpec{1, 1, 16, 1, 1, 2, DType::kF32}).ok());
      auto emb = be->LoadWeight(img->tensor, WeightKind::kEmbedding);
      ASSERT_TRUE(emb.ok()) << emb.status().ToString();
      const auto* d = static_cast<const std::byte*>(emb->data);
      EXPECT_TRUE(d < img->storage.data() || d >= img->storage.data() + img->storage.size());
      // The row-major table read in place (a caller's Tensor, not from LoadWeight).
      const Tensor rows = Tensor::Dense(const_cast<std::byte*>(img->tensor.data), dt, n, k);
      std::vector<std::vector<float>> want;
      for (int64_t m : {1, 2, 3, 4, 5, 9}) want.push_back(RunMatMul(*be, x, 0, m, k, rows, nullptr));

      ForwardBatch fb;
      fb.token_ids = {static_cast<int32_t>(n - 1), 0, static_cast<int32_t>(n / 2)};
      fb.positions = {0, 1, 2};
      fb.slot_mapping = {0, 1, 2};
      fb.query_start_loc = {0, 3};
      fb.seq_lens = {3};
      fb.block_tables = {0};
      fb.max_blocks_per_seq = 1;
      ASSERT_TRUE(be->BeginBatch(fb).ok());
      std::memset(const_cast<std::byte*>(img->tensor.data), 0xff, img->tensor.nbytes);  // NaN
      size_t i = 0;
      for (int64_t m : {1, 2, 3, 4, 5, 9}) {
        auto got = RunMatMul(*be, x, 0, m, k, *emb, nullptr);
        ASSERT_EQ(0, std::memcmp(got.data(), want[i].data(), 4 * got.size())) << "M=" << m;
        ++i;
      }
      const int64_t stride = k + 5;  // rows with a gap that must stay untouched
      std::vector<float> out(3 * stride, -7.0f);
      Tensor ot = Tensor::Dense(out.data(), DType::kF32, 3, k);
      ot.stride = stride;
      be->Embedding(*emb, ot);
      for (int t = 0; t < 3; ++t) {
        ASSERT_EQ(0, std::memcmp(out.data() + t * stride,
                                 img->rounded.data() + fb.token_ids[t] * k, 4 * k))
            << "token " << fb.token_ids[t];
        for (int64_t e = k; e < stride; ++e) ASSERT_EQ(out[t * stride + e], -7.0f);
      }
    }
  }
}

TEST(MatMulBlasTest, CloseToTheInvariantPath) {
  constexpr int64_t kM = 40, kN = 300, kK = 224;  // K: whole Q8_0 blocks
  const auto x = RandomFloats(kM * kK, 21);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    auto img = MakeWeight(RandomFloats(kN * kK, 22), {kN, kK}, dt);
    auto bias_values = RandomFloats(kN, 23);
    auto inv = MakeBackend(2, false);
    auto blas = MakeBackend(2, true);
    auto w1 = inv->LoadWeight(img->tensor, WeightKind::kMatrix);
    auto w2 = blas->LoadWeight(img->tensor, WeightKind::kMatrix);
    auto b1 = inv->UploadF32(bias_values, 1, kN);
    auto b2 = blas->UploadF32(bias_values, 1, kN);
    ASSERT_TRUE(w1.ok() && w2.ok() && b1.ok() && b2.ok());
    auto r1 = RunMatMul(*inv, x, 0, kM, kK, *w1, &b1.value());
    auto r2 = RunMatMul(*blas, x, 0, kM, kK, *w2, &b2.value());
    // Both are within ~(K/16 + 6) ulps of sum |x w| <= K of the exact value; allow 1e-4.
    for (size_t i = 0; i < r1.size(); ++i) ASSERT_NEAR(r1[i], r2[i], 1e-4) << DTypeName(dt) << i;
    // M < 16 stays on the invariant path even with use_blas.
    auto s1 = RunMatMul(*inv, x, 5, 3, kK, *w1, nullptr);
    auto s2 = RunMatMul(*blas, x, 5, 3, kK, *w2, nullptr);
    ASSERT_EQ(0, std::memcmp(s1.data(), s2.data(), 4 * s1.size()));
  }
}

}  // namespace
}  // namespace llmux::cpu
