// `llmux hash-key KEY`: prints the lowercase hex SHA-256 that tenants.yaml / llmux.yaml store.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "llmux/config.h"
#include "tools/command.h"

namespace llmux::tools {
namespace {

int HashKeyCommand(const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0] == "--help") {
    std::fprintf(stderr,
                 "usage: llmux hash-key KEY\n"
                 "       llmux hash-key -     (reads the key from the first line of stdin,\n"
                 "                             keeping it out of shell history)\n"
                 "prints the lowercase hex SHA-256 to put under api_keys: [{sha256: ...}]\n");
    return args.size() == 1 ? 0 : 2;
  }
  std::string key = args[0];
  if (key == "-") {
    if (!std::getline(std::cin, key)) key.clear();
    if (!key.empty() && key.back() == '\r') key.pop_back();
  }
  if (key.empty()) {
    std::fprintf(stderr, "llmux hash-key: the key is empty\n");
    return 2;
  }
  std::printf("%s\n", KeyHashHex(HashApiKey(key)).c_str());
  return 0;
}

}  // namespace

LLMUX_REGISTER_COMMAND("hash-key", "print the SHA-256 of an API key for the config files",
                       HashKeyCommand);

}  // namespace llmux::tools
