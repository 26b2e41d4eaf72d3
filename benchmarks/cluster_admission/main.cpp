// Admission latency, local vs cluster mode, in one run: starts redis-server on a free loopback
// port (persistence off), then times Admit + Finish pairs of one tenant with every limit set
// (rate limits, queue cap, quota, budget) through the local admission and through
// ClusterAdmission, and prints p50/p99/mean per Admit and the added latency of cluster mode.
//
//   build/cluster_admission [--calls N] [--redis-server PATH]
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cluster/redis_connection.h"
#include "llmux/admission.h"
#include "llmux/cluster.h"

namespace {

using Clock = std::chrono::steady_clock;

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

struct Figures {
  double p50_us, p99_us, mean_us;
};

Figures Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  return {us[us.size() / 2], us[us.size() * 99 / 100], sum / us.size()};
}

// Times `calls` Admit (+ Finish, untimed) pairs; microseconds per Admit.
std::vector<double> Run(llmux::Admission& admission, const llmux::TenantConfig& tenant, int calls) {
  std::vector<double> us;
  us.reserve(calls);
  for (int i = 0; i < calls; ++i) {
    const auto start = Clock::now();
    llmux::AdmissionResult r = admission.Admit(tenant.name, tenant, {9, 0, 1});
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (auto* t = std::get_if<llmux::AdmissionTicket>(&r)) {
      admission.LeaveQueue(*t, 1);
      admission.Finish(*t, {9, 0});
    } else {
      std::fprintf(stderr, "refused at call %d: %s\n", i,
                   std::get<llmux::AdmissionRefusal>(r).status.message().c_str());
      std::exit(1);
    }
  }
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 20000;
  std::string redis_bin = "/usr/bin/redis-server";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::max(100, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--redis-server") == 0) redis_bin = argv[i + 1];
  }
  const int port = FreePort();
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("llmux-bench-redis-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const pid_t redis = fork();
  if (redis == 0) {
    if (std::freopen("/dev/null", "w", stdout) == nullptr) _exit(127);
    const std::string p = std::to_string(port);
    execl(redis_bin.c_str(), redis_bin.c_str(), "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
          "", "--appendonly", "no", "--dir", dir.c_str(), "--loglevel", "warning", nullptr);
    _exit(127);
  }
  llmux::ClusterSection cluster;
  cluster.enabled = true;
  cluster.redis_host = "127.0.0.1";
  cluster.redis_port = port;
  cluster.replica_id = "bench";
  cluster.key_prefix = "bench:";
  cluster.timeout = llmux::Millis(50);
  bool up = false;
  for (int i = 0; i < 300 && !up; ++i) {
    auto c = llmux::cluster::RedisConnection::Connect(cluster, {});
    up = c.ok() && (*c)->Command({"PING"}).ok();
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int rc = 0;
  if (!up) {
    std::fprintf(stderr, "redis-server (%s) did not start\n", redis_bin.c_str());
    rc = 1;
  } else {
    llmux::TenantConfig tenant;
    tenant.name = "bench";
    tenant.rate_limit = {1'000'000'000, 1'000'000'000};
    tenant.max_queued_requests = 1000;
    tenant.max_inflight_tokens = 1'000'000;
    tenant.quota = llmux::Quota{1'000'000'000'000, 1'000'000'000'000};
    llmux::QuotaTracker quota([] { return int64_t{1'700'000'000'000}; });
    auto local = llmux::NewLocalAdmission([] { return Clock::now(); }, &quota);
    auto clustered = llmux::ClusterAdmission::Create(cluster);
    if (!clustered.ok() || !(*clustered)->Flush(llmux::Millis(3000))) {
      std::fprintf(stderr, "cluster admission did not come up\n");
      rc = 1;
    } else {
      // Warm-up (connections, script cache, allocator), then the timed runs interleaved twice.
      Run(*local, tenant, 500);
      Run(**clustered, tenant, 500);
      std::vector<double> l = Run(*local, tenant, calls / 2);
      std::vector<double> c = Run(**clustered, tenant, calls / 2);
      std::vector<double> l2 = Run(*local, tenant, calls / 2);
      std::vector<double> c2 = Run(**clustered, tenant, calls / 2);
      l.insert(l.end(), l2.begin(), l2.end());
      c.insert(c.end(), c2.begin(), c2.end());
      const Figures lf = Summarize(l), cf = Summarize(c);
      std::printf("admission latency per call (%d calls each, one thread, loopback Redis)\n", calls);
      std::printf("%-8s %10s %10s %10s\n", "mode", "p50_us", "p99_us", "mean_us");
      std::printf("%-8s %10.1f %10.1f %10.1f\n", "local", lf.p50_us, lf.p99_us, lf.mean_us);
      std::printf("%-8s %10.1f %10.1f %10.1f\n", "cluster", cf.p50_us, cf.p99_us, cf.mean_us);
      std::printf("added    %10.1f %10.1f %10.1f\n", cf.p50_us - lf.p50_us, cf.p99_us - lf.p99_us,
                  cf.mean_us - lf.mean_us);
      const llmux::AdmissionStats s = (*clustered)->Stats();
      if (!s.store_up || s.local_decisions != 0) {
        std::fprintf(stderr, "the store went down during the run (%lld local decisions)\n",
                     static_cast<long long>(s.local_decisions));
        rc = 1;
      }
    }
  }
  kill(redis, SIGKILL);
  waitpid(redis, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}
