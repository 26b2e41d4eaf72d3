// Device sampling (CudaBackend::SampleTokens, kernels/sampling.cu) against the CPU backend's
// SampleTokens (the host sampler, the reference) on the same logits: greedy tokens exact
// (processing included: logit_bias, masks, min_tokens, penalties), seeded draws equal to the
// host's, masked tokens never sampled, logprobs within float rounding, and the empirical
// distribution of the draw under top-k / top-p / min-p cuts. The kernel launched directly
// against its host emulation (sampling_emulation.h): the same tokens at batch 1, 3 and 64 and
// vocabularies of 32000 and 128256, the same records whatever the block size or the batch (256
// rows, and rows alone).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "gpu_test_util.h"
#include "reference_ops.h"

#ifdef LLMUX_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstring>

#include "backend/cuda/sampling_emulation.h"
#include "backend/cuda/sampling_pack.h"
#include "sampling.cuh"
#endif

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;

// One row's request, owning what SampleRow points to.
struct Case {
  SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  uint64_t seed = 0;
  std::vector<uint32_t> mask;  // empty: none
};

std::vector<SampleRow> Rows(const std::vector<Case>& cases) {
  std::vector<SampleRow> rows;
  for (const Case& c : cases) rows.push_back({&c.params, c.prompt, c.output, c.seed, c.mask});
  return rows;
}

// The CPU backend's answer (the reference) for logits [cases.size(), vocab].
std::vector<SampledToken> OnCpu(std::vector<float> logits, int vocab,
                                const std::vector<Case>& cases,
                                const std::vector<int32_t>& eos) {
  auto cpu = CreateCpuBackend({});
  EXPECT_TRUE(cpu.ok());
  const std::vector<SampleRow> rows = Rows(cases);
  std::vector<SampledToken> out;
  const Tensor t = Tensor::Dense(logits.data(), DType::kF32,
                                 static_cast<int64_t>(cases.size()), vocab);
  const Status st = (*cpu)->SampleTokens(t, SampleBatch{eos, rows}, &out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

// The device's answer; the logits are uploaded with a padded row stride (pad columns).
std::vector<SampledToken> OnDevice(Backend& b, const std::vector<float>& logits, int vocab,
                                   const std::vector<Case>& cases,
                                   const std::vector<int32_t>& eos) {
  DeviceTensors dev(&b);
  const Tensor t = dev.Upload(logits, DType::kF32, static_cast<int64_t>(cases.size()), vocab, 5);
  const std::vector<SampleRow> rows = Rows(cases);
  std::vector<SampledToken> out;
  const Status st = b.SampleTokens(t, SampleBatch{eos, rows}, &out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

void ExpectLogprob(float got, float want, size_t row) {
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << "row " << row;
  } else {
    EXPECT_NEAR(got, want, 1e-5f + 1e-6f * std::fabs(want)) << "row " << row;
  }
}

void ExpectSame(const std::vector<SampledToken>& got, const std::vector<SampledToken>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t r = 0; r < got.size(); ++r) {
    EXPECT_EQ(got[r].token, want[r].token) << "row " << r;
    // Logprobs: the same formula; expf and the order of the double sum differ in the last bits.
    ExpectLogprob(got[r].logprob, want[r].logprob, r);
    ASSERT_EQ(got[r].top.size(), want[r].top.size()) << "row " << r;
    for (size_t j = 0; j < got[r].top.size(); ++j) {
      EXPECT_EQ(got[r].top[j].token, want[r].top[j].token) << "row " << r << " top " << j;
      ExpectLogprob(got[r].top[j].logprob, want[r].top[j].logprob, r);
    }
  }
}

std::vector<uint32_t> EveryNth(int vocab, int n, int offset) {
  std::vector<uint32_t> m((vocab + 31) / 32, 0u);
  for (int id = offset; id < vocab; id += n) m[id / 32] |= 1u << (id % 32);
  return m;
}

TEST(GpuSampling, GreedyMatchesTheCpuSamplerExactly) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int vocab = 128256;
  const int rows = 8;
  std::vector<float> l = cuda::testing::RandomBf16(size_t(rows) * vocab, 9, 4.0f);
  l[0 * size_t(vocab) + 70000] = 9.0f;
  l[1 * size_t(vocab) + 5] = 9.0f;  // tie: 5 wins over 100000
  l[1 * size_t(vocab) + 100000] = 9.0f;
  l[2 * size_t(vocab) + 17] = NAN;  // NaN counts as -inf
  const std::vector<int32_t> eos = {2, 128001};
  std::vector<Case> cases(rows);
  for (Case& c : cases) c.params.temperature = 0.0f;
  cases[2].params.temperature = 0.8f;
  cases[2].params.top_k = 1;  // greedy too
  cases[3].params.logit_bias = {{40, 100.0f}, {41, -3.5f}, {40, 0.25f}};  // duplicates add in order
  cases[4].params.repetition_penalty = 1.7f;
  cases[4].prompt = {70000, 5, 5, 9};
  cases[4].output = {11, 11, 12};
  cases[4].params.frequency_penalty = 0.6f;
  cases[4].params.presence_penalty = -1.2f;
  cases[4].params.logprobs = 5;
  cases[5].params.min_tokens = 3;  // EOS and stop ids suppressed while fewer outputs exist
  cases[5].params.stop_token_ids = {77};
  cases[5].output = {1};
  cases[5].params.logit_bias = {{2, 100.0f}, {77, 100.0f}, {128001, 100.0f}};
  cases[5].params.logprobs = 0;
  cases[6].mask = EveryNth(vocab, 7, 3);
  cases[6].params.logprobs = 20;
  cases[7].params.top_k = 1;
  cases[7].params.logprobs = 3;
  const auto want = OnCpu(l, vocab, cases, eos);
  EXPECT_EQ(want[0].token, 70000);
  EXPECT_EQ(want[1].token, 5);
  EXPECT_EQ(want[3].token, 40);
  EXPECT_NE(want[5].token, 2);
  EXPECT_NE(want[5].token, 77);
  EXPECT_EQ(want[6].token % 7, 3);
  ExpectSame(OnDevice(*b, l, vocab, cases, eos), want);
}

TEST(GpuSampling, SeededDrawsMatchTheCpuSampler) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int vocab = 1003, rows = 64;
  const auto l = cuda::testing::RandomBf16(size_t(rows) * vocab, 13, 5.0f);
  std::vector<Case> cases(rows);
  const float temps[] = {0.3f, 0.7f, 1.0f, 1.5f};
  const int ks[] = {0, 2, 40, 1003};
  const float tops[] = {1.0f, 0.9f, 0.5f};
  const float min_ps[] = {0.0f, 0.0f, 0.05f, 0.3f};
  for (int r = 0; r < rows; ++r) {
    Case& c = cases[r];
    c.params.temperature = temps[r % 4];
    c.params.top_k = ks[(r / 4) % 4];
    c.params.top_p = tops[r % 3];
    c.params.min_p = min_ps[(r / 16) % 4];
    c.seed = 1000 + 17 * r;
    c.output.assign(r % 5, 7);  // the draw's counter is the output index
    if (r % 9 == 0) c.mask = EveryNth(vocab, 3, r % 3);
    if (r % 11 == 0) c.params.logprobs = 4;
  }
  // NOTE: both draw with UniformAt(seed, output index) over the same order and cuts; they can
  // disagree only when u falls within float rounding of a boundary of the cumulative weights
  // (about 1e-6 per draw), so the tokens are expected to be equal.
  const auto want = OnCpu(l, vocab, cases, {0});
  const auto got = OnDevice(*b, l, vocab, cases, {0});
  ExpectSame(got, want);
  // Same seed and logits: the same tokens again (the kernel's reductions have a fixed order).
  const auto again = OnDevice(*b, l, vocab, cases, {0});
  for (int r = 0; r < rows; ++r) EXPECT_EQ(again[r].token, got[r].token) << "row " << r;
}

TEST(GpuSampling, AMaskedTokenIsNeverSampled) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int vocab = 4099, rows = 256;
  const auto l = cuda::testing::RandomBf16(size_t(rows) * vocab, 21, 3.0f);
  std::vector<Case> cases(rows);
  for (int r = 0; r < rows; ++r) {
    Case& c = cases[r];
    c.params.temperature = 2.0f;  // flat: every allowed token is likely
    c.seed = 555 + r;
    c.mask = EveryNth(vocab, 5, r % 5);
    // A huge bias on a masked token (the mask wins: it is applied first and stays).
    c.params.logit_bias = {{(r % 5) + 1, 100.0f}};
  }
  const auto got = OnDevice(*b, l, vocab, cases, {0});
  for (int r = 0; r < rows; ++r) {
    const int32_t t = got[r].token;
    ASSERT_TRUE(t >= 0 && t < vocab) << "row " << r;
    EXPECT_EQ(t % 5, r % 5) << "row " << r << " sampled masked token " << t;
  }
}

TEST(GpuSampling, EverythingSuppressedFallsBackToTheMaskedArgmax) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int vocab = 300;
  std::vector<float> l(2 * size_t(vocab), -INFINITY);
  l[7] = 1.0f;  // row 0: only EOS (7) is finite, and min_tokens suppresses it
  l[vocab + 9] = 2.0f;  // row 1: the stop id 9 and token 10 only; 10 is masked out
  l[vocab + 10] = 5.0f;
  std::vector<Case> cases(2);
  cases[0].params.min_tokens = 2;
  cases[0].params.logprobs = 2;
  cases[1].params.min_tokens = 2;
  cases[1].params.stop_token_ids = {9};
  cases[1].mask = std::vector<uint32_t>((vocab + 31) / 32, 0xffffffffu);
  cases[1].mask[0] &= ~(1u << 10);
  const auto want = OnCpu(l, vocab, cases, {7});
  EXPECT_EQ(want[0].token, 7);
  EXPECT_EQ(want[1].token, 9);
  ExpectSame(OnDevice(*b, l, vocab, cases, {7}), want);
}

TEST(GpuSampling, EmpiricalFrequenciesFollowTheCuts) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int rows = 4000;
  const std::vector<float> probs = {0.1f, 0.2f, 0.3f, 0.4f};
  std::vector<float> l;
  for (int r = 0; r < rows; ++r) {
    for (float p : probs) l.push_back(std::log(p));
  }
  struct Cut {
    int top_k;
    float top_p;
    float min_p;
    std::vector<double> want;
  };
  for (const Cut& cut : {Cut{0, 1.0f, 0.0f, {0.1, 0.2, 0.3, 0.4}},
                         Cut{2, 1.0f, 0.0f, {0, 0, 0.3 / 0.7, 0.4 / 0.7}},
                         Cut{0, 0.5f, 0.0f, {0, 0, 0.3 / 0.7, 0.4 / 0.7}},
                         Cut{3, 0.6f, 0.0f, {0, 0, 0.3 / 0.7, 0.4 / 0.7}},
                         Cut{0, 1.0f, 0.6f, {0, 0, 0.3 / 0.7, 0.4 / 0.7}}}) {
    std::vector<Case> cases(rows);
    for (int r = 0; r < rows; ++r) {
      cases[r].params.top_k = cut.top_k;
      cases[r].params.top_p = cut.top_p;
      cases[r].params.min_p = cut.min_p;
      cases[r].seed = 7000u + r;
    }
    const auto got = OnDevice(*b, l, 4, cases, {});
    std::vector<double> freq(4);
    for (const SampledToken& t : got) freq[t.token] += 1.0 / rows;
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(freq[i], cut.want[i], 0.03)
          << "token " << i << " top_k " << cut.top_k << " top_p " << cut.top_p << " min_p "
          << cut.min_p;
    }
  }
}

TEST(GpuSampling, MalformedCallsAreInvalidArgument) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  DeviceTensors dev(b.get());
  const Tensor t = dev.Upload(std::vector<float>(2 * 40, 0.0f), DType::kF32, 2, 40);
  std::vector<Case> one(1);
  std::vector<SampledToken> out;
  std::vector<SampleRow> rows = Rows(one);
  EXPECT_EQ(b->SampleTokens(t, SampleBatch{{}, rows}, &out).code(), StatusCode::kInvalidArgument);
  std::vector<Case> two(2);
  for (Case& c : two) c.params.temperature = 0.0f;
  two[1].mask = std::vector<uint32_t>(1, 1u);  // vocab 40 needs 2 words
  rows = Rows(two);
  EXPECT_EQ(b->SampleTokens(t, SampleBatch{{}, rows}, &out).code(), StatusCode::kInvalidArgument);
  two[1].mask.clear();
  two[0].params.logit_bias = {{40, 1.0f}};
  rows = Rows(two);
  EXPECT_EQ(b->SampleTokens(t, SampleBatch{{}, rows}, &out).code(), StatusCode::kInvalidArgument);
  // The backend still works afterwards.
  two[0].params.logit_bias = {{39, 1.0f}};
  rows = Rows(two);
  ASSERT_TRUE(b->SampleTokens(t, SampleBatch{{}, rows}, &out).ok());
  EXPECT_EQ(out[0].token, 39);
  EXPECT_EQ(out[1].token, 0);
}
TEST(GpuSampling, AFailedSamplingLaunchFailsThatCallWithUnavailable) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int vocab = 64;
  std::vector<float> l(2 * vocab, 0.0f);
  l[10] = 3.0f;
  l[vocab + 20] = 3.0f;
  std::vector<Case> cases(2);
  for (Case& c : cases) c.params.temperature = 0.0f;
  DeviceTensors dev(b.get());
  const Tensor t = dev.Upload(l, DType::kF32, 2, vocab);
  const std::vector<SampleRow> rows = Rows(cases);
  std::vector<SampledToken> out;
  constexpr int kLaunchOutOfResources = 701;  // cudaErrorLaunchOutOfResources: not sticky
  ASSERT_TRUE(cuda::InjectFaultForTesting(*b, "Sample", kLaunchOutOfResources).ok());
  const Status failed = b->SampleTokens(t, SampleBatch{{}, rows}, &out);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable);
  EXPECT_NE(failed.message().find("Sample: "), std::string::npos) << failed.message();
  EXPECT_TRUE(b->DeviceHealth().ok());
  // The next call works (the kernel did run; processing the same logits again is harmless
  // here: no edits).
  ASSERT_TRUE(b->SampleTokens(t, SampleBatch{{}, rows}, &out).ok());
  EXPECT_EQ(out[0].token, 10);
  EXPECT_EQ(out[1].token, 20);
}
// The kernel launched directly on the default stream: upload, LaunchSampling with `threads`
// per block, the records back.
std::vector<kernels::SampledRow> LaunchDirect(const std::vector<float>& logits, int64_t stride,
                                              int vocab, const cuda::SamplingPacker& packer,
                                              int threads) {
  const int rows = static_cast<int>(packer.rows().size());
  const cuda::SamplingSections sec = packer.sections();
  std::vector<std::byte> upload(sec.total);
  packer.WriteTo(upload.data());
  float* d_logits = nullptr;
  char* d_in = nullptr;
  float* d_raw = nullptr;
  kernels::SampledRow* d_out = nullptr;
  std::vector<kernels::SampledRow> out(rows);
  EXPECT_EQ(cudaMalloc(&d_logits, logits.size() * 4), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_in, sec.total), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_raw, 4 * (packer.edits().size() + 1)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&d_out, rows * sizeof(kernels::SampledRow)), cudaSuccess);
  EXPECT_EQ(cudaMemset(d_out, 0, rows * sizeof(kernels::SampledRow)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_logits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d_in, upload.data(), sec.total, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(kernels::LaunchSampling(
                d_logits, stride, rows, vocab,
                reinterpret_cast<const kernels::SamplingRowParams*>(d_in + sec.rows),
                reinterpret_cast<const kernels::LogitEdit*>(d_in + sec.edits),
                reinterpret_cast<const float*>(d_in + sec.biases),
                reinterpret_cast<const uint32_t*>(d_in + sec.masks), d_raw, d_out, nullptr,
                threads),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(out.data(), d_out, rows * sizeof(kernels::SampledRow),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  cudaFree(d_logits);
  cudaFree(d_in);
  cudaFree(d_raw);
  cudaFree(d_out);
  return out;
}

// `rows` random rows of an LLM-like shape (a long tail, a few strong tokens, ties) with
// serving-like parameters (every cut, masks, penalties, logprobs), seeded.
void RandomBatch(uint64_t seed, int rows, int vocab, std::vector<float>* logits,
                 std::vector<Case>* cases) {
  uint64_t s = seed;
  auto next = [&s] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
  };
  *logits = cuda::testing::RandomBf16(size_t(rows) * vocab, seed, 3.0f);
  cases->assign(rows, Case{});
  for (int r = 0; r < rows; ++r) {
    float* l = logits->data() + size_t(r) * vocab;
    for (int j = 0; j < 40; ++j) l[next() % vocab] = 6.0f + static_cast<float>(next() % 80) / 8.0f;
    l[next() % vocab] = -INFINITY;
    Case& c = (*cases)[r];
    SamplingParams& p = c.params;
    const float temps[] = {0.5f, 0.8f, 1.0f, 1.3f};
    p.temperature = temps[next() % 4];
    const int32_t ks[] = {0, 0, 1, 20, 50};
    p.top_k = ks[next() % 5];
    const float tops[] = {1.0f, 0.95f, 0.9f, 0.5f, 1e-6f};
    p.top_p = tops[next() % 5];
    const float min_ps[] = {0.0f, 0.0f, 0.05f};
    p.min_p = min_ps[next() % 3];
    if (next() % 4 == 0) c.mask = EveryNth(vocab, 2 + static_cast<int>(next() % 5), 1);
    if (next() % 4 == 0) {
      p.logit_bias = {{static_cast<int32_t>(next() % vocab), 4.0f}};
      p.repetition_penalty = 1.2f;
      c.prompt = {static_cast<int32_t>(next() % vocab), static_cast<int32_t>(next() % vocab)};
      c.output = {static_cast<int32_t>(next() % vocab)};
      p.frequency_penalty = 0.5f;
    }
    if (next() % 3 == 0) p.logprobs = static_cast<int32_t>(next() % 6);
    c.seed = next();
  }
}

TEST(GpuSampling, KernelEqualsTheHostEmulationTokenForToken) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  int drawn = 0;
  for (int vocab : {32000, 128256}) {
    for (int rows : {1, 3, 64}) {
      std::vector<float> l;
      std::vector<Case> cases;
      RandomBatch(1000 + vocab + rows, rows, vocab, &l, &cases);
      cuda::SamplingPacker packer;
      ASSERT_TRUE(packer.Pack(SampleBatch{{}, Rows(cases)}, vocab).ok());
      const auto want = cuda::EmulateSampling(packer, l, vocab, vocab);
      const auto got = LaunchDirect(l, vocab, vocab, packer, 1024);
      for (int r = 0; r < rows; ++r) {
        ASSERT_EQ(got[r].token, want[r].token) << "vocab " << vocab << " rows " << rows
                                               << " row " << r;
        EXPECT_EQ(got[r].num_top, want[r].num_top);
        ExpectLogprob(got[r].logprob, want[r].logprob, r);
        for (int j = 0; j < got[r].num_top; ++j) {
          EXPECT_EQ(got[r].top_tokens[j], want[r].top_tokens[j]) << "row " << r;
          ExpectLogprob(got[r].top_logprobs[j], want[r].top_logprobs[j], r);
        }
        drawn += packer.rows()[r].inv_temperature != 0.0f ? 1 : 0;
      }
    }
  }
  EXPECT_GT(drawn, 80);
}

TEST(GpuSampling, TheDrawDoesNotDependOnTheBlockSizeOrTheBatch) {
  LLMUX_CUDA_BACKEND_OR_SKIP(b);
  const int vocab = 128256;
  const int rows = 256;
  std::vector<float> l;
  std::vector<Case> cases;
  RandomBatch(77, rows, vocab, &l, &cases);
  cuda::SamplingPacker packer;
  ASSERT_TRUE(packer.Pack(SampleBatch{{}, Rows(cases)}, vocab).ok());
  const auto wide = LaunchDirect(l, vocab, vocab, packer, 1024);
  const auto narrow = LaunchDirect(l, vocab, vocab, packer, 256);
  for (int r = 0; r < rows; ++r) {
    // Integer sums throughout: the same record, bit for bit.
    ASSERT_EQ(std::memcmp(&wide[r], &narrow[r], sizeof(kernels::SampledRow)), 0) << "row " << r;
    if (r % 4 != 0) continue;  // every 4th row also alone (64 launches)
    const std::vector<Case> one = {cases[r]};
    cuda::SamplingPacker single;
    ASSERT_TRUE(single.Pack(SampleBatch{{}, Rows(one)}, vocab).ok());
    const std::vector<float> row(l.begin() + size_t(r) * vocab, l.begin() + size_t(r + 1) * vocab);
    const auto alone = LaunchDirect(row, vocab, vocab, single, r % 2 ? 256 : 1024);
    ASSERT_EQ(std::memcmp(&wide[r], &alone[0], sizeof(kernels::SampledRow)), 0) << "row " << r;
  }
}
#else
TEST(GpuSampling, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
