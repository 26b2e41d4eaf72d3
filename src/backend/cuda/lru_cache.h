// A bounded map that evicts its least recently used entry: the CUDA graph
// cache's policy (step_graphs.h). Header-only host code, tested without a
// device.
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <optional>
#include <unordered_map>
#include <utility>

namespace llmux::cuda {

template <class K, class V, class Hash = std::hash<K>>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity) {}

  // The value for `key` (now the most recently used), or nullptr.
  V* Find(const K& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }

  // Inserts `key` (which must be absent) as the most recently used entry. When
  // the cache is full, the least recently used entry is removed first and
  // returned (the caller releases what it holds).
  std::optional<std::pair<K, V>> Insert(K key, V value) {
    std::optional<std::pair<K, V>> evicted;
    if (order_.size() >= capacity_ && !order_.empty()) {
      index_.erase(order_.back().first);
      evicted = std::move(order_.back());
      order_.pop_back();
    }
    order_.emplace_front(std::move(key), std::move(value));
    index_.emplace(order_.front().first, order_.begin());
    return evicted;
  }

  // Calls `release` on every value, most recent first, and empties the cache.
  template <class F>
  void Clear(F&& release) {
    for (auto& [k, v] : order_) release(v);
    order_.clear();
    index_.clear();
  }

  size_t size() const { return order_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  std::list<std::pair<K, V>> order_;  // most recently used first
  std::unordered_map<K, typename std::list<std::pair<K, V>>::iterator, Hash> index_;
};

}  // namespace llmux::cuda
