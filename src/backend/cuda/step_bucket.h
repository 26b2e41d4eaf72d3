// The bucket of a decode step for early graph launch (step_graphs.h): what decides its ops'
// signature besides the model itself. Plain C++ (no CUDA), tested without a device.
#pragma once

#include <cstdint>

namespace llmux::cuda {

struct StepShape {
  int tokens = 0;
  int seqs = 0;
  int logits = 0;              // logits rows
  int block_table_stride = 0;  // BatchMetadata's (a power of two)
  int attention_splits = 0;    // the attention grid depth (a power of two)
  uint64_t metadata_generation = 0;  // bumped when the metadata buffers move
};

// Equal shapes give equal buckets; a change of any field gives another (a 64-bit mix, so
// collisions are as unlikely as a hash's).
uint64_t StepBucket(const StepShape& shape);

}  // namespace llmux::cuda
