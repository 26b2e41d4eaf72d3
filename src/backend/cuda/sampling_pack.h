// Host side of device sampling: packs one step's SampleBatch into the arrays the sampling
// kernel reads (kernels/sampling_layout.h), laid out in one contiguous upload. Plain C++ (no
// CUDA), so its layout is tested without a device. Engine thread (owned by the CUDA backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "llmux/backend.h"
#include "llmux/status.h"
#include "sampling_layout.h"

namespace llmux::cuda {

// Byte offsets of the sections of one upload, each 16-byte aligned:
//   [rows: SamplingRowParams x num_rows][edits: LogitEdit x num_edits]
//   [biases: float x num_biases][masks: uint32 x num_masked_rows * mask_words]
struct SamplingSections {
  size_t rows = 0;
  size_t edits = 0;
  size_t biases = 0;
  size_t masks = 0;
  size_t total = 0;
};

class SamplingPacker {
 public:
  SamplingPacker() = default;
  SamplingPacker(const SamplingPacker&) = delete;
  SamplingPacker& operator=(const SamplingPacker&) = delete;

  // Packs `batch` for a vocabulary of `vocab` tokens. InvalidArgument (nothing usable packed)
  // for a vocabulary outside [1, kernels::sampling::kMaxVocab], a row without params, a mask
  // that is not ceil(vocab / 32) words, a token id (logit_bias, stop_token_ids, EOS, prompt,
  // output) outside [0, vocab), or logprobs above 20.
  Status Pack(const SampleBatch& batch, int32_t vocab);

  // Valid after a successful Pack, until the next.
  const std::vector<kernels::SamplingRowParams>& rows() const { return rows_; }
  const std::vector<kernels::LogitEdit>& edits() const { return edits_; }
  const std::vector<float>& biases() const { return biases_; }
  int32_t mask_words() const { return mask_words_; }
  int32_t masked_rows() const { return static_cast<int32_t>(masks_.size()); }
  SamplingSections sections() const;
  // Writes the upload (sections() layout) to `dst`, which holds sections().total bytes.
  void WriteTo(std::byte* dst) const;

 private:
  // The edit of `token` in the current row, created on first use.
  kernels::LogitEdit& EditFor(int32_t token);

  std::vector<kernels::SamplingRowParams> rows_;
  std::vector<kernels::LogitEdit> edits_;
  std::vector<float> biases_;
  std::vector<std::span<const uint32_t>> masks_;  // the masked rows' masks, in row order
  int32_t mask_words_ = 0;
  // [vocab] index in edits_ of a token's edit in the current row, valid where
  // stamp_[token] == generation_.
  std::vector<int32_t> slot_;
  std::vector<uint32_t> stamp_;
  uint32_t generation_ = 0;
};

}  // namespace llmux::cuda
