// Turns a SchedulerOutput into the flat ForwardBatch the model computes.
#pragma once

#include "llmux/forward_batch.h"
#include "llmux/scheduler.h"

namespace llmux {

// Engine thread only; reuses its buffers across steps.
class BatchBuilder {
 public:
  explicit BatchBuilder(int32_t block_size) : block_size_(block_size) {}

  // The batch for `plan`: one row per scheduled token (sequence order as in plan.seqs), the
  // sequences' block tables padded with -1 to the longest, and logits rows for each sequence
  // whose `samples` is set, in plan order; `stop` as ForwardBatch::stop. Valid until the next
  // Build.
  const ForwardBatch& Build(const SchedulerOutput& plan, const std::atomic<bool>* stop = nullptr);

 private:
  int32_t block_size_;
  ForwardBatch batch_;
};

}  // namespace llmux
