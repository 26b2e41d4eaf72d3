// Byte-level mutations of the demo files: the loaders must return a value or a located error,
// never throw, crash or hang. Fixed seed, so every run checks the same 3000 inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <regex>

#include "llmux/config.h"
#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

const std::filesystem::path kConfigDir = std::filesystem::path(LLMUX_SOURCE_DIR) / "config";

std::string Mutate(std::string text, std::mt19937& rng) {
  static constexpr char kAlphabet[] = "{}[]:,-#&*!|>'\"\n \t0123456789.abcxyz%@`?";
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits && !text.empty(); ++e) {
    const size_t pos = rng() % text.size();
    const char c = kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
    switch (rng() % 3) {
      case 0:
        text[pos] = c;
        break;
      case 1:
        text.insert(text.begin() + static_cast<std::ptrdiff_t>(pos), c);
        break;
      case 2:
        text.erase(pos, 1 + rng() % 8);
        break;
    }
  }
  return text;
}

// Every line of an error message is "SOURCE:LINE:COLUMN: KEY: message".
void ExpectLocated(const Status& s, const std::string& source) {
  if (s.ok()) return;
  // KEY: dotted words, [index] suffixes and "quoted" keys (which may hold ':' and spaces).
  const std::regex line_re("^" + source + R"(:\d+:\d+: (?:[^:"\s]|"(?:[^"\\]|\\.)*")+: .+$)");
  size_t start = 0;
  while (start <= s.message().size()) {
    size_t end = s.message().find('\n', start);
    if (end == std::string::npos) end = s.message().size();
    const std::string line = s.message().substr(start, end - start);
    if (line.rfind("(", 0) != 0) {  // "(N more errors)"
      EXPECT_TRUE(std::regex_match(line, line_re)) << line;
    }
    start = end + 1;
  }
}

TEST(MutationTest, MutatedFilesYieldValuesOrLocatedErrors) {
  const std::string server = *ReadConfigFile(kConfigDir / "llmux.yaml");
  const std::string tenants = *ReadConfigFile(kConfigDir / "tenants.yaml");
  std::mt19937 rng(1234);
  int failures = 0;
  for (int i = 0; i < 1500; ++i) {
    auto s = ParseServerConfig(Mutate(server, rng), "llmux.yaml", "/etc/llmux");
    ExpectLocated(s.status(), "llmux.yaml");
    auto t = ParseTenantPolicy(Mutate(tenants, rng), "tenants.yaml");
    ExpectLocated(t.status(), "tenants.yaml");
    failures += !s.ok() + !t.ok();
  }
  // Most mutations break something; a run where none did would mean validation is not running.
  EXPECT_GT(failures, 1500);
}

}  // namespace
}  // namespace llmux
