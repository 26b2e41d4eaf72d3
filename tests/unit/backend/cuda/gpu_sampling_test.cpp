// Device sampling (src/backend/cuda/cuda_access.h SampleOnDevice) against a reference written
// from the definition in kernels/sampling.cuh, plus the empirical distribution of the draw.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gpu_test_util.h"
#include "reference_ops.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::DeviceSamplingParams;
using cuda::testing::DeviceTensors;

int RefSample(const std::vector<float>& l, const DeviceSamplingParams& p) {
  const int v = static_cast<int>(l.size());
  const int argmax = static_cast<int>(std::max_element(l.begin(), l.end()) - l.begin());
  if (p.temperature <= 0.0f || p.top_k == 1) return argmax;
  const double lmax = l[argmax];
  std::vector<float> sorted = l;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  float thr = -INFINITY;
  if (p.top_k > 0 && p.top_k < v) thr = sorted[p.top_k - 1];
  auto w = [&](int i) { return std::exp((l[i] - lmax) / p.temperature); };
  auto mass_at = [&](float t) {
    double m = 0;
    for (int i = 0; i < v; ++i) {
      if (l[i] >= t && l[i] >= thr) m += w(i);
    }
    return m;
  };
  if (p.top_p > 0.0f && p.top_p < 1.0f) {
    const double target = p.top_p * mass_at(thr);
    for (float t : sorted) {  // descending: the first t reaching the target is the largest
      if (t >= thr && mass_at(t) >= target) {
        thr = t;
        break;
      }
    }
  }
  const double u = cuda::SamplingUniformForSeed(p.seed) * mass_at(thr);
  double cum = 0;
  int last = argmax;
  for (int i = 0; i < v; ++i) {
    if (l[i] < thr) continue;
    last = i;
    cum += w(i);
    if (cum > u) return i;
  }
  return last;
}

TEST(GpuSampling, GreedyIsArgmaxWithLowestIdOnTies) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int vocab = 128256;
  std::vector<float> l = cuda::testing::RandomBf16(3 * size_t(vocab), 9, 4.0f);
  l[0 * vocab + 70000] = 9.0f;
  l[1 * vocab + 5] = 9.0f;  // tie: 5 wins over 100000
  l[1 * vocab + 100000] = 9.0f;
  l[2 * vocab + vocab - 1] = 9.5f;
  Tensor t = dev.Upload(l, DType::kF32, 3, vocab, 3);
  std::vector<DeviceSamplingParams> ps(3);
  ps[2].temperature = 0.8f;
  ps[2].top_k = 1;
  auto got = cuda::SampleOnDevice(*b, t, ps);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, (std::vector<int32_t>{70000, 5, vocab - 1}));
}

TEST(GpuSampling, MatchesReferenceAcrossParameters) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int vocab = 1003, rows = 48;
  const auto l = cuda::testing::RandomBf16(size_t(rows) * vocab, 13, 5.0f);
  Tensor t = dev.Upload(l, DType::kF32, rows, vocab);
  std::vector<DeviceSamplingParams> ps(rows);
  const float temps[] = {0.3f, 0.7f, 1.0f, 1.5f};
  const int ks[] = {0, 2, 40, 1003};
  const float tops[] = {1.0f, 0.9f, 0.5f};
  for (int r = 0; r < rows; ++r) {
    ps[r].temperature = temps[r % 4];
    ps[r].top_k = ks[(r / 4) % 4];
    ps[r].top_p = tops[r % 3];
    ps[r].seed = 1000 + 17 * r;
  }
  auto got = cuda::SampleOnDevice(*b, t, ps);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (int r = 0; r < rows; ++r) {
    const std::vector<float> row(l.begin() + size_t(r) * vocab, l.begin() + size_t(r + 1) * vocab);
    EXPECT_EQ((*got)[r], RefSample(row, ps[r])) << "row " << r;
  }
  // Same seed, same logits: same token.
  auto again = cuda::SampleOnDevice(*b, t, ps);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*got, *again);
}

TEST(GpuSampling, EmpiricalFrequenciesFollowTheCutDistribution) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const int rows = 4000;
  const std::vector<float> probs = {0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<float> l;
  for (int r = 0; r < rows; ++r) {
    for (float p : probs) l.push_back(std::log(p));
  }
  Tensor t = dev.Upload(l, DType::kF32, rows, 4);
  for (auto [top_k, top_p, want] :
       {std::tuple{0, 1.0f, std::vector<double>{0.1, 0.2, 0.3, 0.4}},
        {2, 1.0f, std::vector<double>{0, 0, 0.3 / 0.7, 0.4 / 0.7}},
        {0, 0.5f, std::vector<double>{0, 0, 0.3 / 0.7, 0.4 / 0.7}},
        {3, 0.6f, std::vector<double>{0, 0, 0.3 / 0.7, 0.4 / 0.7}}}) {
    std::vector<DeviceSamplingParams> ps(rows);
    for (int r = 0; r < rows; ++r) ps[r] = {1.0f, top_k, top_p, 7000u + r};
    auto got = cuda::SampleOnDevice(*b, t, ps);
    ASSERT_TRUE(got.ok());
    std::vector<double> freq(4);
    for (int32_t id : *got) freq[id] += 1.0 / rows;
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(freq[i], want[i], 0.03) << "token " << i << " top_k " << top_k << " top_p "
                                          << top_p;
    }
  }
}
#else
TEST(GpuSampling, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
