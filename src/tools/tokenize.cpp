// `llmux tokenize`: prints the token ids of UTF-8 text read from stdin.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "llmux/tokenizer.h"
#include "tools/command.h"

namespace llmux::tools {
namespace {

constexpr const char* kUsage =
    "usage: llmux tokenize (--tokenizer PATH/tokenizer.json | --model DIR) [--bos]\n"
    "                      [--no-parse-special]\n"
    "Reads UTF-8 text from stdin and prints its token ids on one line, space-separated.\n"
    "  --bos               prepend the BOS id\n"
    "  --no-parse-special  tokenize special-token text such as <s> as plain text\n";

int Tokenize(const std::vector<std::string>& argv) {
  Args args(argv);
  const std::string unknown =
      args.FirstUnknown({"--tokenizer", "--model"}, {"--bos", "--no-parse-special", "--help"});
  if (!unknown.empty() || args.Has("--help")) {
    if (!unknown.empty())
      std::fprintf(stderr, "llmux tokenize: unknown option '%s'\n", unknown.c_str());
    std::fputs(kUsage, stderr);
    return unknown.empty() ? 0 : 2;
  }
  const auto path = args.Get("--tokenizer");
  const auto dir = args.Get("--model");
  if (path.has_value() == dir.has_value()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  StatusOr<std::unique_ptr<Tokenizer>> tok =
      path ? Tokenizer::FromFile(
                 *path, std::filesystem::path(*path).parent_path() / "tokenizer_config.json")
           : Tokenizer::FromModelDir(*dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "llmux tokenize: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  const std::string text{std::istreambuf_iterator<char>(std::cin),
                         std::istreambuf_iterator<char>()};
  std::vector<int32_t> ids;
  if (args.Has("--bos")) {
    if (!(*tok)->bos_id()) {
      std::fputs("llmux tokenize: --bos given but the tokenizer has no BOS token\n", stderr);
      return 1;
    }
    ids.push_back(*(*tok)->bos_id());
  }
  const auto body = (*tok)->Encode(text, /*add_special_tokens=*/false,
                                   /*parse_special=*/!args.Has("--no-parse-special"));
  ids.insert(ids.end(), body.begin(), body.end());
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace

LLMUX_REGISTER_COMMAND("tokenize", "print the token ids of stdin text", Tokenize);

}  // namespace llmux::tools
