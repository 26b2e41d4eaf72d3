// A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a postmaster on 127.0.0.1 and
// a free port, stop/start at will, removed at the end. Runs initdb/pg_ctl as `nobody` when the
// test runs as root (PostgreSQL refuses root). Binaries from LLMUX_PG_BIN, else the newest
// /usr/lib/postgresql/*/bin.
#pragma once

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

namespace llmux::testing_pg {

namespace fs = std::filesystem;

// Empty when no initdb is found.
inline fs::path FindPgBin() {
  if (const char* env = std::getenv("LLMUX_PG_BIN"); env && *env) {
    return fs::exists(fs::path(env) / "initdb") ? fs::path(env) : fs::path();
  }
  fs::path best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "initdb") &&
        (best.empty() || e.path() > best.parent_path())) {
      best = e.path() / "bin";
    }
  }
  return best;
}

inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

class PgCluster {
 public:
  // Returns null and sets `error` when PostgreSQL is missing (`*missing` = true) or fails to
  // start (false; `error` then carries initdb's / pg_ctl's output).
  static std::unique_ptr<PgCluster> Start(const std::string& name, std::string* error,
                                          bool* missing) {
    *missing = false;
    const fs::path bin = FindPgBin();
    if (bin.empty()) {
      *missing = true;
      *error =
          "no PostgreSQL server binaries (LLMUX_PG_BIN, /usr/lib/postgresql/*/bin; "
          "apt-get install postgresql)";
      return nullptr;
    }
    auto c = std::unique_ptr<PgCluster>(new PgCluster());
    c->bin_ = bin;
    c->dir_ = fs::temp_directory_path() / ("llmux-pg-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(c->dir_);
    fs::create_directories(c->dir_);
    c->port_ = FreePort();
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("nobody");
      if (pw == nullptr || ::chown(c->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        *error = "cannot hand " + c->dir_.string() + " to user nobody";
        return nullptr;
      }
      c->as_ = "runuser -u nobody -- ";
    }
    if (!c->Run("initdb -D " + (c->dir_ / "data").string() +
                " -U llmux --auth=trust -E UTF8 --locale=C -N")) {
      *error = "initdb failed: " + c->Log("cmd.log");
      return nullptr;
    }
    if (!c->StartServer()) {
      *error = "pg_ctl start failed: " + c->Log("cmd.log") + c->Log("server.log");
      return nullptr;
    }
    return c;
  }

  ~PgCluster() {
    (void)Run("pg_ctl -D " + (dir_ / "data").string() + " -m immediate -w stop");
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string url() const {
    return "postgresql://llmux@127.0.0.1:" + std::to_string(port_) + "/postgres";
  }
  int port() const { return port_; }

  bool StartServer() {
    return Run("pg_ctl -D " + (dir_ / "data").string() + " -l " + (dir_ / "server.log").string() +
               " -o '-k " + dir_.string() + " -p " + std::to_string(port_) +
               " -c listen_addresses=127.0.0.1' -w -t 30 start");
  }
  // Runs `sql` with psql as a client (any user) and returns its unaligned, tuples-only output;
  // "" with *ok = false on failure.
  std::string Psql(const std::string& sql, bool* ok = nullptr) {
    const std::string cmd =
        (bin_ / "psql").string() + " -X -q -A -t -d '" + url() + "' -c \"" + sql + "\" 2>/dev/null";
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
      if (ok) *ok = false;
      return out;
    }
    char buf[256];
    while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    const int rc = ::pclose(p);
    if (ok) *ok = rc == 0;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

  // Fast shutdown: open sessions are terminated, as when the server goes away.
  bool StopServer() {
    return Run("pg_ctl -D " + (dir_ / "data").string() + " -m fast -w -t 30 stop");
  }

 private:
  PgCluster() = default;
  // The contents of `file` in the cluster's dir (removed with it), for error messages.
  std::string Log(const char* file) const {
    std::string out;
    if (FILE* f = std::fopen((dir_ / file).c_str(), "r")) {
      char buf[512];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }
  bool Run(const std::string& cmd) {
    const std::string full =
        as_ + (bin_ / "").string() + cmd + " >>" + (dir_ / "cmd.log").string() + " 2>&1";
    return std::system(full.c_str()) == 0;
  }

  fs::path bin_;
  fs::path dir_;
  int port_ = 0;
  std::string as_;
};

}  // namespace llmux::testing_pg
