#include "cluster/redis_connection.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

namespace llmux::cluster {
namespace {

timeval ToTimeval(Millis d) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(d.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
  return tv;
}

// Appends `reply`'s integers (recursing into arrays); strings that hold integers count too.
void Flatten(const redisReply* reply, std::vector<int64_t>* out) {
  switch (reply->type) {
    case REDIS_REPLY_INTEGER:
      out->push_back(reply->integer);
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: {
      char* end = nullptr;
      const long long v = std::strtoll(reply->str, &end, 10);
      if (end != reply->str && *end == '\0') out->push_back(v);
      break;
    }
    case REDIS_REPLY_ARRAY:
      for (size_t i = 0; i < reply->elements; ++i) Flatten(reply->element[i], out);
      break;
    default:
      break;
  }
}

}  // namespace

StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Connect(
    const ClusterSection& cluster, std::vector<RedisScript*> scripts) {
  const timeval tv = ToTimeval(cluster.timeout);
  redisContext* c = cluster.redis_socket.empty()
                        ? redisConnectWithTimeout(cluster.redis_host.c_str(), cluster.redis_port, tv)
                        : redisConnectUnixWithTimeout(cluster.redis_socket.c_str(), tv);
  const std::string where = cluster.redis_socket.empty()
                                ? cluster.redis_host + ":" + std::to_string(cluster.redis_port)
                                : cluster.redis_socket;
  if (c == nullptr) return Unavailable("redis " + where + ": out of memory");
  if (c->err != 0) {
    std::string e = c->errstr;
    redisFree(c);
    return Unavailable("redis " + where + ": " + e);
  }
  if (redisSetTimeout(c, tv) != REDIS_OK) {
    redisFree(c);
    return Unavailable("redis " + where + ": cannot set the timeout");
  }
  std::unique_ptr<RedisConnection> conn(new RedisConnection(c));
  if (!cluster.redis_password.empty()) {
    std::string err;
    auto r = conn->Run({"AUTH", cluster.redis_password}, &err);
    if (!r.ok()) return Unavailable("redis " + where + ": AUTH: " + r.status().message());
  }
  if (cluster.redis_db != 0) {
    std::string err;
    auto r = conn->Run({"SELECT", std::to_string(cluster.redis_db)}, &err);
    if (!r.ok()) return Unavailable("redis " + where + ": SELECT: " + r.status().message());
  }
  for (RedisScript* s : scripts) {
    const char* argv[] = {"SCRIPT", "LOAD", s->source.c_str()};
    const size_t lens[] = {6, 4, s->source.size()};
    auto* reply = static_cast<redisReply*>(redisCommandArgv(c, 3, argv, lens));
    if (reply == nullptr) return Unavailable("redis " + where + ": SCRIPT LOAD: " + c->errstr);
    const bool ok = reply->type == REDIS_REPLY_STRING;
    std::string text = reply->str != nullptr ? std::string(reply->str, reply->len) : "";
    freeReplyObject(reply);
    if (!ok) return Internal("redis " + where + ": SCRIPT LOAD: " + text);
    // NOTE: set once, before any other thread reads it; later connections only compare.
    if (s->sha.empty()) {
      s->sha = text;
    } else if (s->sha != text) {
      return Internal("redis " + where + ": SCRIPT LOAD returned another SHA-1");
    }
  }
  return conn;
}

RedisConnection::~RedisConnection() { redisFree(context_); }

bool RedisConnection::healthy() const { return context_->err == 0; }

StatusOr<RedisReply> RedisConnection::Run(const std::vector<std::string>& argv,
                                          std::string* error_text) {
  if (!healthy()) return Unavailable(std::string("redis connection broken: ") + context_->errstr);
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(context_, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  if (reply == nullptr) {
    // I/O error or timeout: the context is unusable from now on.
    return Unavailable(std::string("redis: ") + context_->errstr);
  }
  RedisReply out;
  if (reply->type == REDIS_REPLY_ERROR) {
    *error_text = std::string(reply->str, reply->len);
    freeReplyObject(reply);
    return Internal("redis: " + *error_text);
  }
  Flatten(reply, &out.values);
  freeReplyObject(reply);
  return out;
}

StatusOr<RedisReply> RedisConnection::Command(const std::vector<std::string>& argv) {
  std::string err;
  return Run(argv, &err);
}

StatusOr<RedisReply> RedisConnection::Eval(const RedisScript& script,
                                           const std::vector<std::string>& keys,
                                           const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"EVALSHA", script.sha, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  std::string err;
  auto r = Run(argv, &err);
  if (r.ok() || err.rfind("NOSCRIPT", 0) != 0) return r;
  argv[0] = "EVAL";
  argv[1] = script.source;
  return Run(argv, &err);
}

}  // namespace llmux::cluster
