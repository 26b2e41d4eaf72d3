#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <utility>

#include "llmux/rng.h"
#include "llmux/status.h"

namespace llmux {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Temperatures below this are greedy (vLLM's _SAMPLING_EPS).
constexpr float kGreedyTemperature = 1e-5f;
// FindCrossing buckets tokens by 11, 11 and 10 bits of their key, most significant first,
// until at most kSortCutoff candidates remain, then sorts those.
struct RadixLevel {
  uint32_t shift;
  uint32_t mask;
};
constexpr RadixLevel kRadixLevels[] = {{21, 0x7ff}, {10, 0x7ff}, {0, 0x3ff}};
constexpr size_t kRadixBuckets = 2048;
constexpr size_t kSortCutoff = 512;

// A key whose ascending order is the logits' descending order (-0 and +0 alike; no NaN).
// Branch-free so that the pass over the vocabulary vectorizes.
inline uint32_t DescendingKey(float x) {
  x += 0.0f;  // -0 -> +0
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  // Negative: flip all bits; positive: flip the sign bit. Then invert for descending.
  const uint32_t flip = static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31) | 0x80000000u;
  return ~(bits ^ flip);
}

// Index of the largest value, ties to the lowest index. Values are never NaN here.
int32_t ArgMax(std::span<const float> v) {
  // NOTE: a max over 16 lanes (vectorizes), then the first index holding it: two cheap
  // passes instead of one branchy one.
  constexpr size_t kLanes = 16;
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, kNegInf);
  const float* p = v.data();
  const size_t n = v.size();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) lanes[j] = p[i + j] > lanes[j] ? p[i + j] : lanes[j];
  }
  float m = kNegInf;
  for (float x : lanes) m = x > m ? x : m;
  for (; i < n; ++i) m = p[i] > m ? p[i] : m;
  for (i = 0; i < n; ++i) {
    if (p[i] == m) return static_cast<int32_t>(i);
  }
  return 0;  // every value is -inf
}

void CopyWithoutNaN(std::span<const float> in, std::vector<float>& out) {
  const float* p = in.data();
  float* q = out.data();
  const size_t n = in.size();
  for (size_t i = 0; i < n; ++i) q[i] = p[i] != p[i] ? kNegInf : p[i];
}

// Sum of a row in double, in a fixed order (4 interleaved partial sums, then combined) so the
// additions pipeline; deterministic for a given row.
double SumInOrder(std::span<const float> v) {
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  const size_t n = v.size();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (size_t j = 0; j < 4; ++j) s[j] += v[i + j];
  }
  for (; i < n; ++i) s[0] += v[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

Sampler::Sampler(int32_t vocab_size, std::vector<int32_t> eos_token_ids)
    : vocab_size_(vocab_size),
      eos_token_ids_(std::move(eos_token_ids)),
      work_(vocab_size),
      exps_(vocab_size),
      stamp_(vocab_size, 0),
      counts_(vocab_size, 0) {
  LLMUX_CHECK(vocab_size > 0) << "vocab_size " << vocab_size;
  for (int32_t id : eos_token_ids_) {
    LLMUX_CHECK(id >= 0 && id < vocab_size) << "eos id " << id << " outside vocab " << vocab_size;
  }
  keys_.resize(vocab_size);
  hist_.resize(kRadixBuckets);
}

void Sampler::ProcessLogits(std::span<float> logits, const SamplingParams& params,
                            const SequenceView& seq) {
  LLMUX_CHECK(static_cast<int64_t>(logits.size()) == vocab_size_)
      << "logits row of " << logits.size() << " for vocab " << vocab_size_;
  auto check_id = [this](int32_t t) {
    LLMUX_CHECK(t >= 0 && t < vocab_size_) << "token id " << t << " outside vocab " << vocab_size_;
  };
  auto next_generation = [this] {
    if (++generation_ == 0) {  // wrapped: old marks could collide with new ones
      std::fill(stamp_.begin(), stamp_.end(), 0u);
      generation_ = 1;
    }
    return generation_;
  };

  for (const LogitBias& b : params.logit_bias) {
    check_id(b.token);
    logits[b.token] += b.bias;
  }

  if (static_cast<int64_t>(seq.output_token_ids.size()) < params.min_tokens) {
    if (!params.ignore_eos) {
      for (int32_t id : eos_token_ids_) logits[id] = kNegInf;
    }
    for (int32_t id : params.stop_token_ids) {
      check_id(id);
      logits[id] = kNegInf;
    }
  }

  if (params.repetition_penalty != 1.0f) {
    const float p = params.repetition_penalty;
    const uint32_t g = next_generation();
    auto penalize = [&](int32_t t) {
      check_id(t);
      if (stamp_[t] == g) return;  // once per distinct token
      stamp_[t] = g;
      float& x = logits[t];
      x = x > 0.0f ? x / p : x * p;
    };
    for (int32_t t : seq.prompt_token_ids) penalize(t);
    for (int32_t t : seq.output_token_ids) penalize(t);
  }

  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    const uint32_t g = next_generation();
    for (int32_t t : seq.output_token_ids) {
      check_id(t);
      if (stamp_[t] != g) {
        stamp_[t] = g;
        counts_[t] = 0;
      }
      ++counts_[t];
    }
    for (int32_t t : seq.output_token_ids) {
      if (counts_[t] == 0) continue;  // already applied for this token
      // NOTE: frequency then presence, like vLLM's apply_penalties. The frequency term is one
      // fused multiply-add, written out so that it does not depend on the compiler's
      // contraction (GCC contracts the plain expression where FMA exists); the CUDA backend
      // does the same operation (kernels/sampling.cu), so processed logits match bit for bit.
      logits[t] = std::fma(-params.frequency_penalty, static_cast<float>(counts_[t]), logits[t]);
      logits[t] -= params.presence_penalty;
      counts_[t] = 0;
    }
  }
}

void Sampler::ApplyAllowed(std::span<const uint32_t> allowed) {
  LLMUX_CHECK(static_cast<int64_t>(allowed.size()) * 32 >= vocab_size_)
      << "allowed-token bitmask of " << allowed.size() << " words for vocab " << vocab_size_;
  float* w = work_.data();
  for (int32_t word = 0; word * 32 < vocab_size_; ++word) {
    const uint32_t bits = allowed[word];
    if (bits == 0xffffffffu) continue;
    const int32_t end = std::min(vocab_size_, word * 32 + 32);
    for (int32_t id = word * 32; id < end; ++id) {
      if (((bits >> (id & 31)) & 1u) == 0) w[id] = kNegInf;
    }
  }
}

SampledToken Sampler::Sample(std::span<const float> logits, const SamplingParams& params,
                             const SequenceView& seq, std::span<const uint32_t> allowed) {
  LLMUX_CHECK(static_cast<int64_t>(logits.size()) == vocab_size_)
      << "logits row of " << logits.size() << " for vocab " << vocab_size_;
  CopyWithoutNaN(logits, work_);
  if (!allowed.empty()) ApplyAllowed(allowed);
  ProcessLogits(work_, params, seq);

  SampledToken out;
  out.token = ArgMax(work_);
  if (work_[out.token] == kNegInf) {
    // Everything was suppressed: drop the processing rather than sample from nothing (the
    // grammar's mask stays: it is a constraint, not a preference).
    CopyWithoutNaN(logits, work_);
    if (!allowed.empty()) ApplyAllowed(allowed);
    out.token = ArgMax(work_);
  } else {
    const bool greedy = params.temperature < kGreedyTemperature || params.top_k == 1 ||
                        work_[out.token] == std::numeric_limits<float>::infinity();
    if (!greedy) {
      const double u = UniformAt(seq.seed, seq.output_token_ids.size());
      const bool use_top_k = params.top_k > 0 && params.top_k < vocab_size_;
      if (use_top_k) {
        SelectTopK(params.top_k);
        out.token = DrawFromTopK(params.temperature, params.top_p, params.min_p, u);
      } else {
        out.token = DrawFromVocab(params.temperature, params.top_p, params.min_p, u, out.token);
      }
    }
  }
  if (params.logprobs.has_value()) FillLogprobs(params, out);
  return out;
}

void Sampler::SelectTopK(int32_t k) {
  k = std::min(k, vocab_size_);
  const float* w = work_.data();
  // "a before b" in the final order: larger logit, ties to the lower id. As a heap
  // comparator it keeps the worst kept candidate at the front.
  auto before = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  top_.resize(k);
  for (int32_t i = 0; i < k; ++i) top_[i] = i;
  std::make_heap(top_.begin(), top_.end(), before);
  float worst = w[top_.front()];
  const int32_t n = vocab_size_;
  for (int32_t i = k; i < n; ++i) {
    // Ids ascend, so a tie with the worst kept candidate never displaces it.
    if (!(w[i] > worst)) continue;
    std::pop_heap(top_.begin(), top_.end(), before);
    top_.back() = i;
    std::push_heap(top_.begin(), top_.end(), before);
    worst = w[top_.front()];
  }
  std::sort_heap(top_.begin(), top_.end(), before);
}

int32_t Sampler::DrawFromTopK(float temperature, float top_p, float min_p, double u) {
  const float max_logit = work_[top_[0]];
  const float inv_t = 1.0f / temperature;
  double total = 0.0;
  for (int32_t t : top_) {
    exps_[t] = std::exp((work_[t] - max_logit) * inv_t);
    total += exps_[t];
  }
  size_t n = top_.size();
  if (top_p < 1.0f) {
    const double need = static_cast<double>(top_p) * total;
    double cum = 0.0;
    size_t j = 0;
    while (j < n && cum < need) cum += exps_[top_[j++]];
    n = j;
  }
  if (min_p > 0.0f) {
    // exps_ of the best candidate is 1, so p_j >= min_p * p_max <=> exps_ >= min_p.
    size_t j = 0;
    while (j < n && exps_[top_[j]] >= min_p) ++j;
    n = j;
  }
  double mass = 0.0;
  for (size_t j = 0; j < n; ++j) mass += exps_[top_[j]];
  const double target = u * mass;
  double cum = 0.0;
  for (size_t j = 0; j < n; ++j) {
    cum += exps_[top_[j]];
    if (cum > target) return top_[j];
  }
  return top_[n - 1];
}

Sampler::Crossing Sampler::FindCrossing(double target, bool inclusive) {
  auto crosses = [target, inclusive](double s) { return inclusive ? s >= target : s > target; };
  const uint32_t* key = keys_.data();
  const float* e = exps_.data();
  double* hist = hist_.data();
  const int32_t n = vocab_size_;
  double acc = 0.0;        // weight of every token before the current candidate set, in order
  bool all = true;         // the candidate set is the whole vocabulary (cand_ unused)
  bool keys_equal = true;  // every level ran: cand_ shares one key and is in id order
  for (const RadixLevel& level : kRadixLevels) {
    if (!all && cand_.size() <= kSortCutoff) {
      keys_equal = false;
      break;
    }
    std::fill(hist_.begin(), hist_.end(), 0.0);
    const uint32_t shift = level.shift;
    const uint32_t mask = level.mask;
    auto bucket = [key, shift, mask](int32_t t) { return (key[t] >> shift) & mask; };
    if (all) {
      for (int32_t t = 0; t < n; ++t) hist[bucket(t)] += e[t];
    } else {
      for (int32_t t : cand_) hist[bucket(t)] += e[t];
    }
    // The bucket in which the running weight crosses the target; when rounding keeps the
    // total just short of it, the last bucket with weight (its last token is the answer).
    uint32_t chosen = 0;
    double before_chosen = -1.0;
    for (uint32_t b = 0; b <= mask; ++b) {
      if (hist[b] == 0.0) continue;
      chosen = b;
      before_chosen = acc;
      acc += hist[b];
      if (crosses(acc)) break;
    }
    LLMUX_CHECK(before_chosen >= 0.0) << "no token with weight";
    acc = before_chosen;
    next_.clear();
    if (all) {
      for (int32_t t = 0; t < n; ++t) {
        if (bucket(t) == chosen && e[t] > 0.0f) next_.push_back(t);
      }
    } else {
      for (int32_t t : cand_) {
        if (bucket(t) == chosen && e[t] > 0.0f) next_.push_back(t);
      }
    }
    cand_.swap(next_);
    all = false;
  }
  // NOTE: keys encode (logit desc) exactly, so sorting by (key, id) is the sampler's order.
  // The buckets are filled in id order, so after the last level nothing is left to sort.
  if (!keys_equal) {
    std::sort(cand_.begin(), cand_.end(), [key](int32_t a, int32_t b) {
      return key[a] < key[b] || (key[a] == key[b] && a < b);
    });
  }
  for (int32_t t : cand_) {
    acc += e[t];
    if (crosses(acc)) return {t, acc};
  }
  return {cand_.back(), acc};
}

int32_t Sampler::DrawFromVocab(float temperature, float top_p, float min_p, double u,
                               int32_t argmax) {
  const float max_logit = work_[argmax];
  const float inv_t = 1.0f / temperature;
  float* e = exps_.data();
  uint32_t* key = keys_.data();
  const float* w = work_.data();
  const int32_t n = vocab_size_;
  for (int32_t i = 0; i < n; ++i) e[i] = std::exp((w[i] - max_logit) * inv_t);
  const double total = SumInOrder(exps_);
  for (int32_t i = 0; i < n; ++i) key[i] = DescendingKey(w[i]);
  auto later = [key](int32_t a, int32_t b) {
    return key[a] > key[b] || (key[a] == key[b] && a > b);
  };

  // The filtered set F is a prefix of the (logit desc, id asc) order, ending at `last`.
  int32_t last = -1;  // -1: F is the whole vocabulary
  double mass = total;
  if (top_p < 1.0f) {
    // The nucleus takes tokens while the weight before them is < top_p * total, so it ends
    // at the first token whose inclusive prefix weight is >= that.
    const Crossing c = FindCrossing(static_cast<double>(top_p) * total, /*inclusive=*/true);
    last = c.token;
    mass = c.prefix;
  }
  if (min_p > 0.0f && (last < 0 || e[last] < min_p)) {
    // The best token has weight 1, so p >= min_p * p_max <=> weight >= min_p; those tokens
    // are a prefix of the order, shorter than the nucleus here.
    mass = 0.0;
    last = argmax;
    for (int32_t i = 0; i < n; ++i) {
      if (e[i] >= min_p) {
        mass += e[i];
        if (later(i, last)) last = i;
      }
    }
  }
  const Crossing c = FindCrossing(u * mass, /*inclusive=*/false);
  // Rounding (the prefix sums are grouped differently from `mass`) may step past F's end.
  if (last >= 0 && later(c.token, last)) return last;
  return c.token;
}

void Sampler::FillLogprobs(const SamplingParams& params, SampledToken& out) {
  const float* w = work_.data();
  const float max_logit = w[ArgMax(work_)];
  if (std::isinf(max_logit)) {
    // +inf: all mass on the +inf tokens (the draw was greedy); -inf: nothing was finite.
    out.logprob = w[out.token] == max_logit ? 0.0f : kNegInf;
    out.top.clear();
    return;
  }
  float* e = exps_.data();  // free again: the draw is done
  const int32_t vocab = vocab_size_;
  for (int32_t i = 0; i < vocab; ++i) e[i] = std::exp(w[i] - max_logit);
  const double sum = SumInOrder(exps_);
  const double lse = static_cast<double>(max_logit) + std::log(sum);
  out.logprob = static_cast<float>(static_cast<double>(w[out.token]) - lse);
  const int32_t n = *params.logprobs;
  out.top.clear();
  if (n <= 0) return;
  SelectTopK(n);
  out.top.reserve(top_.size());
  for (int32_t t : top_)
    out.top.push_back({t, static_cast<float>(static_cast<double>(w[t]) - lse)});
}

std::optional<SamplingParamError> FindInvalidSamplingParam(const SamplingParams& p,
                                                           int32_t vocab_size) {
  auto err = [](std::string field, std::string what) -> std::optional<SamplingParamError> {
    std::string message = field + " " + what;
    return SamplingParamError{std::move(field), std::move(message)};
  };
  auto str = [](double v) {
    std::ostringstream os;
    os << v;
    return os.str();
  };
  // NOTE: comparisons are written so that NaN fails them.
  if (!(p.temperature >= 0.0f) || std::isinf(p.temperature)) {
    return err("temperature", "must be a finite number >= 0, got " + str(p.temperature));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return err("top_p", "must be in (0, 1], got " + str(p.top_p));
  }
  if (p.top_k < -1) {
    return err("top_k", "must be -1 or 0 (disabled) or a positive count, got " + str(p.top_k));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return err("min_p", "must be in [0, 1], got " + str(p.min_p));
  }
  if (!(p.repetition_penalty > 0.0f) || std::isinf(p.repetition_penalty)) {
    return err("repetition_penalty",
               "must be a finite number > 0, got " + str(p.repetition_penalty));
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return err("presence_penalty", "must be in [-2, 2], got " + str(p.presence_penalty));
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return err("frequency_penalty", "must be in [-2, 2], got " + str(p.frequency_penalty));
  }
  for (const LogitBias& b : p.logit_bias) {
    if (b.token < 0 || b.token >= vocab_size) {
      return err("logit_bias", "token id " + str(b.token) + " is outside the vocabulary [0, " +
                                   str(vocab_size) + ")");
    }
    if (!(b.bias >= -100.0f && b.bias <= 100.0f)) {
      return err("logit_bias",
                 "value for token " + str(b.token) + " must be in [-100, 100], got " + str(b.bias));
    }
  }
  if (p.max_tokens < 1) return err("max_tokens", "must be >= 1, got " + str(p.max_tokens));
  if (p.min_tokens < 0) return err("min_tokens", "must be >= 0, got " + str(p.min_tokens));
  if (p.min_tokens > p.max_tokens) {
    return err("min_tokens",
               "must be <= max_tokens (" + str(p.max_tokens) + "), got " + str(p.min_tokens));
  }
  for (int32_t id : p.stop_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return err("stop_token_ids",
                 "token id " + str(id) + " is outside the vocabulary [0, " + str(vocab_size) + ")");
    }
  }
  if (p.logprobs.has_value() && (*p.logprobs < 0 || *p.logprobs > 20)) {
    return err("logprobs", "must be in [0, 20], got " + str(*p.logprobs));
  }
  return std::nullopt;
}

Status Validate(const SamplingParams& params, int32_t vocab_size) {
  std::optional<SamplingParamError> e = FindInvalidSamplingParam(params, vocab_size);
  if (!e.has_value()) return Status::Ok();
  return InvalidArgument(std::move(e->message));
}

}  // namespace llmux
