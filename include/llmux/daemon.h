// llmuxd's wiring (the server module, src/server/daemon.cpp): config -> model, tokenizer, chat
// template, engine, tenant policy, HTTP server; signals (SIGHUP reload, SIGTERM/SIGINT drain).
// main.cpp only calls RunDaemon (or RunPoolWorker, llmux/pool.h).
#pragma once

#include <string>

namespace llmux::server {

struct DaemonArgs {
  std::string config_path;
  std::string model_override;  // --model DIR: replaces model.path
  std::string listen_override;  // --listen HOST:PORT: replaces server.listen
};

// Runs until SIGTERM/SIGINT and a completed drain. Returns the process exit code (0 after a
// clean drain; 1 with a one-line message on stderr when start-up fails).
int RunDaemon(const DaemonArgs& args);

}  // namespace llmux::server
