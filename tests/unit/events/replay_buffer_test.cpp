#include "events/replay_buffer.h"

#include <gtest/gtest.h>

namespace llmux::events {
namespace {

std::string Payload(uint64_t seq) {
  std::string p = std::to_string(seq);
  p.insert(p.begin(), 'p');
  return p;
}

std::vector<uint64_t> Seqs(const ReplayBuffer& b, uint64_t from) {
  std::vector<uint64_t> out;
  for (const auto& [seq, payload] : b.From(from)) {
    out.push_back(seq);
    EXPECT_EQ(*payload, Payload(seq));
  }
  return out;
}

TEST(ReplayBufferTest, KeepsTheLastCapacityBatches) {
  ReplayBuffer b(3);
  for (uint64_t s = 0; s < 5; ++s) b.Add(s, Payload(s));
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(Seqs(b, 0), (std::vector<uint64_t>{2, 3, 4}));
  EXPECT_EQ(Seqs(b, 3), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(Seqs(b, 4), (std::vector<uint64_t>{4}));
  EXPECT_TRUE(Seqs(b, 5).empty());
}

TEST(ReplayBufferTest, ZeroCapacityKeepsNothing) {
  ReplayBuffer b(0);
  b.Add(0, "p0");
  EXPECT_EQ(b.size(), 0u);
  EXPECT_TRUE(Seqs(b, 0).empty());
}

}  // namespace
}  // namespace llmux::events
