// `llmux`: the command-line tool. Wiring only: each subcommand lives in its own file.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/command.h"

namespace llmux::tools {

std::map<std::string, Command>& Registry() {
  static std::map<std::string, Command> registry;
  return registry;
}

std::optional<std::string> Args::Get(const std::string& name) const {
  std::optional<std::string> v;
  for (size_t i = 0; i + 1 < args_.size(); ++i) {
    if (args_[i] == name) v = args_[i + 1];
  }
  return v;
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  std::vector<std::string> out;
  for (size_t i = 0; i + 1 < args_.size(); ++i) {
    if (args_[i] == name) out.push_back(args_[++i]);
  }
  return out;
}

bool Args::Has(const std::string& name) const {
  for (const auto& a : args_) {
    if (a == name) return true;
  }
  return false;
}

std::string Args::FirstUnknown(const std::vector<std::string>& with_value,
                               const std::vector<std::string>& switches) const {
  auto contains = [](const std::vector<std::string>& v, const std::string& s) {
    for (const auto& x : v) {
      if (x == s) return true;
    }
    return false;
  };
  for (size_t i = 0; i < args_.size(); ++i) {
    if (contains(with_value, args_[i])) {
      ++i;
      continue;
    }
    if (contains(switches, args_[i])) continue;
    return args_[i];
  }
  return "";
}

}  // namespace llmux::tools

int main(int argc, char** argv) {
  auto& registry = llmux::tools::Registry();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::fprintf(stderr, "usage: llmux COMMAND [options]\n\ncommands:\n");
    for (const auto& [name, cmd] : registry) {
      std::fprintf(stderr, "  %-12s %s\n", name.c_str(), cmd.summary.c_str());
    }
    return argc < 2 ? 2 : 0;
  }
  auto it = registry.find(argv[1]);
  if (it == registry.end()) {
    std::fprintf(stderr, "llmux: unknown command '%s' (run 'llmux --help')\n", argv[1]);
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  return it->second.run(args);
}
