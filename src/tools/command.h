// Subcommands of the `llmux` command-line tool register themselves here, one file each.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace llmux::tools {

// argv holds the subcommand's own arguments (without "llmux" and the subcommand name).
// Returns the process exit code.
using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string summary;
  CommandFn run;
};

std::map<std::string, Command>& Registry();

struct Registrar {
  Registrar(const std::string& name, std::string summary, CommandFn fn) {
    Registry()[name] = Command{std::move(summary), std::move(fn)};
  }
};

// Minimal `--flag value` / `--flag` argument reader shared by the subcommands.
class Args {
 public:
  explicit Args(const std::vector<std::string>& args) : args_(args) {}
  // Value of `--name VALUE` (the last one when repeated); nullopt when absent.
  std::optional<std::string> Get(const std::string& name) const;
  // Every value of a repeated `--name VALUE`.
  std::vector<std::string> GetAll(const std::string& name) const;
  bool Has(const std::string& name) const;
  // Names of flags not in `known` (for "unknown option" errors); "" when all are known.
  std::string FirstUnknown(const std::vector<std::string>& known_with_value,
                           const std::vector<std::string>& known_switches) const;

 private:
  const std::vector<std::string>& args_;
};

}  // namespace llmux::tools

#define LLMUX_REGISTER_COMMAND(name, summary, fn) \
  static ::llmux::tools::Registrar llmux_registrar_##fn(name, summary, fn)
