#include "sampling/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "llmux/rng.h"

namespace llmux {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Probabilities {0.1, 0.2, 0.3, 0.4} as logits.
std::vector<float> FourTokenLogits() {
  return {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
}

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

// Peaked synthetic logits over a large vocabulary: a smooth deterministic background in
// [-4, 4] plus a few dozen boosted tokens, like an LM's.
std::vector<float> LargeVocabLogits(int32_t vocab) {
  std::vector<float> v(vocab);
  for (int32_t i = 0; i < vocab; ++i) {
    v[i] = 4.0f * std::sin(0.7f * static_cast<float>(i)) * std::cos(0.013f * static_cast<float>(i));
  }
  for (int32_t j = 0; j < 40; ++j) v[(j * 7919) % vocab] = 12.0f - 0.25f * static_cast<float>(j);
  v[vocab / 2] = 12.5f;  // the best logit, tied between two ids
  v[300] = 12.5f;
  return v;
}

TEST(SamplerTest, GreedyBreaksTiesToTheLowestId) {
  Sampler sampler(5, {});
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 2.0f};
  SequenceView seq;
  EXPECT_EQ(sampler.Sample(logits, Greedy(), seq).token, 1);
  SamplingParams near_zero;
  near_zero.temperature = 9e-6f;
  EXPECT_EQ(sampler.Sample(logits, near_zero, seq).token, 1);
  const std::vector<float> with_nan = {std::nanf(""), 0.5f, 0.5f, -1.0f, 0.25f};
  EXPECT_EQ(sampler.Sample(with_nan, Greedy(), seq).token, 1);
}

TEST(SamplerTest, FixedSeedsGiveAFixedTokenSequence) {
  // Expected ids computed independently (Python, same splitmix64 keying and inverse CDF
  // over (logit desc, id asc)); distribution p = {.039,.330,.014,.215,.002,.105,.009,.286}.
  const std::vector<float> logits = {1.0f, 2.5f, 0.3f, 2.2f, -1.0f, 1.7f, 0.0f, 2.4f};
  const std::array<std::array<int32_t, 8>, 10> expected = {{
      {3, 7, 3, 5, 3, 3, 1, 1},
      {1, 7, 1, 1, 3, 7, 1, 7},
      {1, 7, 3, 7, 3, 0, 7, 7},
      {0, 1, 7, 3, 3, 1, 7, 3},
      {3, 3, 7, 0, 0, 7, 5, 1},
      {7, 5, 3, 1, 3, 1, 7, 7},
      {1, 3, 3, 0, 1, 1, 7, 3},
      {5, 7, 7, 5, 3, 7, 1, 1},
      {3, 7, 7, 7, 7, 3, 7, 7},
      {1, 1, 7, 7, 5, 1, 3, 7},
  }};
  Sampler sampler(8, {});
  SamplingParams params;
  params.temperature = 0.7f;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    std::vector<int32_t> out;
    for (int step = 0; step < 8; ++step) {
      out.push_back(sampler.Sample(logits, params, {{}, out, seed}).token);
    }
    EXPECT_THAT(out, testing::ElementsAreArray(expected[seed])) << "seed " << seed;
  }
}

TEST(SamplerTest, SameSeedSameTokensWhateverIsInterleaved) {
  const std::vector<float> logits_a = LargeVocabLogits(5000);
  std::vector<float> logits_b = logits_a;
  std::reverse(logits_b.begin(), logits_b.end());
  SamplingParams params;
  params.top_p = 0.95f;
  params.temperature = 1.3f;
  const std::vector<int32_t> prompt = {1, 2, 3};

  Sampler alone(5000, {});
  std::vector<int32_t> a_alone;
  for (int i = 0; i < 30; ++i)
    a_alone.push_back(alone.Sample(logits_a, params, {prompt, a_alone, 77}).token);

  Sampler shared(5000, {});
  std::vector<int32_t> a, b;
  for (int i = 0; i < 30; ++i) {
    b.push_back(shared.Sample(logits_b, params, {prompt, b, 78}).token);
    a.push_back(shared.Sample(logits_a, params, {prompt, a, 77}).token);
    if (i % 3 == 0) b.push_back(shared.Sample(logits_b, params, {prompt, b, 78}).token);
  }
  EXPECT_EQ(a, a_alone);
  EXPECT_NE(a, b);
  // Recompute after a "preemption": sampling position 17 again gives the same token.
  const std::span<const int32_t> prefix(a_alone.data(), 17);
  EXPECT_EQ(alone.Sample(logits_a, params, {prompt, prefix, 77}).token, a_alone[17]);
  // The draw is keyed by the seed: several seeds give several sequences.
  std::set<std::vector<int32_t>> distinct;
  for (uint64_t seed = 100; seed < 105; ++seed) {
    std::vector<int32_t> s;
    for (int i = 0; i < 10; ++i)
      s.push_back(alone.Sample(logits_a, params, {prompt, s, seed}).token);
    distinct.insert(s);
  }
  EXPECT_EQ(distinct.size(), 5u);
}

TEST(SamplerTest, TopK1AndTinyTopPAreGreedy) {
  const std::vector<float> logits = LargeVocabLogits(20000);
  Sampler sampler(20000, {});
  const int32_t argmax = sampler.Sample(logits, Greedy(), {}).token;
  EXPECT_EQ(argmax, 300);  // ties with 10000, lower id wins
  SamplingParams k1;
  k1.top_k = 1;
  SamplingParams tiny_p;
  tiny_p.top_p = 1e-6f;
  std::vector<int32_t> out;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_EQ(sampler.Sample(logits, k1, {{}, out, seed}).token, argmax) << "seed " << seed;
    EXPECT_EQ(sampler.Sample(logits, tiny_p, {{}, out, seed}).token, argmax) << "seed " << seed;
  }
}

// Draws `n` tokens at output positions 0..n-1 of one seed and returns the frequencies.
std::vector<double> Frequencies(Sampler& sampler, const std::vector<float>& logits,
                                const SamplingParams& params, int n, uint64_t seed) {
  std::vector<int32_t> history(n, 0);
  std::vector<double> freq(logits.size(), 0.0);
  for (int i = 0; i < n; ++i) {
    const std::span<const int32_t> out(history.data(), static_cast<size_t>(i));
    freq[sampler.Sample(logits, params, {{}, out, seed}).token] += 1.0 / n;
  }
  return freq;
}

TEST(SamplerTest, DrawsFollowTheFilteredDistribution) {
  Sampler sampler(4, {});
  const std::vector<float> logits = FourTokenLogits();
  struct Case {
    const char* name;
    SamplingParams params;
    std::array<double, 4> expected;
  };
  std::vector<Case> cases;
  cases.push_back({"temperature 1", SamplingParams{}, {0.1, 0.2, 0.3, 0.4}});
  SamplingParams t05;
  t05.temperature = 0.5f;  // p^2 renormalised
  cases.push_back({"temperature 0.5", t05, {0.01 / 0.3, 0.04 / 0.3, 0.09 / 0.3, 0.16 / 0.3}});
  SamplingParams k2;
  k2.top_k = 2;
  cases.push_back({"top_k 2", k2, {0.0, 0.0, 3.0 / 7, 4.0 / 7}});
  SamplingParams p05;
  p05.top_p = 0.5f;  // 0.4 < 0.5, then 0.7 >= 0.5: keeps {3, 2}
  cases.push_back({"top_p 0.5", p05, {0.0, 0.0, 3.0 / 7, 4.0 / 7}});
  SamplingParams k3p06;
  k3p06.top_k = 3;
  k3p06.top_p = 0.6f;  // within top-3 {.444,.333,.222}: keeps {3, 2}
  cases.push_back({"top_k 3 + top_p 0.6", k3p06, {0.0, 0.0, 3.0 / 7, 4.0 / 7}});
  SamplingParams minp;
  minp.min_p = 0.45f;  // threshold 0.18: drops token 0
  cases.push_back({"min_p 0.45", minp, {0.0, 0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9}});
  SamplingParams k3minp;
  k3minp.top_k = 3;
  k3minp.min_p = 0.6f;  // threshold 0.24: keeps {3, 2}
  cases.push_back({"top_k 3 + min_p 0.6", k3minp, {0.0, 0.0, 3.0 / 7, 4.0 / 7}});
  for (const Case& c : cases) {
    const std::vector<double> freq = Frequencies(sampler, logits, c.params, 20000, 1234);
    for (int t = 0; t < 4; ++t) {
      EXPECT_NEAR(freq[t], c.expected[t], 0.02) << c.name << ", token " << t;
      if (c.expected[t] == 0.0) {
        EXPECT_EQ(freq[t], 0.0) << c.name << ", token " << t;
      }
    }
  }
}

// Reference sampler: full sort by (logit desc, id asc), the same weights and rules as the
// sampler, no partial selection.
class ReferenceDraw {
 public:
  ReferenceDraw(const std::vector<float>& w, const SamplingParams& p) {
    order_.resize(w.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::sort(order_.begin(), order_.end(),
              [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
    if (p.top_k > 0) order_.resize(std::min<size_t>(order_.size(), p.top_k));
    const float m = w[order_[0]];
    const float inv_t = 1.0f / p.temperature;
    double total = 0.0;
    for (int32_t t : order_) {
      e_.push_back(std::exp((w[t] - m) * inv_t));
      total += e_.back();
    }
    n_ = order_.size();
    if (p.top_p < 1.0f) {
      double cum = 0.0;
      size_t j = 0;
      while (j < n_ && cum < p.top_p * total) cum += e_[j++];
      n_ = j;
    }
    size_t j = 0;
    while (j < n_ && e_[j] >= p.min_p) ++j;
    n_ = j;
    for (j = 0; j < n_; ++j) mass_ += e_[j];
  }

  int32_t operator()(double u) const {
    double cum = 0.0;
    for (size_t j = 0; j < n_; ++j) {
      cum += e_[j];
      if (cum > u * mass_) return order_[j];
    }
    return order_[n_ - 1];
  }

 private:
  std::vector<int32_t> order_;
  std::vector<float> e_;
  size_t n_ = 0;
  double mass_ = 0.0;
};

TEST(SamplerTest, PartialSelectionMatchesAFullSortOnALargeVocab) {
  constexpr int32_t kVocab = 128256;
  const std::vector<float> logits = LargeVocabLogits(kVocab);
  Sampler sampler(kVocab, {});
  std::vector<SamplingParams> configs(6);
  configs[0].top_p = 0.9f;
  configs[1].top_k = 50;
  configs[2].top_k = 50;
  configs[2].top_p = 0.8f;
  configs[3].min_p = 0.05f;
  configs[4].temperature = 3.0f;  // flat enough that the draw reaches the low bands
  configs[5].temperature = 2.0f;
  configs[5].top_p = 0.99f;
  configs[5].min_p = 0.001f;
  for (size_t c = 0; c < configs.size(); ++c) {
    const ReferenceDraw reference(logits, configs[c]);
    std::set<int32_t> seen;
    for (uint64_t seed = 0; seed < 40; ++seed) {
      const int32_t got = sampler.Sample(logits, configs[c], {{}, {}, seed}).token;
      EXPECT_EQ(got, reference(UniformAt(seed, 0))) << "config " << c << " seed " << seed;
      seen.insert(got);
    }
    EXPECT_GT(seen.size(), 3u) << "config " << c;
  }
}

TEST(SamplerTest, AllEqualLogitsDrawInIdOrder) {
  // Small (sorted candidates) and large (every radix level, one shared key) vocabularies.
  for (int32_t vocab : {4, 3000}) {
    Sampler sampler(vocab, {});
    const std::vector<float> flat(vocab, 0.5f);
    for (uint64_t seed = 0; seed < 20; ++seed) {
      const auto expected = static_cast<int32_t>(UniformAt(seed, 0) * vocab);
      EXPECT_EQ(sampler.Sample(flat, SamplingParams{}, {{}, {}, seed}).token, expected)
          << "vocab " << vocab << " seed " << seed;
    }
  }
}

TEST(SamplerTest, RepetitionPenaltyCoversPromptAndOutputOnce) {
  Sampler sampler(6, {});
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f, 0.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  const std::vector<int32_t> prompt = {0, 1, 5};
  const std::vector<int32_t> output = {1, 2, 2};
  sampler.ProcessLogits(logits, p, {prompt, output, 0});
  EXPECT_THAT(logits, testing::ElementsAre(1.0f, -4.0f, 0.5f, 0.5f, 3.0f, 0.0f));
}

TEST(SamplerTest, FrequencyAndPresencePenaltiesCountOutputOnly) {
  Sampler sampler(6, {});
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f, 0.0f};
  SamplingParams p;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  const std::vector<int32_t> prompt = {0, 1};
  const std::vector<int32_t> output = {2, 4, 2, 2};
  sampler.ProcessLogits(logits, p, {prompt, output, 0});
  EXPECT_THAT(logits, testing::ElementsAre(2.0f, -2.0f, -0.75f, 0.5f, 2.25f, 0.0f));
  // Negative penalties encourage repetition.
  std::vector<float> again = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f, 0.0f};
  p.frequency_penalty = -1.0f;
  p.presence_penalty = -2.0f;
  sampler.ProcessLogits(again, p, {prompt, output, 0});
  EXPECT_THAT(again, testing::ElementsAre(2.0f, -2.0f, 6.0f, 0.5f, 6.0f, 0.0f));
}

TEST(SamplerTest, LogitBiasComesBeforeThePenalties) {
  Sampler sampler(4, {});
  std::vector<float> logits = {2.0f, -1.0f, 1.0f, 0.0f};
  SamplingParams p;
  p.logit_bias = {{0, 1.0f}, {1, 3.0f}, {3, -100.0f}};
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  const std::vector<int32_t> output = {0, 1};
  sampler.ProcessLogits(logits, p, {{}, output, 0});
  // token 0: (2+1)/2 - 1; token 1: (-1+3)/2 - 1; token 3 only biased.
  EXPECT_THAT(logits, testing::ElementsAre(0.5f, 0.0f, 1.0f, -100.0f));
  // In Sample: a bias makes a token the argmax.
  SamplingParams g = Greedy();
  g.logit_bias = {{3, 5.0f}};
  EXPECT_EQ(sampler.Sample(std::vector<float>{2.0f, -1.0f, 1.0f, 0.0f}, g, {}).token, 3);
}

TEST(SamplerTest, MinTokensSuppressesEosAndStopIds) {
  Sampler sampler(5, /*eos_token_ids=*/{4});
  SamplingParams p;
  p.min_tokens = 2;
  p.stop_token_ids = {3};
  const std::vector<int32_t> one = {0};
  const std::vector<int32_t> two = {0, 0};
  std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  sampler.ProcessLogits(logits, p, {{}, one, 0});
  EXPECT_THAT(logits, testing::ElementsAre(0.0f, 1.0f, 2.0f, -kInf, -kInf));
  logits = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  sampler.ProcessLogits(logits, p, {{}, two, 0});
  EXPECT_THAT(logits, testing::ElementsAre(0.0f, 1.0f, 2.0f, 3.0f, 4.0f));
  p.ignore_eos = true;
  logits = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  sampler.ProcessLogits(logits, p, {{}, one, 0});
  EXPECT_THAT(logits, testing::ElementsAre(0.0f, 1.0f, 2.0f, -kInf, 4.0f));
  // Sampling never picks a suppressed token, and its logprob is -inf.
  SamplingParams g = Greedy();
  g.min_tokens = 1;
  g.logprobs = 5;
  const SampledToken t = sampler.Sample(std::vector<float>{0.0f, 1.0f, 2.0f, 3.0f, 4.0f}, g, {});
  EXPECT_EQ(t.token, 3);
  ASSERT_EQ(t.top.size(), 5u);
  EXPECT_EQ(t.top[4].token, 4);
  EXPECT_EQ(t.top[4].logprob, -kInf);
}

TEST(SamplerTest, EverythingSuppressedFallsBackToTheRawArgmax) {
  Sampler sampler(2, /*eos_token_ids=*/{1});
  SamplingParams p;
  p.min_tokens = 3;
  p.stop_token_ids = {0};
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.5f, 2.0f}, p, {}).token, 1);
}

// Double-precision log-softmax.
std::vector<double> LogSoftmax(const std::vector<float>& v) {
  double m = -std::numeric_limits<double>::infinity();
  for (float x : v) m = std::max(m, static_cast<double>(x));
  double s = 0.0;
  for (float x : v) s += std::exp(static_cast<double>(x) - m);
  std::vector<double> out;
  for (float x : v) out.push_back(static_cast<double>(x) - m - std::log(s));
  return out;
}

TEST(SamplerTest, LogprobsAreTheLogSoftmaxOfTheProcessedLogits) {
  constexpr int32_t kVocab = 1000;
  const std::vector<float> logits = LargeVocabLogits(kVocab);
  Sampler sampler(kVocab, {});
  SamplingParams p;
  p.temperature = 0.3f;  // must not change the logprobs
  p.top_k = 10;
  p.repetition_penalty = 1.5f;
  p.presence_penalty = 0.5f;
  p.logprobs = 5;
  const std::vector<int32_t> output = {300, 0, 7, 7};  // 300 and 0 are among the best
  std::vector<float> processed = logits;
  sampler.ProcessLogits(processed, p, {{}, output, 3});
  const std::vector<double> ref = LogSoftmax(processed);

  const SampledToken t = sampler.Sample(logits, p, {{}, output, 3});
  EXPECT_NEAR(t.logprob, ref[t.token], 1e-5);
  std::vector<int32_t> by_ref(kVocab);
  std::iota(by_ref.begin(), by_ref.end(), 0);
  std::stable_sort(by_ref.begin(), by_ref.end(),
                   [&](int32_t a, int32_t b) { return ref[a] > ref[b]; });
  ASSERT_EQ(t.top.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(t.top[i].token, by_ref[i]) << "rank " << i;
    EXPECT_NEAR(t.top[i].logprob, ref[by_ref[i]], 1e-5) << "rank " << i;
  }
  // Ties are ordered by id.
  SamplingParams tie = Greedy();
  tie.logprobs = 3;
  const SampledToken u = sampler.Sample(std::vector<float>(kVocab, 1.0f), tie, {});
  ASSERT_EQ(u.top.size(), 3u);
  EXPECT_EQ(u.top[0].token, 0);
  EXPECT_EQ(u.top[2].token, 2);
  EXPECT_NEAR(u.top[1].logprob, -std::log(1000.0), 1e-5);
  // logprobs = 0: the chosen token's only.
  tie.logprobs = 0;
  Sampler two(2, {});
  const SampledToken v = two.Sample(std::vector<float>{0.0f, 1.0f}, tie, {});
  EXPECT_TRUE(v.top.empty());
  EXPECT_NEAR(v.logprob, -std::log1p(std::exp(-1.0)), 1e-6);
}

TEST(SamplerTest, ValidationNamesTheField) {
  struct Case {
    const char* field;
    void (*mutate)(SamplingParams&);
  };
  const Case cases[] = {
      {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = std::nanf(""); }},
      {"temperature", [](SamplingParams& p) { p.temperature = kInf; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.01f; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -2; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.5f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.1f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = 2.5f; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = -2.01f; }},
      {"logit_bias",
       [](SamplingParams& p) {
         p.logit_bias = {{100, 1.0f}};
       }},
      {"logit_bias",
       [](SamplingParams& p) {
         p.logit_bias = {{-1, 1.0f}};
       }},
      {"logit_bias",
       [](SamplingParams& p) {
         p.logit_bias = {{3, 101.0f}};
       }},
      {"max_tokens", [](SamplingParams& p) { p.max_tokens = 0; }},
      {"min_tokens", [](SamplingParams& p) { p.min_tokens = -1; }},
      {"min_tokens", [](SamplingParams& p) { p.min_tokens = 17; }},
      {"stop_token_ids", [](SamplingParams& p) { p.stop_token_ids = {100}; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = 21; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = -1; }},
  };
  EXPECT_TRUE(Validate(SamplingParams{}, 100).ok());
  for (const Case& c : cases) {
    SamplingParams p;
    c.mutate(p);
    const std::optional<SamplingParamError> e = FindInvalidSamplingParam(p, 100);
    ASSERT_TRUE(e.has_value()) << c.field;
    EXPECT_EQ(e->field, c.field);
    const Status s = Validate(p, 100);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(s.message(), testing::StartsWith(std::string(c.field) + " ")) << s.message();
  }
  // Boundary values that are valid.
  SamplingParams edge;
  edge.temperature = 0.0f;
  edge.top_p = 1.0f;
  edge.top_k = -1;
  edge.min_p = 1.0f;
  edge.presence_penalty = -2.0f;
  edge.frequency_penalty = 2.0f;
  edge.logit_bias = {{0, -100.0f}, {99, 100.0f}};
  edge.min_tokens = 16;
  edge.logprobs = 20;
  EXPECT_TRUE(Validate(edge, 100).ok()) << Validate(edge, 100).ToString();
}

}  // namespace
}  // namespace llmux
