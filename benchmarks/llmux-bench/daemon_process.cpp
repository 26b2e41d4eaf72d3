#include "daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace llmux::bench {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return Internal("cannot write " + path);
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> MergeEngineOverrides(const std::string& llmux_yaml,
                                           const std::map<std::string, std::string>& overrides) {
  if (overrides.empty()) return llmux_yaml;
  try {
    YAML::Node root = YAML::Load(llmux_yaml);
    if (!root.IsMap()) root = YAML::Node(YAML::NodeType::Map);
    for (const auto& [k, v] : overrides) root["engine"][k] = YAML::Load(v);
    YAML::Emitter out;
    out << root;
    return std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("server.llmux_yaml: ") + e.what());
  }
}

StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const std::string& llmuxd,
                                                              const std::string& model_dir,
                                                              const Scenario& sc, const Run& run,
                                                              const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal("cannot create " + dir + ": " + ec.message());
  StatusOr<std::string> cfg = MergeEngineOverrides(sc.llmux_yaml, run.engine);
  if (!cfg.ok()) return cfg.status();
  const std::string config = dir + "/llmux.yaml", log = dir + "/llmuxd.log";
  LLMUX_RETURN_IF_ERROR(WriteFile(config, *cfg));
  LLMUX_RETURN_IF_ERROR(WriteFile(dir + "/tenants.yaml",
                                  run.tenants_yaml.empty() ? sc.tenants_yaml : run.tenants_yaml));
  // A fresh usage ledger per run: the daemon's numbers start from zero.
  std::filesystem::remove(dir + "/llmux-usage.db", ec);
  // NOTE: the old log must go before the fork: the child truncates it only after exec setup,
  // and a previous run's "serving" line would send us to a dead port.
  std::filesystem::remove(log, ec);

  const pid_t pid = fork();
  if (pid < 0) return Internal("fork failed");
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
    }
    execl(llmuxd.c_str(), llmuxd.c_str(), "--config", config.c_str(), "--model", model_dir.c_str(),
          "--listen", "127.0.0.1:0", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  d->pid_ = pid;
  const std::regex ready(R"(serving (\S+) on http://([0-9.]+):(\d+))");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < until) {
    const std::string text = ReadFile(log);
    std::smatch m;
    if (std::regex_search(text, m, ready)) {
      d->model_name_ = m[1];
      d->host_ = m[2];
      d->port_ = static_cast<uint16_t>(std::stoi(m[3]));
      return d;
    }
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      d->pid_ = -1;
      return Internal("llmuxd exited before serving; log " + log + ":\n" +
                      text.substr(text.size() > 2000 ? text.size() - 2000 : 0));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  d->Stop();
  return Unavailable("llmuxd did not report serving within 120 s; see " + log);
}

int DaemonProcess::Stop() {
  if (pid_ < 0) return 0;
  kill(pid_, SIGTERM);
  int st = 0;
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &st, 0);
  pid_ = -1;
  return -SIGKILL;
}

DaemonProcess::~DaemonProcess() { Stop(); }

double DaemonProcess::CpuSeconds() const {
  if (pid_ < 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid_) + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return -1;
  // Fields after the command (which may hold spaces) in parentheses: state is field 3, utime
  // and stime are fields 14 and 15, in clock ticks.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream rest(stat.substr(paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace llmux::bench
