#include "backend/cuda/sampling_pack.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "llmux/rng.h"
#include "sampling_select.h"

namespace llmux::cuda {
namespace {

// The host sampler's greedy threshold (src/sampling/sampler.cpp: vLLM's _SAMPLING_EPS).
constexpr float kGreedyTemperature = 1e-5f;

size_t Align16(size_t n) { return (n + 15) & ~size_t{15}; }

Status BadId(const char* what, int32_t id, int32_t vocab) {
  return InvalidArgument(std::string("SampleTokens: ") + what + " token id " + std::to_string(id) +
                         " outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

}  // namespace

kernels::LogitEdit& SamplingPacker::EditFor(int32_t token) {
  if (stamp_[token] != generation_) {
    stamp_[token] = generation_;
    slot_[token] = static_cast<int32_t>(edits_.size());
    kernels::LogitEdit e;
    e.token = token;
    edits_.push_back(e);
  }
  return edits_[slot_[token]];
}

Status SamplingPacker::Pack(const SampleBatch& batch, int32_t vocab) {
  rows_.clear();
  edits_.clear();
  biases_.clear();
  masks_.clear();
  if (vocab <= 0 || vocab > kernels::sampling::kMaxVocab) {
    return InvalidArgument("SampleTokens: a vocabulary of " + std::to_string(vocab) +
                           " tokens (device sampling takes 1 to " +
                           std::to_string(kernels::sampling::kMaxVocab) + ")");
  }
  mask_words_ = (vocab + 31) / 32;
  if (static_cast<int32_t>(slot_.size()) != vocab) {
    slot_.assign(vocab, 0);
    stamp_.assign(vocab, 0);
    generation_ = 0;
  }
  auto in_vocab = [vocab](int32_t t) { return t >= 0 && t < vocab; };
  for (int32_t id : batch.eos_token_ids) {
    if (!in_vocab(id)) return BadId("EOS", id, vocab);
  }
  for (const SampleRow& row : batch.rows) {
    if (row.params == nullptr) return InvalidArgument("SampleTokens: a row without params");
    const SamplingParams& p = *row.params;
    if (++generation_ == 0) {  // wrapped: old marks could collide with new ones
      std::fill(stamp_.begin(), stamp_.end(), 0u);
      generation_ = 1;
    }
    kernels::SamplingRowParams r;
    const bool greedy = p.temperature < kGreedyTemperature || p.top_k == 1;
    r.inv_temperature = greedy ? 0.0f : 1.0f / p.temperature;
    r.top_k = p.top_k > 0 && p.top_k < vocab ? p.top_k : 0;
    r.top_p = p.top_p;
    r.min_p = p.min_p;
    r.uniform = UniformAt(row.seed, row.output_token_ids.size());
    r.repetition_penalty = p.repetition_penalty;
    r.frequency_penalty = p.frequency_penalty;
    r.presence_penalty = p.presence_penalty;
    if (p.logprobs.has_value()) {
      if (*p.logprobs < 0 || *p.logprobs > kernels::kMaxTopLogprobs) {
        return InvalidArgument("SampleTokens: logprobs must be in [0, 20], got " +
                               std::to_string(*p.logprobs));
      }
      r.logprobs = *p.logprobs;
    }
    if (!row.allowed.empty()) {
      if (static_cast<int32_t>(row.allowed.size()) != mask_words_) {
        return InvalidArgument("SampleTokens: an allowed-token mask of " +
                               std::to_string(row.allowed.size()) + " words for vocab " +
                               std::to_string(vocab));
      }
      r.mask_offset = static_cast<int32_t>(masks_.size()) * mask_words_;
      masks_.push_back(row.allowed);
    }

    // The edits, in the host sampler's order of stages (each stage only marks the token).
    r.edit_begin = static_cast<int32_t>(edits_.size());
    for (const LogitBias& b : p.logit_bias) {  // bias_end counts the token's biases for now
      if (!in_vocab(b.token)) return BadId("logit_bias", b.token, vocab);
      ++EditFor(b.token).bias_end;
    }
    if (static_cast<int64_t>(row.output_token_ids.size()) < p.min_tokens) {
      if (!p.ignore_eos) {
        for (int32_t id : batch.eos_token_ids) EditFor(id).flags |= kernels::kEditSuppress;
      }
      for (int32_t id : p.stop_token_ids) {
        if (!in_vocab(id)) return BadId("stop_token_ids", id, vocab);
        EditFor(id).flags |= kernels::kEditSuppress;
      }
    }
    if (p.repetition_penalty != 1.0f) {
      for (int32_t t : row.prompt_token_ids) {
        if (!in_vocab(t)) return BadId("prompt", t, vocab);
        EditFor(t).flags |= kernels::kEditRepeat;
      }
      for (int32_t t : row.output_token_ids) {
        if (!in_vocab(t)) return BadId("output", t, vocab);
        EditFor(t).flags |= kernels::kEditRepeat;
      }
    }
    if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
      for (int32_t t : row.output_token_ids) {
        if (!in_vocab(t)) return BadId("output", t, vocab);
        ++EditFor(t).output_count;
      }
    }
    r.edit_end = static_cast<int32_t>(edits_.size());
    // Each edit's biases get a contiguous range, filled in the request's list order (the
    // host adds a token's biases one after another, in that order).
    int32_t at = static_cast<int32_t>(biases_.size());
    for (int32_t e = r.edit_begin; e < r.edit_end; ++e) {
      const int32_t count = edits_[e].bias_end;
      edits_[e].bias_begin = at;
      edits_[e].bias_end = at;
      at += count;
    }
    biases_.resize(static_cast<size_t>(at));
    for (const LogitBias& b : p.logit_bias) {
      kernels::LogitEdit& e = edits_[slot_[b.token]];
      biases_[static_cast<size_t>(e.bias_end++)] = b.bias;
    }
    rows_.push_back(r);
  }
  return Status::Ok();
}

SamplingSections SamplingPacker::sections() const {
  SamplingSections s;
  s.rows = 0;
  s.edits = Align16(s.rows + rows_.size() * sizeof(kernels::SamplingRowParams));
  s.biases = Align16(s.edits + edits_.size() * sizeof(kernels::LogitEdit));
  s.masks = Align16(s.biases + biases_.size() * sizeof(float));
  s.total = Align16(s.masks + masks_.size() * static_cast<size_t>(mask_words_) * 4);
  return s;
}

void SamplingPacker::WriteTo(std::byte* dst) const {
  const SamplingSections s = sections();
  std::memset(dst, 0, s.total);  // padding included: the upload is fully defined
  if (!rows_.empty()) {
    std::memcpy(dst + s.rows, rows_.data(), rows_.size() * sizeof(kernels::SamplingRowParams));
  }
  if (!edits_.empty()) {
    std::memcpy(dst + s.edits, edits_.data(), edits_.size() * sizeof(kernels::LogitEdit));
  }
  if (!biases_.empty()) std::memcpy(dst + s.biases, biases_.data(), biases_.size() * 4);
  std::byte* m = dst + s.masks;
  for (const std::span<const uint32_t>& mask : masks_) {
    std::memcpy(m, mask.data(), mask.size() * 4);
    m += mask.size() * 4;
  }
}

}  // namespace llmux::cuda
