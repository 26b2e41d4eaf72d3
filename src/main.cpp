// llmuxd: the multi-tenant inference daemon. Wiring only (see server/daemon.cpp).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "llmux/daemon.h"
#include "llmux/pool.h"

int main(int argc, char** argv) {
  llmux::server::DaemonArgs args;
  llmux::PoolWorkerArgs worker;  // --worker: a process pool's worker (started by llmuxd)
  std::string socket_fd;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "llmuxd: %s needs a value\n", a.c_str());
        return false;
      }
      *out = argv[++i];
      return true;
    };
    if (a == "--config") {
      if (!value(&args.config_path)) return 2;
    } else if (a == "--model") {
      if (!value(&args.model_override)) return 2;
    } else if (a == "--listen") {
      if (!value(&args.listen_override)) return 2;
    } else if (a == "--worker") {
      if (!value(&worker.pool)) return 2;
    } else if (a == "--socket-fd") {
      if (!value(&socket_fd)) return 2;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: llmuxd --config llmux.yaml [--model DIR] [--listen HOST:PORT]\n");
      return 0;
    } else {
      std::fprintf(stderr, "llmuxd: unknown argument '%s' (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (args.config_path.empty()) {
    std::fprintf(stderr, "llmuxd: --config FILE is required (see --help)\n");
    return 2;
  }
  if (!worker.pool.empty()) {
    worker.config_path = args.config_path;
    worker.model_override = args.model_override;
    worker.socket_fd = socket_fd.empty() ? -1 : std::atoi(socket_fd.c_str());
    if (worker.socket_fd < 0) {
      std::fprintf(stderr, "llmuxd: --worker needs --socket-fd N\n");
      return 2;
    }
    return llmux::RunPoolWorker(worker);
  }
  return llmux::server::RunDaemon(args);
}
