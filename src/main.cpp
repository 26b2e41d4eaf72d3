// llmuxd: the multi-tenant inference daemon. Wiring only (see server/daemon.cpp).
#include <cstdio>
#include <string>

#include "server/daemon.h"

int main(int argc, char** argv) {
  llmux::server::DaemonArgs args;
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
  return llmux::server::RunDaemon(args);
}
