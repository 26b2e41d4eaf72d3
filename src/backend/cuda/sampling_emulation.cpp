#include "backend/cuda/sampling_emulation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "llmux/status.h"
#include "sampling_select.h"

namespace llmux::cuda {
namespace {

namespace sel = kernels::sampling;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The first order value of the row (its argmax).
uint64_t First(const std::vector<float>& l, int id_bits) {
  uint64_t best = ~0ull;
  for (size_t i = 0; i < l.size(); ++i) {
    best = std::min(best, sel::OrderValue(l[i], static_cast<int32_t>(i), id_bits));
  }
  return best;
}

int32_t IdOf(uint64_t order, int id_bits) {
  return static_cast<int32_t>(order & ((1ull << id_bits) - 1));
}

}  // namespace

Crossing DescendOnHost(std::span<const uint64_t> order, std::span<const uint64_t> weights,
                       int total_bits, bool by_count, uint64_t target) {
  std::vector<uint64_t> count(sel::kBuckets);
  std::vector<uint64_t> weight(sel::kBuckets);
  uint64_t before_count = 0;
  uint64_t before_weight = 0;
  uint64_t prefix = 0;  // the digits chosen so far
  int matched_bits = 0;  // how many of the top bits `prefix` fixes
  const int levels = sel::DigitLevels(total_bits);
  for (int level = 0; level < levels; ++level) {
    const int shift = sel::DigitShift(total_bits, level);
    const int width = sel::DigitWidth(total_bits, level);
    std::fill(count.begin(), count.end(), 0);
    std::fill(weight.begin(), weight.end(), 0);
    for (size_t i = 0; i < order.size(); ++i) {
      if (weights[i] == 0) continue;
      if (matched_bits > 0 && (order[i] >> (total_bits - matched_bits)) != prefix) continue;
      const uint64_t d = (order[i] >> shift) & ((1ull << width) - 1);
      count[d] += 1;
      weight[d] += weights[i];
    }
    // The first bucket in which the prefix reaches the target.
    uint64_t c = before_count;
    uint64_t w = before_weight;
    uint32_t chosen = 0;
    bool found = false;
    for (uint32_t d = 0; d < (1u << width); ++d) {
      if ((by_count ? c + count[d] : w + weight[d]) >= target && count[d] > 0) {
        chosen = d;
        found = true;
        break;
      }
      c += count[d];
      w += weight[d];
    }
    LLMUX_CHECK(found) << "descent target " << target << " beyond the candidates' total";
    before_count = c;
    before_weight = w;
    prefix = (prefix << width) | chosen;
    matched_bits += width;
    if (count[chosen] == 1 || shift == 0) {
      // One candidate left under this prefix (at the last level order values are unique).
      for (size_t i = 0; i < order.size(); ++i) {
        if (weights[i] != 0 && (order[i] >> shift) == prefix) {
          return {order[i], before_count + 1, before_weight + weights[i]};
        }
      }
    }
  }
  LLMUX_CHECK(false) << "descent did not end";
  return {};
}

std::vector<kernels::SampledRow> EmulateSampling(const SamplingPacker& packer,
                                                 std::span<const float> logits, int64_t stride,
                                                 int32_t vocab) {
  const SamplingSections sec = packer.sections();
  std::vector<std::byte> upload(sec.total);
  packer.WriteTo(upload.data());
  std::vector<uint32_t> masks((sec.total - sec.masks) / 4);
  if (!masks.empty()) std::memcpy(masks.data(), upload.data() + sec.masks, masks.size() * 4);
  const std::vector<kernels::SamplingRowParams>& params = packer.rows();
  const std::vector<kernels::LogitEdit>& edits = packer.edits();
  const std::vector<float>& biases = packer.biases();
  const int id_bits = sel::IdBits(vocab);
  const int total_bits = 32 + id_bits;

  std::vector<kernels::SampledRow> out(params.size());
  std::vector<float> l(vocab);
  std::vector<uint64_t> order(vocab);
  std::vector<uint64_t> weights(vocab);
  for (size_t row = 0; row < params.size(); ++row) {
    const kernels::SamplingRowParams& p = params[row];
    const float* raw = logits.data() + static_cast<int64_t>(row) * stride;
    // 1. NaN and masked tokens -> -inf.
    for (int32_t i = 0; i < vocab; ++i) {
      const bool allowed =
          p.mask_offset < 0 || ((masks[p.mask_offset + (i >> 5)] >> (i & 31)) & 1u) != 0;
      l[i] = raw[i] != raw[i] || !allowed ? kNegInf : raw[i];
    }
    // 2. The edits, with the kernel's roundings.
    std::vector<float> edit_raw;
    const bool counts = p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
    for (int32_t e = p.edit_begin; e < p.edit_end; ++e) {
      const kernels::LogitEdit& ed = edits[e];
      float x = l[ed.token];
      edit_raw.push_back(x);
      // NOTE: no product here is followed by a sum, so the compiler contracts nothing; the
      // frequency term is the explicit fma the kernel and the host sampler also use.
      for (int32_t b = ed.bias_begin; b < ed.bias_end; ++b) x = x + biases[b];
      if (ed.flags & kernels::kEditSuppress) x = kNegInf;
      if (ed.flags & kernels::kEditRepeat) {
        x = x > 0.0f ? x / p.repetition_penalty : x * p.repetition_penalty;
      }
      if (counts && ed.output_count > 0) {
        x = std::fma(-p.frequency_penalty, static_cast<float>(ed.output_count), x);
        x = x - p.presence_penalty;
      }
      l[ed.token] = x;
    }
    // 3. The argmax; everything suppressed -> the masked raw logits, greedy.
    uint64_t first = First(l, id_bits);
    bool greedy = p.inv_temperature == 0.0f;
    if (l[IdOf(first, id_bits)] == kNegInf) {
      for (int32_t e = p.edit_begin; e < p.edit_end; ++e) {
        l[edits[e].token] = edit_raw[e - p.edit_begin];
      }
      first = First(l, id_bits);
      greedy = true;
    }
    const float lmax = l[IdOf(first, id_bits)];
    if (lmax == std::numeric_limits<float>::infinity()) greedy = true;
    int32_t token = IdOf(first, id_bits);
    // 4. The draw.
    if (!greedy) {
      uint64_t nnz = 0;
      uint64_t total = 0;
      uint64_t above_min_p = 0;
      for (int32_t i = 0; i < vocab; ++i) {
        const float w = sel::Weight(sel::Scaled(l[i], lmax, p.inv_temperature));
        order[i] = sel::OrderValue(l[i], i, id_bits);
        weights[i] = sel::FixedWeight(w);
        if (weights[i] == 0) continue;
        ++nnz;
        total += weights[i];
        if (w >= p.min_p) ++above_min_p;
      }
      uint64_t kept = nnz;
      uint64_t mass = total;
      if (p.top_k > 0 && static_cast<uint64_t>(p.top_k) < nnz) {
        const Crossing c = DescendOnHost(order, weights, total_bits, true, p.top_k);
        kept = c.count;
        mass = c.weight;
      }
      if (p.top_p < 1.0f) {
        const Crossing c =
            DescendOnHost(order, weights, total_bits, false, sel::TopPTarget(mass, p.top_p));
        kept = c.count;
        mass = c.weight;
      }
      if (p.min_p > 0.0f && above_min_p < kept) {
        const Crossing c = DescendOnHost(order, weights, total_bits, true, above_min_p);
        kept = c.count;
        mass = c.weight;
      }
      token = IdOf(
          DescendOnHost(order, weights, total_bits, false, sel::DrawTarget(mass, p.uniform)).order,
          id_bits);
    }
    // 5. Logprobs of the processed logits.
    kernels::SampledRow& o = out[row];
    o.token = token;
    o.logprob = 0.0f;
    o.num_top = 0;
    if (p.logprobs < 0) continue;
    if (std::isinf(lmax)) {
      o.logprob = l[token] == lmax ? 0.0f : kNegInf;
      continue;
    }
    uint64_t sum = 0;
    for (int32_t i = 0; i < vocab; ++i) {
      sum += sel::FixedWeight(sel::Weight(sel::Scaled(l[i], lmax, 1.0f)));
    }
    const double lse = static_cast<double>(lmax) + std::log(static_cast<double>(sum)) -
                       sel::kWeightBits * 0.69314718055994530942;
    o.logprob = static_cast<float>(static_cast<double>(l[token]) - lse);
    const int n = std::min(std::min(p.logprobs, kernels::kMaxTopLogprobs), vocab);
    for (int32_t i = 0; i < vocab; ++i) order[i] = sel::OrderValue(l[i], i, id_bits);
    std::vector<uint64_t> sorted(order.begin(), order.end());
    std::partial_sort(sorted.begin(), sorted.begin() + n, sorted.end());
    for (int j = 0; j < n; ++j) {
      const int32_t id = IdOf(sorted[j], id_bits);
      o.top_tokens[j] = id;
      o.top_logprobs[j] = static_cast<float>(static_cast<double>(l[id]) - lse);
    }
    o.num_top = n;
  }
  return out;
}

}  // namespace llmux::cuda
