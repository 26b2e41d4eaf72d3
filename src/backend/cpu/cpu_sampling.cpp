// CpuBackend::SampleTokens: the host sampler (src/sampling/sampler.h) over each logits row,
// which the CPU backend's ops leave in host memory, so nothing is copied.
#include <algorithm>
#include <string>

#include "backend/cpu/cpu_backend.h"

namespace llmux::cpu {

Status CpuBackend::SampleTokens(Tensor logits, const SampleBatch& batch,
                                std::vector<SampledToken>* out) {
  const int64_t rows = static_cast<int64_t>(batch.rows.size());
  if (logits.dtype != DType::kF32) return InvalidArgument("cpu: SampleTokens needs f32 logits");
  if (logits.rows != rows) {
    return InvalidArgument("cpu: SampleTokens: " + std::to_string(rows) + " rows for " +
                           std::to_string(logits.rows) + " logits rows");
  }
  out->resize(static_cast<size_t>(rows));
  if (rows == 0) return Status::Ok();
  const int64_t vocab = logits.cols;
  const size_t mask_words = static_cast<size_t>((vocab + 31) / 32);
  for (const SampleRow& row : batch.rows) {
    if (row.params == nullptr) return InvalidArgument("cpu: SampleTokens: a row without params");
    if (!row.allowed.empty() && row.allowed.size() != mask_words) {
      return InvalidArgument("cpu: SampleTokens: an allowed-token mask of " +
                             std::to_string(row.allowed.size()) + " words for vocab " +
                             std::to_string(vocab));
    }
  }
  if (sampler_ == nullptr || sampler_->vocab_size() != vocab ||
      !std::equal(sampler_eos_.begin(), sampler_eos_.end(), batch.eos_token_ids.begin(),
                  batch.eos_token_ids.end())) {
    sampler_eos_.assign(batch.eos_token_ids.begin(), batch.eos_token_ids.end());
    sampler_ = std::make_unique<Sampler>(static_cast<int32_t>(vocab), sampler_eos_);
  }
  const auto* base = static_cast<const float*>(logits.data);
  for (int64_t r = 0; r < rows; ++r) {
    const SampleRow& row = batch.rows[static_cast<size_t>(r)];
    const std::span<const float> values(base + r * logits.stride, static_cast<size_t>(vocab));
    const SequenceView view{row.prompt_token_ids, row.output_token_ids, row.seed};
    (*out)[static_cast<size_t>(r)] = sampler_->Sample(values, *row.params, view, row.allowed);
  }
  return Status::Ok();
}

}  // namespace llmux::cpu
