// A real redis-server for the cluster tests: started on a free loopback port in a temp dir
// with persistence off, killed at the end. Under CI=true a missing redis-server fails the test.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "cluster/redis_connection.h"

namespace llmux::cluster::testing {

inline int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

inline std::string FindRedisServer() {
  for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

class RedisServer {
 public:
  RedisServer() : port_(FreeLoopbackPort()) {
    dir_ = std::filesystem::temp_directory_path() /
           ("llmux-redis-" + std::to_string(getpid()) + "-" + std::to_string(port_));
    std::filesystem::create_directories(dir_);
  }
  ~RedisServer() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts it and waits (bounded) until it answers PING. False when it did not.
  bool Start() {
    const std::string bin = FindRedisServer();
    if (bin.empty()) return false;
    pid_ = fork();
    if (pid_ == 0) {
      if (std::freopen("/dev/null", "w", stdout) == nullptr) _exit(127);
      const std::string port = std::to_string(port_);
      execl(bin.c_str(), bin.c_str(), "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", dir_.c_str(), "--loglevel", "warning", nullptr);
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      auto c = RedisConnection::Connect(Config(), {});
      if (c.ok() && (*c)->Command({"PING"}).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGCONT);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void Pause() { kill(pid_, SIGSTOP); }
  void Resume() { kill(pid_, SIGCONT); }

  int port() const { return port_; }
  // A cluster section for this server (replica id to fill in).
  ClusterSection Config(const std::string& replica = "") const {
    ClusterSection c;
    c.enabled = true;
    c.redis_url = "redis://127.0.0.1:" + std::to_string(port_);
    c.redis_host = "127.0.0.1";
    c.redis_port = port_;
    c.key_prefix = "test:";
    c.timeout = Millis(50);
    c.replica_id = replica;
    c.lease_ttl = Millis(900);
    return c;
  }
  // A direct connection for assertions.
  std::unique_ptr<RedisConnection> Client() const {
    auto c = RedisConnection::Connect(Config(), {});
    return c.ok() ? std::move(c).value() : nullptr;
  }

 private:
  int port_;
  pid_t pid_ = -1;
  std::filesystem::path dir_;
};

inline bool RequireRuntime() { return std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true"; }

}  // namespace llmux::cluster::testing

// Skips (or fails under CI=true) when redis-server is not installed or does not start.
#define LLMUX_START_REDIS(server)                                                     \
  do {                                                                                \
    if (!(server).Start()) {                                                          \
      if (::llmux::cluster::testing::RequireRuntime()) FAIL() << "redis-server did not start"; \
      GTEST_SKIP() << "redis-server not available";                                  \
    }                                                                                 \
  } while (0)
