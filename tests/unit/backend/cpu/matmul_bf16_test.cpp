// MatMul on BF16 weights with bf16 activations (matmul_bf16.h): every output equals a scalar
// model of the documented arithmetic bit for bit (bf16 rounding of x, vdpbf16ps's pairwise
// products per lane, groups in k order, simd.h's Hsum tree), and a row's bits do not depend on
// M, the tile, the thread count or the weight's layout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/matmul_bf16.h"
#include "backend/cpu/packed_weight.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/thread_pool.h"
#include "unit/backend/cpu/test_util.h"

namespace llmux::cpu {
namespace {

using testing::MakeBackend;
using testing::MakeWeight;
using testing::RandomFloats;

// Under CI=true a CPU without AVX-512 BF16 fails these tests instead of skipping them.
#define REQUIRE_BF16_DOT()                                                           \
  do {                                                                               \
    if (!Bf16DotAvailable()) {                                                       \
      const char* ci = std::getenv("CI");                                            \
      if (ci != nullptr && std::string(ci) == "true") {                              \
        FAIL() << "CI=true: this build or CPU has no AVX-512 BF16 (vdpbf16ps)";      \
      }                                                                              \
      GTEST_SKIP() << "no AVX-512 BF16 on this build or CPU";                        \
    }                                                                                \
  } while (0)

float Bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
// Denormals count as (signed) zero: vdpbf16ps's DAZ/FTZ.
float Ftz(float f) { return std::fpclassify(f) == FP_SUBNORMAL ? std::copysign(0.0f, f) : f; }
float Bf16Value(uint16_t h) { return Ftz(Bits(static_cast<uint32_t>(h) << 16)); }
// vcvtne2ps2bf16 on one element: denormal input as zero, round to nearest even.
uint16_t RoundToBf16(float f) {
  uint32_t u = Bits(Ftz(f));
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// The documented arithmetic of matmul_bf16.h for one output, in scalar code.
float ReferenceDot(const float* x, const uint16_t* w, int64_t k) {
  float lane[16] = {};
  for (int64_t g = 0; g * 32 < k; ++g) {
    for (int i = 0; i < 16; ++i) {
      float p[2];
      for (int h = 0; h < 2; ++h) {  // h = 1: element k+16+i, added first
        const int64_t e = g * 32 + 16 * h + i;
        p[h] = e < k ? Ftz(Bf16Value(RoundToBf16(x[e])) * Bf16Value(w[e])) : 0.0f;
      }
      lane[i] = Ftz(lane[i] + p[1]);
      lane[i] = Ftz(lane[i] + p[0]);
    }
  }
  // simd.h's Hsum: lanes i + i+8, then i + i+4, then i + i+2, then 0 + 1.
  float a[8], b[4];
  for (int i = 0; i < 8; ++i) a[i] = lane[i] + lane[i + 8];
  for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// The stored bf16 elements of a weight image (at an odd offset: copied out).
std::vector<uint16_t> RawBf16(const testing::WeightImage& img) {
  std::vector<uint16_t> w(img.tensor.nbytes / 2);
  std::memcpy(w.data(), img.tensor.data, img.tensor.nbytes);
  return w;
}

// One MatMul through the raw kernel entry, weight packed (as LoadWeight does) or row-major.
std::vector<float> RunBf16(const std::vector<float>& x, int64_t first, int64_t m, int64_t k,
                       const testing::WeightImage& img, const PackedWeight* packed,
                       const float* bias, ThreadPool& pool, bool bf16_activations = true) {
  const int64_t n = img.tensor.shape[0];
  std::vector<float> out(m * n, -7.0f);
  MatMulArgs a;
  a.x = x.data() + first * k;
  a.x_stride = k;
  a.packed = packed;
  a.w = img.tensor.data;
  a.w_dtype = DType::kBF16;
  a.w_stride = k;
  a.bias = bias;
  a.out = out.data();
  a.out_stride = n;
  a.M = m;
  a.N = n;
  a.K = k;
  a.bf16_activations = bf16_activations;
  MatMulInvariant(a, pool);
  return out;
}

struct Packed {
  std::vector<std::byte> storage;
  PackedWeight w;
};
std::unique_ptr<Packed> Pack(const testing::WeightImage& img) {
  auto p = std::make_unique<Packed>();
  const PackedLayout layout{DType::kBF16, img.tensor.shape[0], img.tensor.shape[1]};
  p->storage.resize(layout.bytes() + 64);
  auto* buf = reinterpret_cast<std::byte*>(
      (reinterpret_cast<uintptr_t>(p->storage.data()) + 63) & ~uintptr_t{63});
  PackRows(layout, img.tensor.data, layout.k, 0, layout.n, buf);
  p->w = PackedWeight{layout, buf};
  return p;
}

// Every output, packed and row-major, decode and prefill tiles, K with and without a tail:
// the scalar model's bits.
TEST(MatMulBf16Test, EveryOutputIsTheScalarModelBitForBit) {
  REQUIRE_BF16_DOT();
  ThreadPool pool(2);
  for (auto [n, k] : {std::pair<int64_t, int64_t>{29, 96}, {14, 37}, {40, 48}, {25, 17},
                      {100, 576}, {13, 64}}) {
    constexpr int64_t kM = 9;
    auto x = RandomFloats(kM * k, 91, -2.0f, 2.0f);
    // Some activations exactly halfway between two bf16 values (ties to even) and one
    // denormal (treated as zero).
    x[0] = Bits(0x3f808000u);
    x[1] = Bits(0x3f818000u);
    x[2] = Bits(0x00400000u);
    auto img = MakeWeight(RandomFloats(n * k, 92), {n, k}, DType::kBF16);
    const auto w = RawBf16(*img);
    const auto bias = RandomFloats(n, 93);
    auto packed = Pack(*img);
    for (int64_t m : {1, 2, 3, 4, 5, 9}) {
      for (const PackedWeight* pw : {static_cast<const PackedWeight*>(nullptr),
                                       static_cast<const PackedWeight*>(&packed->w)}) {
        auto out = RunBf16(x, 0, m, k, *img, pw, bias.data(), pool);
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t c = 0; c < n; ++c) {
            const float want = ReferenceDot(x.data() + r * k, w.data() + c * k, k) + bias[c];
            ASSERT_EQ(Bits(out[r * n + c]), Bits(want))
                << "[" << n << ", " << k << "] M=" << m << (pw ? " packed" : " row-major")
                << " out[" << r << ", " << c << "] = " << out[r * n + c] << ", model " << want;
          }
        }
      }
    }
  }
}

// A row's bits are the same at M = 1, 3, 17 and 512, at any offset in the batch, with 1 or 2
// threads, through the backend (LoadWeight's packed copy) with the default options.
TEST(MatMulBf16Test, RowsAreBitIdenticalForAnyM) {
  REQUIRE_BF16_DOT();
  constexpr int64_t kN = 100, kK = 576, kRows = 512;
  const auto x = RandomFloats(kRows * kK, 101);
  auto img = MakeWeight(RandomFloats(kN * kK, 102), {kN, kK}, DType::kBF16);
  std::vector<float> alone(kRows * kN);
  for (int threads : {1, 2}) {
    CpuBackendOptions o;
    o.threads = threads;
    auto be = CreateCpuBackend(o);
    ASSERT_TRUE(be.ok());
    auto wt = (*be)->LoadWeight(img->tensor, WeightKind::kMatrix);
    ASSERT_TRUE(wt.ok()) << wt.status().ToString();
    auto run = [&](int64_t first, int64_t m) {
      std::vector<float> out(m * kN);
      Tensor xt = Tensor::Dense(const_cast<float*>(x.data()) + first * kK, DType::kF32, m, kK);
      (*be)->MatMul(xt, *wt, nullptr, Tensor::Dense(out.data(), DType::kF32, m, kN));
      return out;
    };
    for (int64_t r = 0; r < kRows; ++r) {
      auto row = run(r, 1);
      if (threads == 1) {
        std::memcpy(alone.data() + r * kN, row.data(), 4 * kN);
      } else {
        ASSERT_EQ(0, std::memcmp(row.data(), alone.data() + r * kN, 4 * kN)) << "row " << r;
      }
    }
    for (auto [first, m] : {std::pair<int64_t, int64_t>{0, 3}, {5, 3}, {0, 17}, {301, 17},
                            {0, 512}}) {
      auto part = run(first, m);
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_EQ(0, std::memcmp(part.data() + r * kN, alone.data() + (first + r) * kN, 4 * kN))
            << "row " << first + r << " in a batch of " << m << " with " << threads
            << " threads differs from the row alone";
      }
    }
  }
}

// The option decides the path: bf16 activations round x (outputs differ from the exact F32
// path, within the rounding's bound), f32 activations keep the exact path.
TEST(MatMulBf16Test, ActivationsOptionSelectsThePath) {
  REQUIRE_BF16_DOT();
  constexpr int64_t kM = 6, kN = 40, kK = 288;
  const auto x = RandomFloats(kM * kK, 111);
  auto img = MakeWeight(RandomFloats(kN * kK, 112), {kN, kK}, DType::kBF16);
  ThreadPool pool(2);
  auto packed = Pack(*img);
  auto bf = RunBf16(x, 0, kM, kK, *img, &packed->w, nullptr, pool, true);
  auto f32 = RunBf16(x, 0, kM, kK, *img, &packed->w, nullptr, pool, false);
  auto be_bf = MakeBackend(2, false, CpuBf16Activations::kBf16);
  auto be_f32 = MakeBackend(2, false, CpuBf16Activations::kF32);
  int differ = 0;
  for (int64_t r = 0; r < kM; ++r) {
    for (int64_t c = 0; c < kN; ++c) {
      double exact = 0, mag = 0;
      for (int64_t k = 0; k < kK; ++k) {
        const double p = static_cast<double>(x[r * kK + k]) * img->rounded[c * kK + k];
        exact += p;
        mag += std::fabs(p);
      }
      const float f32_dot = Dot(x.data() + r * kK, img->rounded.data() + c * kK, kK);
      ASSERT_EQ(Bits(f32[r * kN + c]), Bits(f32_dot)) << "f32 activations: the Dot order";
      // |bf16(x) - x| <= 2^-9 |x|, plus the F32 accumulation's bound.
      ASSERT_NEAR(bf[r * kN + c], exact, (std::ldexp(1.0, -9) + 1e-5) * mag);
      differ += Bits(bf[r * kN + c]) != Bits(f32[r * kN + c]);
    }
  }
  EXPECT_GT(differ, kM * kN / 2) << "bf16 activations must round x";
  // The backend option reaches the kernel.
  for (auto* be : {be_bf.get(), be_f32.get()}) {
    auto wt = be->LoadWeight(img->tensor, WeightKind::kMatrix);
    ASSERT_TRUE(wt.ok());
    std::vector<float> out(kM * kN);
    be->MatMul(Tensor::Dense(const_cast<float*>(x.data()), DType::kF32, kM, kK), *wt, nullptr,
               Tensor::Dense(out.data(), DType::kF32, kM, kN));
    const auto& want = be == be_bf.get() ? bf : f32;
    ASSERT_EQ(0, std::memcmp(out.data(), want.data(), 4 * out.size()))
        << (be == be_bf.get() ? "kBf16" : "kF32");
  }
}

}  // namespace
}  // namespace llmux::cpu
