// The early-launch bucket of a decode step (src/backend/cuda/step_bucket.h), without a device:
// equal shapes share a bucket, and every field that can change the step's op signature under
// the same model changes it (a field left out would launch a graph of another shape early).
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <vector>

#ifdef LLMUX_HAVE_CUDA
#include "backend/cuda/step_bucket.h"
#endif

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
TEST(CudaStepBucket, EqualShapesShareABucketAndEveryFieldSplitsIt) {
  cuda::StepShape base;
  base.tokens = 3;
  base.seqs = 3;
  base.logits = 3;
  base.block_table_stride = 8;
  base.attention_splits = 2;
  base.metadata_generation = 5;
  cuda::StepShape same = base;
  EXPECT_EQ(cuda::StepBucket(base), cuda::StepBucket(same));

  const std::vector<std::function<void(cuda::StepShape&)>> changes = {
      [](cuda::StepShape& s) { s.tokens = 4; },
      [](cuda::StepShape& s) { s.seqs = 4; },
      [](cuda::StepShape& s) { s.logits = 2; },
      [](cuda::StepShape& s) { s.block_table_stride = 16; },
      [](cuda::StepShape& s) { s.attention_splits = 4; },
      [](cuda::StepShape& s) { s.metadata_generation = 6; },
  };
  std::set<uint64_t> buckets = {cuda::StepBucket(base)};
  for (size_t i = 0; i < changes.size(); ++i) {
    cuda::StepShape s = base;
    changes[i](s);
    EXPECT_TRUE(buckets.insert(cuda::StepBucket(s)).second) << "field " << i;
  }
  // Fields are not interchangeable (3 tokens of 4 sequences is not 4 tokens of 3).
  cuda::StepShape a = base, b = base;
  a.tokens = 4;
  b.seqs = 4;
  EXPECT_NE(cuda::StepBucket(a), cuda::StepBucket(b));
}
#endif  // LLMUX_HAVE_CUDA

}  // namespace
}  // namespace llmux
