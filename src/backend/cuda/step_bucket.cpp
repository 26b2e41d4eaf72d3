#include "backend/cuda/step_bucket.h"

#include <initializer_list>

namespace llmux::cuda {
namespace {

// The splitmix64 finalizer.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t StepBucket(const StepShape& s) {
  // NOTE: each field is mixed into the running value in turn, so equal values in different
  // fields do not cancel or commute.
  uint64_t h = 0x6a09e667f3bcc908ull;
  for (uint64_t field : {static_cast<uint64_t>(s.tokens), static_cast<uint64_t>(s.seqs),
                         static_cast<uint64_t>(s.logits),
                         static_cast<uint64_t>(s.block_table_stride),
                         static_cast<uint64_t>(s.attention_splits), s.metadata_generation}) {
    h = Mix(h ^ field);
  }
  return h;
}

}  // namespace llmux::cuda
