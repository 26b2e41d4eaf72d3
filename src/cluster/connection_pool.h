// Idle Redis connections for the I/O threads: a thread takes one for a command and gives it
// back, so concurrent admissions never queue behind each other on one socket.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "cluster/redis_connection.h"
#include "llmux/thread_annotations.h"

namespace llmux::cluster {

// Thread-safe.
class ConnectionPool {
 public:
  explicit ConnectionPool(const ClusterSection& cluster) : cluster_(cluster) {}

  // An idle connection, or a new one (connect bounded by cluster.timeout; no scripts are
  // loaded: the store thread loaded them, EVALSHA falls back to EVAL on NOSCRIPT).
  StatusOr<std::unique_ptr<RedisConnection>> Take();
  // Keeps `conn` for reuse when it is healthy (at most kMaxIdle); closes it otherwise.
  void Give(std::unique_ptr<RedisConnection> conn);
  // Closes every idle connection (the store went down).
  void Clear();

 private:
  static constexpr size_t kMaxIdle = 32;
  const ClusterSection cluster_;
  Mutex mutex_;
  std::vector<std::unique_ptr<RedisConnection>> idle_ GUARDED_BY(mutex_);
};

}  // namespace llmux::cluster
