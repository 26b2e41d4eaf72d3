// llmux-bench: starts llmuxd for one run with the scenario's own llmux.yaml / tenants.yaml and
// stops it afterwards (SIGTERM = drain, then SIGKILL if it does not exit).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "llmux/status.h"
#include "scenario.h"

namespace llmux::bench {

class DaemonProcess {
 public:
  // Writes DIR/llmux.yaml (sc.llmux_yaml with run.engine merged into `engine`) and
  // DIR/tenants.yaml (run.tenants_yaml, else sc.tenants_yaml), starts `llmuxd --config DIR/llmux.yaml --model MODEL --listen
  // 127.0.0.1:0` with its stderr in DIR/llmuxd.log, and waits (up to 120 s) for its
  // "serving NAME on http://HOST:PORT" line. Returns the running daemon, or an error with the
  // log's tail.
  static StatusOr<std::unique_ptr<DaemonProcess>> Start(const std::string& llmuxd,
                                                        const std::string& model_dir,
                                                        const Scenario& sc, const Run& run,
                                                        const std::string& dir);
  ~DaemonProcess();  // Stops the daemon if still running.
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  const std::string& model_name() const { return model_name_; }
  // The daemon's CPU seconds so far (user + system, /proc/PID/stat); -1 when unreadable.
  double CpuSeconds() const;

  // SIGTERM, wait up to 30 s, then SIGKILL. Returns the exit status (or -signal).
  int Stop();

 private:
  DaemonProcess() = default;
  pid_t pid_ = -1;
  std::string host_, model_name_;
  uint16_t port_ = 0;
};

// sc.llmux_yaml with `engine` keys replaced by `overrides` (values parsed as YAML scalars).
StatusOr<std::string> MergeEngineOverrides(const std::string& llmux_yaml,
                                           const std::map<std::string, std::string>& overrides);

}  // namespace llmux::bench
