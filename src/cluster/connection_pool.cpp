#include "cluster/connection_pool.h"

namespace llmux::cluster {

StatusOr<std::unique_ptr<RedisConnection>> ConnectionPool::Take() {
  {
    MutexLock lock(mutex_);
    if (!idle_.empty()) {
      std::unique_ptr<RedisConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
  }
  return RedisConnection::Connect(cluster_, {});
}

void ConnectionPool::Give(std::unique_ptr<RedisConnection> conn) {
  if (conn == nullptr || !conn->healthy()) return;
  MutexLock lock(mutex_);
  if (idle_.size() < kMaxIdle) idle_.push_back(std::move(conn));
}

void ConnectionPool::Clear() {
  std::vector<std::unique_ptr<RedisConnection>> closing;
  {
    MutexLock lock(mutex_);
    closing.swap(idle_);
  }
}

}  // namespace llmux::cluster
