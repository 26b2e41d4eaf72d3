// The host side of device sampling, without a device: what SamplingPacker uploads (sections,
// row parameters, the per-row masks' words, the edit lists) and that applying the packed edits
// the way the kernel does (kernels/sampling.cu, step 2) reproduces the host sampler's
// ProcessLogits bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include "backend/cuda/sampling_pack.h"
#include "llmux/rng.h"
#include "sampling/sampler.h"
#include "sampling_select.h"
#endif

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using kernels::LogitEdit;
using kernels::SamplingRowParams;

struct Case {
  SamplingParams params;
  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  uint64_t seed = 0;
  std::vector<uint32_t> mask;
};

std::vector<SampleRow> Rows(const std::vector<Case>& cases) {
  std::vector<SampleRow> rows;
  for (const Case& c : cases) rows.push_back({&c.params, c.prompt, c.output, c.seed, c.mask});
  return rows;
}

// The kernel's step 2 for one row, on the host, with the same IEEE operations.
void ApplyEdits(const SamplingRowParams& p, const std::vector<LogitEdit>& edits,
                const std::vector<float>& biases, std::vector<float>& l) {
  const bool counts = p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  for (int32_t e = p.edit_begin; e < p.edit_end; ++e) {
    const LogitEdit& ed = edits[e];
    float x = l[ed.token];
    for (int32_t b = ed.bias_begin; b < ed.bias_end; ++b) x = x + biases[b];
    if (ed.flags & kernels::kEditSuppress) x = -std::numeric_limits<float>::infinity();
    if (ed.flags & kernels::kEditRepeat) {
      x = x > 0.0f ? x / p.repetition_penalty : x * p.repetition_penalty;
    }
    if (counts && ed.output_count > 0) {
      x = std::fma(-p.frequency_penalty, static_cast<float>(ed.output_count), x);
      x = x - p.presence_penalty;
    }
    l[ed.token] = x;
  }
}

TEST(CudaSamplingPack, RowParametersFollowTheHostSampler) {
  std::vector<Case> cases(4);
  cases[0].params.temperature = 0.7f;
  cases[0].params.top_k = 50;
  cases[0].params.top_p = 0.9f;
  cases[0].params.min_p = 0.05f;
  cases[0].seed = 42;
  cases[0].output = {1, 2, 3};
  cases[1].params.temperature = 0.0f;  // greedy
  cases[2].params.temperature = 1.3f;
  cases[2].params.top_k = 1;  // greedy
  cases[3].params.top_k = 1000;  // >= vocab: no cut
  cases[3].params.logprobs = 20;
  cuda::SamplingPacker packer;
  ASSERT_TRUE(packer.Pack(SampleBatch{{}, Rows(cases)}, 1000).ok());
  const auto& r = packer.rows();
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].inv_temperature, 1.0f / 0.7f);
  EXPECT_EQ(r[0].top_k, 50);
  EXPECT_EQ(r[0].top_p, 0.9f);
  EXPECT_EQ(r[0].min_p, 0.05f);
  EXPECT_EQ(r[0].uniform, UniformAt(42, 3));  // the engine's counter: the output index
  EXPECT_EQ(r[0].logprobs, -1);
  EXPECT_EQ(r[1].inv_temperature, 0.0f);
  EXPECT_EQ(r[2].inv_temperature, 0.0f);
  EXPECT_EQ(r[3].top_k, 0);
  EXPECT_EQ(r[3].logprobs, 20);
  for (const SamplingRowParams& p : r) EXPECT_EQ(p.mask_offset, -1);
  EXPECT_TRUE(packer.edits().empty());
}

TEST(CudaSamplingPack, MasksAreUploadedPerMaskedRowAtTheirOffsets) {
  const int vocab = 70;  // 3 words, the last one partial
  std::vector<Case> cases(3);
  cases[0].mask = {0x11111111u, 0x22222222u, 0x3fu};
  cases[2].mask = {0xffffffffu, 0x0u, 0x1u};
  cuda::SamplingPacker packer;
  ASSERT_TRUE(packer.Pack(SampleBatch{{}, Rows(cases)}, vocab).ok());
  EXPECT_EQ(packer.mask_words(), 3);
  EXPECT_EQ(packer.masked_rows(), 2);
  EXPECT_EQ(packer.rows()[0].mask_offset, 0);
  EXPECT_EQ(packer.rows()[1].mask_offset, -1);
  EXPECT_EQ(packer.rows()[2].mask_offset, 3);
  const cuda::SamplingSections s = packer.sections();
  EXPECT_EQ(s.rows, 0u);
  EXPECT_EQ(s.edits, 176u);  // 3 rows of 56 bytes, rounded up to 16
  EXPECT_EQ(s.edits % 16, 0u);
  EXPECT_EQ(s.biases % 16, 0u);
  EXPECT_EQ(s.masks % 16, 0u);
  EXPECT_EQ(s.total, s.masks + 32);  // 6 words = 24 bytes, padded to 32
  std::vector<std::byte> up(s.total, std::byte{0xab});
  packer.WriteTo(up.data());
  std::vector<SamplingRowParams> rows(3);
  std::memcpy(rows.data(), up.data() + s.rows, 3 * sizeof(SamplingRowParams));
  EXPECT_EQ(rows[2].mask_offset, 3);
  std::vector<uint32_t> words(6);
  std::memcpy(words.data(), up.data() + s.masks, 24);
  EXPECT_EQ(words, (std::vector<uint32_t>{0x11111111u, 0x22222222u, 0x3fu, 0xffffffffu, 0x0u,
                                          0x1u}));
  for (size_t i = s.masks + 24; i < s.total; ++i) EXPECT_EQ(up[i], std::byte{0}) << i;
}

TEST(CudaSamplingPack, EditsAreOnePerTokenWithBiasesInListOrder) {
  std::vector<Case> cases(2);
  Case& c = cases[0];
  c.params.logit_bias = {{5, 1.0f}, {9, -2.0f}, {5, 0.5f}};
  c.params.min_tokens = 4;
  c.params.stop_token_ids = {9, 11};
  c.params.repetition_penalty = 1.3f;
  c.params.frequency_penalty = 0.5f;
  c.prompt = {3, 3, 5};
  c.output = {3, 12, 12};
  cases[1].params.logit_bias = {{5, 7.0f}};  // the same token in another row: its own edit
  cases[1].params.min_tokens = 1;
  cases[1].params.ignore_eos = true;  // EOS not suppressed, and no output yet
  cuda::SamplingPacker packer;
  ASSERT_TRUE(packer.Pack(SampleBatch{std::vector<int32_t>{2}, Rows(cases)}, 20).ok());
  const auto& e = packer.edits();
  const auto& r = packer.rows();
  // Row 0, in order of first use: 5 (bias), 9 (bias, stop), 2 (EOS), 11 (stop), 3, 12.
  ASSERT_EQ(r[0].edit_begin, 0);
  ASSERT_EQ(r[0].edit_end, 6);
  const int32_t tokens[] = {5, 9, 2, 11, 3, 12};
  const int32_t flags[] = {kernels::kEditRepeat, kernels::kEditSuppress,
                           kernels::kEditSuppress, kernels::kEditSuppress,
                           kernels::kEditRepeat, kernels::kEditRepeat};
  const int32_t counts[] = {0, 0, 0, 0, 1, 2};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(e[i].token, tokens[i]) << i;
    EXPECT_EQ(e[i].flags, flags[i]) << i;
    EXPECT_EQ(e[i].output_count, counts[i]) << i;
  }
  EXPECT_EQ(e[0].bias_end - e[0].bias_begin, 2);
  EXPECT_EQ(packer.biases()[e[0].bias_begin], 1.0f);
  EXPECT_EQ(packer.biases()[e[0].bias_begin + 1], 0.5f);
  EXPECT_EQ(e[1].bias_end - e[1].bias_begin, 1);
  EXPECT_EQ(packer.biases()[e[1].bias_begin], -2.0f);
  for (int i = 2; i < 6; ++i) EXPECT_EQ(e[i].bias_begin, e[i].bias_end) << i;
  ASSERT_EQ(r[1].edit_begin, 6);
  ASSERT_EQ(r[1].edit_end, 7);
  EXPECT_EQ(e[6].token, 5);
  EXPECT_EQ(e[6].flags, 0);
  EXPECT_EQ(packer.biases()[e[6].bias_begin], 7.0f);
}

TEST(CudaSamplingPack, PackedEditsReproduceProcessLogitsBitForBit) {
  const int vocab = 257;
  const std::vector<int32_t> eos = {0, 256};
  Sampler sampler(vocab, eos);
  uint64_t s = 99;
  auto next = [&s] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
  };
  for (int trial = 0; trial < 200; ++trial) {
    Case c;
    SamplingParams& p = c.params;
    for (int i = 0; i < static_cast<int>(next() % 6); ++i) {
      p.logit_bias.push_back({static_cast<int32_t>(next() % vocab),
                              static_cast<float>(static_cast<int>(next() % 4001) - 2000) / 20.0f});
    }
    p.min_tokens = static_cast<int32_t>(next() % 4);
    p.ignore_eos = next() % 2 == 0;
    if (next() % 2) p.stop_token_ids = {static_cast<int32_t>(next() % vocab)};
    p.repetition_penalty = next() % 2 ? 1.0f : 0.5f + static_cast<float>(next() % 100) / 40.0f;
    p.frequency_penalty = next() % 2 ? 0.0f : static_cast<float>(next() % 400) / 100.0f - 2.0f;
    p.presence_penalty = next() % 2 ? 0.0f : static_cast<float>(next() % 400) / 100.0f - 2.0f;
    for (int i = 0; i < static_cast<int>(next() % 30); ++i) {
      c.prompt.push_back(static_cast<int32_t>(next() % vocab));
    }
    for (int i = 0; i < static_cast<int>(next() % 12); ++i) {
      c.output.push_back(static_cast<int32_t>(next() % 40));  // repeats
    }
    std::vector<float> logits(vocab);
    for (float& x : logits) x = static_cast<float>(static_cast<int>(next() % 20001) - 10000) / 997.0f;
    std::vector<float> want = logits;
    sampler.ProcessLogits(want, p, SequenceView{c.prompt, c.output, 0});

    cuda::SamplingPacker packer;
    const std::vector<Case> cases = {c};
    ASSERT_TRUE(packer.Pack(SampleBatch{eos, Rows(cases)}, vocab).ok());
    std::vector<float> got = logits;
    ApplyEdits(packer.rows()[0], packer.edits(), packer.biases(), got);
    for (int t = 0; t < vocab; ++t) {
      ASSERT_EQ(std::memcmp(&got[t], &want[t], 4), 0)
          << "trial " << trial << " token " << t << ": " << got[t] << " vs " << want[t];
    }
  }
}

TEST(CudaSamplingPack, MalformedRowsAreInvalidArgument) {
  cuda::SamplingPacker packer;
  auto code = [&packer](const std::vector<Case>& cases, std::vector<int32_t> eos = {}) {
    return packer.Pack(SampleBatch{eos, Rows(cases)}, 40).code();
  };
  std::vector<Case> c(1);
  EXPECT_EQ(code(c), StatusCode::kOk);
  c[0].mask = {1u};  // 40 tokens need 2 words
  EXPECT_EQ(code(c), StatusCode::kInvalidArgument);
  c[0].mask.clear();
  c[0].params.logit_bias = {{40, 1.0f}};
  EXPECT_EQ(code(c), StatusCode::kInvalidArgument);
  c[0].params.logit_bias.clear();
  EXPECT_EQ(code(c, {40}), StatusCode::kInvalidArgument);
  c[0].params.repetition_penalty = 1.2f;
  c[0].prompt = {-1};
  EXPECT_EQ(code(c), StatusCode::kInvalidArgument);
  c[0].prompt.clear();
  c[0].params.logprobs = 21;
  EXPECT_EQ(code(c), StatusCode::kInvalidArgument);
  std::vector<SampleRow> rows(1);  // no params
  EXPECT_EQ(packer.Pack(SampleBatch{{}, rows}, 40).code(), StatusCode::kInvalidArgument);
  // Vocabularies the integer weights cannot sum (sampling_select.h: kMaxVocab).
  c[0].params.logprobs.reset();
  EXPECT_EQ(packer.Pack(SampleBatch{{}, Rows(c)}, kernels::sampling::kMaxVocab + 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(packer.Pack(SampleBatch{{}, Rows(c)}, 0).code(), StatusCode::kInvalidArgument);
}
#endif  // LLMUX_HAVE_CUDA

}  // namespace
}  // namespace llmux
