// Helpers shared by the fuzz targets (libFuzzer entry points, also run by replay_main.cpp).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace llmux::fuzz {

// A broken invariant is a finding: print it and abort, so libFuzzer (and the replay runner,
// through the abort) reports the input.
[[noreturn]] inline void Violation(const char* target, const std::string& what) {
  std::fprintf(stderr, "fuzz %s: invariant violated: %s\n", target, what.c_str());
  std::abort();
}

// Splits `data` at the first NUL: (before, after). No NUL: (all, "").
inline std::pair<std::string_view, std::string_view> SplitAtNul(std::string_view data) {
  const size_t nul = data.find('\0');
  if (nul == std::string_view::npos) return {data, {}};
  return {data.substr(0, nul), data.substr(nul + 1)};
}

// The shared test data folder (models, tokenizers): $LLMUX_TEST_DATA, else /work/shared.
inline std::string SharedDataDir() {
  const char* env = std::getenv("LLMUX_TEST_DATA");
  return env != nullptr && *env ? env : "/work/shared";
}

}  // namespace llmux::fuzz
