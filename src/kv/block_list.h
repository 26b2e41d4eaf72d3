// Intrusive doubly linked FIFO of block ids with O(1) push, pop and removal from the middle.
// Two lists may share one BlockLinks table as long as a block is in at most one list.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "llmux/status.h"

namespace llmux {

// prev/next per block; kNone marks list ends and "not linked".
struct BlockLinks {
  static constexpr int32_t kNone = -1;
  explicit BlockLinks(int32_t n) : prev(n, kNone), next(n, kNone), owner(n, 0) {}
  std::vector<int32_t> prev;
  std::vector<int32_t> next;
  std::vector<uint8_t> owner;  // id of the list holding the block, 0 for none
};

class BlockList {
 public:
  // id > 0 names the list inside `links`.
  BlockList(std::shared_ptr<BlockLinks> links, uint8_t id) : links_(std::move(links)), id_(id) {}

  int32_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool contains(int32_t b) const { return links_->owner[b] == id_; }
  int32_t front() const { return head_; }

  void PushBack(int32_t b) {
    BlockLinks& l = *links_;
    LLMUX_CHECK(l.owner[b] == 0) << "block " << b << " already in list " << int{l.owner[b]};
    l.owner[b] = id_;
    l.prev[b] = tail_;
    l.next[b] = BlockLinks::kNone;
    if (tail_ != BlockLinks::kNone) l.next[tail_] = b; else head_ = b;
    tail_ = b;
    ++size_;
  }

  void Remove(int32_t b) {
    BlockLinks& l = *links_;
    LLMUX_CHECK(l.owner[b] == id_) << "block " << b << " not in list " << int{id_};
    const int32_t p = l.prev[b], n = l.next[b];
    if (p != BlockLinks::kNone) l.next[p] = n; else head_ = n;
    if (n != BlockLinks::kNone) l.prev[n] = p; else tail_ = p;
    l.owner[b] = 0;
    l.prev[b] = l.next[b] = BlockLinks::kNone;
    --size_;
  }

  int32_t PopFront() {
    const int32_t b = head_;
    Remove(b);
    return b;
  }

  std::vector<int32_t> ToVector() const {
    std::vector<int32_t> v;
    v.reserve(size_);
    for (int32_t b = head_; b != BlockLinks::kNone; b = links_->next[b]) v.push_back(b);
    return v;
  }

 private:
  std::shared_ptr<BlockLinks> links_;
  uint8_t id_;
  int32_t head_ = BlockLinks::kNone;
  int32_t tail_ = BlockLinks::kNone;
  int32_t size_ = 0;
};

}  // namespace llmux
