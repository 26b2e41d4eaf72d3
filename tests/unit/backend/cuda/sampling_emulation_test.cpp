// The device sampler's selection and draw without a device: the integer definition
// (kernels/sampling_select.h: fixed-point weights, exact cuts, the radix descent) computed by
// the host emulation of the kernel (src/backend/cuda/sampling_emulation.h) picks the host
// sampler's token (src/sampling) on many seeded random rows, and its pieces are exact: the
// radix descent equals a sort and prefix sums, the top-p and draw targets equal 128-bit
// arithmetic, the weight function is e^x within 2 ulp and never increases with x.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include "backend/cuda/sampling_emulation.h"
#include "backend/cuda/sampling_pack.h"
#include "sampling/sampler.h"
#include "sampling_select.h"
#endif

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
namespace sel = kernels::sampling;
constexpr float kInf = std::numeric_limits<float>::infinity();

// A fixed-seed generator (the test's values are the same on every run).
struct Lcg {
  uint64_t s;
  uint64_t Next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
  }
  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(Next()) / 2147483648.0; }
};

struct Case {
  SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  uint64_t seed = 0;
  std::vector<uint32_t> mask;
};

// A random row: coarse values (ties common) or continuous ones, some -inf, maybe a mask.
std::vector<float> RandomRow(Lcg& g, int vocab, Case* c) {
  std::vector<float> l(vocab);
  const bool coarse = g.Next() % 2 == 0;
  const float spread = 1.0f + static_cast<float>(g.Next() % 12);
  for (float& x : l) {
    x = coarse ? static_cast<float>(static_cast<int>(g.Next() % 64) - 32) / 32.0f * spread
               : static_cast<float>((g.Unit() * 2.0 - 1.0) * spread);
  }
  for (int i = 0; i < static_cast<int>(g.Next() % 4); ++i) l[g.Next() % vocab] = -kInf;
  if (g.Next() % 8 == 0) l[g.Next() % vocab] = std::numeric_limits<float>::quiet_NaN();
  if (g.Next() % 5 == 0) {
    c->mask.assign((vocab + 31) / 32, 0u);
    for (int i = 0; i < vocab; ++i) {
      if (g.Next() % 3 != 0) c->mask[i / 32] |= 1u << (i % 32);
    }
  }
  return l;
}

void RandomParams(Lcg& g, int vocab, Case* c) {
  SamplingParams& p = c->params;
  const float temps[] = {0.0f, 0.25f, 0.7f, 1.0f, 1.8f, 4.0f};
  p.temperature = temps[g.Next() % 6];
  const int32_t ks[] = {0, 0, 1, 2, 5, 40, vocab, vocab + 3};
  p.top_k = ks[g.Next() % 8];
  const float tops[] = {1.0f, 1.0f, 0.95f, 0.6f, 0.2f, 1e-6f};
  p.top_p = tops[g.Next() % 6];
  const float min_ps[] = {0.0f, 0.0f, 0.05f, 0.5f};
  p.min_p = min_ps[g.Next() % 4];
  if (g.Next() % 4 == 0) {
    p.logit_bias.push_back({static_cast<int32_t>(g.Next() % vocab), 3.0f});
    p.repetition_penalty = 1.3f;
    p.frequency_penalty = 0.4f;
    c->prompt = {static_cast<int32_t>(g.Next() % vocab), static_cast<int32_t>(g.Next() % vocab)};
  }
  c->output.assign(g.Next() % 4, static_cast<int32_t>(g.Next() % vocab));
  if (g.Next() % 3 == 0) p.logprobs = static_cast<int32_t>(g.Next() % 6);
  c->seed = g.Next() * 77 + 5;
}

// Logprobs: exact when infinite, else within 1e-5 (integer vs double normaliser).
void ExpectLogprob(float got, float want, int trial) {
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << "trial " << trial;
  } else {
    EXPECT_NEAR(got, want, 1e-5) << "trial " << trial;
  }
}

// Draws of the emulation against the host sampler, `trials` rows of vocabularies drawn by
// `vocab_of`. Returns how many rows drew (not greedy).
int CompareWithHostSampler(uint64_t seed, int trials, int (*vocab_of)(Lcg&)) {
  Lcg g{seed};
  int drawn = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const int vocab = vocab_of(g);
    Case c;
    const std::vector<float> logits = RandomRow(g, vocab, &c);
    RandomParams(g, vocab, &c);
    cuda::SamplingPacker packer;
    const SampleRow row[] = {{&c.params, c.prompt, c.output, c.seed, c.mask}};
    const Status st = packer.Pack(SampleBatch{{}, row}, vocab);
    EXPECT_TRUE(st.ok()) << st.ToString();
    const kernels::SampledRow got = cuda::EmulateSampling(packer, logits, vocab, vocab)[0];

    Sampler sampler(vocab, {});
    const SampledToken want =
        sampler.Sample(logits, c.params, SequenceView{c.prompt, c.output, c.seed}, c.mask);
    EXPECT_EQ(got.token, want.token)
        << "trial " << trial << " vocab " << vocab << " T " << c.params.temperature
        << " top_k " << c.params.top_k << " top_p " << c.params.top_p << " min_p "
        << c.params.min_p;
    if (c.params.logprobs.has_value()) {
      ExpectLogprob(got.logprob, want.logprob, trial);
      EXPECT_EQ(got.num_top, static_cast<int32_t>(want.top.size())) << "trial " << trial;
      for (int j = 0; j < got.num_top && j < static_cast<int>(want.top.size()); ++j) {
        EXPECT_EQ(got.top_tokens[j], want.top[j].token) << "trial " << trial << " top " << j;
        ExpectLogprob(got.top_logprobs[j], want.top[j].logprob, trial);
      }
    }
    if (::testing::Test::HasFailure()) return drawn;
    const bool greedy = packer.rows()[0].inv_temperature == 0.0f;
    drawn += greedy ? 0 : 1;
  }
  return drawn;
}

TEST(CudaSamplingEmulation, DrawsTheHostSamplersTokensOnSmallVocabularies) {
  // 3000 rows of 2..600 tokens: ties, -inf, NaN, masks, every cut and their mixes.
  const int drawn = CompareWithHostSampler(
      11, 3000, [](Lcg& g) { return 2 + static_cast<int>(g.Next() % 599); });
  EXPECT_GT(drawn, 1500);
}

TEST(CudaSamplingEmulation, DrawsTheHostSamplersTokensOnALlamaVocabulary) {
  // Several radix levels per descent (49-bit order values at 128256 tokens).
  const int drawn = CompareWithHostSampler(12, 24, [](Lcg&) { return 128256; });
  EXPECT_GT(drawn, 10);
}

TEST(CudaSamplingEmulation, TheNamedCutsPickTheExpectedTokens) {
  const int vocab = 8;
  // Weights at T = 1 relative to the max (token 2): 1, e^-1 (0 and 5, a tie), e^-2 ...
  const std::vector<float> l = {2.0f, 1.0f, 3.0f, -kInf, 0.5f, 2.0f, 1.0f, -1.0f};
  auto draw = [&](float top_p, int top_k, float min_p, uint64_t seed, std::vector<uint32_t> mask) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = top_p;
    p.top_k = top_k;
    p.min_p = min_p;
    cuda::SamplingPacker packer;
    const std::vector<int32_t> none;
    const SampleRow row[] = {{&p, none, none, seed, mask}};
    EXPECT_TRUE(packer.Pack(SampleBatch{{}, row}, vocab).ok());
    const int32_t got = cuda::EmulateSampling(packer, l, vocab, vocab)[0].token;
    Sampler sampler(vocab, {});
    EXPECT_EQ(got, sampler.Sample(l, p, SequenceView{none, none, seed}, mask).token);
    return got;
  };
  for (uint64_t seed = 0; seed < 64; ++seed) {
    // Tiny top-p and top_k = 1 keep the argmax only.
    EXPECT_EQ(draw(1e-6f, 0, 0.0f, seed, {}), 2);
    EXPECT_EQ(draw(1.0f, 1, 0.0f, seed, {}), 2);
    // top_k = 2: the argmax and the first of the tie (0 before 5).
    const int k2 = draw(1.0f, 2, 0.0f, seed, {});
    EXPECT_TRUE(k2 == 2 || k2 == 0) << k2;
    // min_p 0.5: e^-1 < 0.5, so again the argmax only.
    EXPECT_EQ(draw(1.0f, 0, 0.5f, seed, {}), 2);
    // top_p = 1: any finite token; never the -inf one.
    EXPECT_NE(draw(1.0f, 0, 0.0f, seed, {}), 3);
    // A mask allowing 4 and 7 only.
    const int m = draw(1.0f, 0, 0.0f, seed, {(1u << 4) | (1u << 7)});
    EXPECT_TRUE(m == 4 || m == 7) << m;
  }
}

TEST(CudaSamplingEmulation, TheRadixDescentFindsTheSortedPrefixCrossing) {
  Lcg g{21};
  for (int trial = 0; trial < 60; ++trial) {
    const int vocab = trial < 50 ? 1 + static_cast<int>(g.Next() % 3000) : 128256;
    const int id_bits = sel::IdBits(vocab);
    std::vector<uint64_t> order(vocab);
    std::vector<uint64_t> weight(vocab);
    const int levels = 1 + static_cast<int>(g.Next() % 50);  // few distinct logits: long ties
    for (int i = 0; i < vocab; ++i) {
      const float logit = static_cast<float>(static_cast<int>(g.Next() % levels)) * 0.37f;
      order[i] = sel::OrderValue(logit, i, id_bits);
      weight[i] = g.Next() % 5 == 0 ? 0 : 1 + (g.Next() << 8) % sel::kWeightOne;
    }
    std::vector<int> sorted;
    for (int i = 0; i < vocab; ++i) {
      if (weight[i] != 0) sorted.push_back(i);
    }
    if (sorted.empty()) continue;
    std::sort(sorted.begin(), sorted.end(), [&](int a, int b) { return order[a] < order[b]; });
    uint64_t total = 0;
    for (int i : sorted) total += weight[i];
    for (int probe = 0; probe < 20; ++probe) {
      const bool by_count = probe % 2 == 0;
      const uint64_t limit = by_count ? sorted.size() : total;
      const uint64_t target = probe < 2 ? (probe == 0 ? 1 : limit) : 1 + g.Next() * 977 % limit;
      uint64_t c = 0, w = 0;
      size_t j = 0;
      for (; j < sorted.size(); ++j) {
        c += 1;
        w += weight[sorted[j]];
        if ((by_count ? c : w) >= target) break;
      }
      ASSERT_LT(j, sorted.size());
      const cuda::Crossing x =
          cuda::DescendOnHost(order, weight, 32 + id_bits, by_count, target);
      ASSERT_EQ(x.order, order[sorted[j]]) << "trial " << trial << " target " << target;
      EXPECT_EQ(x.count, c);
      EXPECT_EQ(x.weight, w);
    }
  }
}

TEST(CudaSamplingEmulation, TheTargetsAreExactIntegerArithmetic) {
  Lcg g{5};
  for (int i = 0; i < 20000; ++i) {
    const uint64_t mass = (g.Next() << 31 | g.Next()) % ((1ull << 63) - 1) + 1;
    float top_p = static_cast<float>(g.Unit());
    if (i % 7 == 0) top_p = std::ldexp(1.0f, -static_cast<int>(g.Next() % 140));  // tiny, subnormal
    if (!(top_p > 0.0f) || top_p >= 1.0f) continue;
    // ceil(mass * top_p) with top_p = m / 2^s, by unsigned __int128.
    int e = 0;
    const double frac = std::frexp(static_cast<double>(top_p), &e);  // top_p = frac * 2^e
    const unsigned __int128 m = static_cast<unsigned __int128>(std::ldexp(frac, 53));
    const int s = 53 - e;
    const unsigned __int128 prod = static_cast<unsigned __int128>(mass) * m;
    unsigned __int128 need = s >= 128 ? (prod != 0 ? 1 : 0) : (prod >> s) + ((prod & ((static_cast<unsigned __int128>(1) << s) - 1)) != 0 ? 1 : 0);
    if (need == 0) need = 1;
    ASSERT_EQ(sel::TopPTarget(mass, top_p), static_cast<uint64_t>(need)) << mass << " " << top_p;

    const uint64_t big_u = (g.Next() << 22 | (g.Next() & 0x3fffff)) & ((1ull << 53) - 1);
    const double u = std::ldexp(static_cast<double>(big_u), -53);
    const unsigned __int128 t = (static_cast<unsigned __int128>(mass) * big_u) >> 53;
    ASSERT_EQ(sel::DrawTarget(mass, u), static_cast<uint64_t>(t) + 1);
  }
  EXPECT_EQ(sel::TopPTarget(1000, 0.5f), 500u);
  EXPECT_EQ(sel::TopPTarget(1001, 0.5f), 501u);
  EXPECT_EQ(sel::DrawTarget(1000, 0.0), 1u);  // u = 0: the first candidate
  EXPECT_EQ(sel::DrawTarget(1000, 0.5), 501u);
}

// The quotient both targets are made of: a * b / 2^s rounded down or up, against unsigned
// __int128 for every shift (0, 64 and the bits on either side of a word included).
TEST(CudaSamplingEmulation, MulShiftIsTheExactQuotientForEveryShift) {
  Lcg g{11};
  const auto bits64 = [&g] { return g.Next() << 33 ^ g.Next() << 2 ^ g.Next(); };
  for (int i = 0; i < 2000; ++i) {
    const uint64_t a = bits64();
    uint64_t b = bits64();
    if (i % 5 == 0) b >>= g.Next() % 64;  // small factors too (top_p's 24-bit mantissa)
    const unsigned __int128 prod = static_cast<unsigned __int128>(a) * b;
    for (int s = 0; s < 128; ++s) {
      const unsigned __int128 mask = (static_cast<unsigned __int128>(1) << s) - 1;
      const uint64_t down = static_cast<uint64_t>(prod >> s);
      const uint64_t up = down + ((prod & mask) != 0 ? 1 : 0);
      ASSERT_EQ(sel::MulShift(a, b, s, /*round_up=*/false), down) << a << " " << b << " " << s;
      ASSERT_EQ(sel::MulShift(a, b, s, /*round_up=*/true), up) << a << " " << b << " " << s;
    }
  }
  EXPECT_EQ(sel::MulShift(3, 5, 1, false), 7u);  // 15 / 2
  EXPECT_EQ(sel::MulShift(3, 5, 1, true), 8u);
  EXPECT_EQ(sel::MulShift(1ull << 63, 4, 64, false), 2u);  // exactly 2: no rounding up
  EXPECT_EQ(sel::MulShift(1ull << 63, 4, 64, true), 2u);
}

TEST(CudaSamplingEmulation, TheWeightIsExpWithinTwoUlpAndNeverIncreases) {
  EXPECT_EQ(sel::Exp(0.0f), 1.0f);
  EXPECT_EQ(sel::FixedWeight(sel::Weight(0.0f)), sel::kWeightOne);
  EXPECT_EQ(sel::Weight(sel::kWeightCutoff), 0.0f);
  EXPECT_EQ(sel::Weight(-kInf), 0.0f);
  EXPECT_EQ(sel::FixedWeight(0.0f), 0u);
  // Every float in [-28, 0] near the polynomial's range boundaries (x = (k + 1/2) ln 2) and a
  // dense sweep: e^x within 2 ulp, and non-increasing as x decreases.
  std::vector<float> xs;
  for (int k = 0; k < 41; ++k) {
    float x = -(static_cast<float>(k) + 0.5f) * 0.69314718f;
    for (int j = 0; j < 200; ++j) x = std::nextafter(x, 0.0f);
    for (int j = 0; j < 400; ++j) {
      xs.push_back(x);
      x = std::nextafter(x, -kInf);
    }
  }
  for (int i = 0; i <= 2000000; ++i) xs.push_back(-28.0f * static_cast<float>(i) / 2000000.0f);
  std::sort(xs.begin(), xs.end());
  float prev = 0.0f;
  for (float x : xs) {
    if (!(x > sel::kWeightCutoff)) continue;
    const float got = sel::Exp(x);
    const double want = std::exp(static_cast<double>(x));
    ASSERT_LE(std::fabs(got - want), 2.0 * std::ldexp(1.0, std::ilogb(want) - 23)) << x;
    ASSERT_GE(got, prev) << "not monotone at " << x;
    prev = got;
  }
}

#else
TEST(CudaSamplingEmulation, SkippedWithoutCudaBuild) { GTEST_SKIP() << "SKIPPED: no CUDA build"; }
#endif

}  // namespace
}  // namespace llmux
