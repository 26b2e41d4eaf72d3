// One blocking hiredis connection with every connect and command bounded by a timeout, and the
// Lua scripts the cluster state runs (loaded at connect, called by EVALSHA, NOSCRIPT handled).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmux/config.h"
#include "llmux/status.h"

struct redisContext;

namespace llmux::cluster {

// A reply flattened to what the scripts return: an integer, or an array of integers.
struct RedisReply {
  std::vector<int64_t> values;
};

// One script: its source and its SHA-1 (as SCRIPT LOAD reports it).
struct RedisScript {
  std::string source;
  std::string sha;
};

// Not thread-safe: one thread uses a connection at a time (RedisPool hands them out).
class RedisConnection {
 public:
  // Connects (TCP or unix socket), sends AUTH and SELECT when configured, and loads `scripts`
  // (filling an empty `sha`; a set one must match). Unavailable when Redis cannot be reached within `cluster.timeout`
  // or answers with an error.
  static StatusOr<std::unique_ptr<RedisConnection>> Connect(const ClusterSection& cluster,
                                                            std::vector<RedisScript*> scripts);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // EVALSHA `script` with `keys` and `args`; on NOSCRIPT (a restarted or flushed Redis) EVAL
  // with the source, which caches it again. Unavailable on an I/O error or timeout (the
  // connection is then broken for good: discard it), Internal on a script error.
  StatusOr<RedisReply> Eval(const RedisScript& script, const std::vector<std::string>& keys,
                            const std::vector<std::string>& args);
  // A plain command (tests, diagnostics). Replies as Eval.
  StatusOr<RedisReply> Command(const std::vector<std::string>& argv);

  // False once an I/O error or timeout broke the connection.
  bool healthy() const;

 private:
  explicit RedisConnection(redisContext* context) : context_(context) {}
  // Sends argv; the raw reply converted, or the error.
  StatusOr<RedisReply> Run(const std::vector<std::string>& argv, std::string* error_text);

  redisContext* context_;
};

}  // namespace llmux::cluster
