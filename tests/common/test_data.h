// Locating shared test data (models, tokenizer vectors) from tests.
//
// LLMUX_TEST_DATA names the shared folder (default: ../shared from the source tree). When a
// needed file is missing the test FAILS under CI=true and SKIPS with a visible message
// otherwise.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace llmux::testing {

inline std::filesystem::path SharedDataDir() {
  if (const char* env = std::getenv("LLMUX_TEST_DATA"); env && *env) return env;
  return std::filesystem::path(LLMUX_SOURCE_DIR) / ".." / "shared";
}

// Pinned data fetched by scripts/test_data.sh (e.g. the Llama-3 tokenizer).
inline std::filesystem::path FetchedDataDir() {
  return std::filesystem::path(LLMUX_SOURCE_DIR) / ".testdata";
}

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

}  // namespace llmux::testing

// Use at the top of a TEST body: resolves `var` to the path or skips/fails.
#define LLMUX_REQUIRE_DATA(var, path_expr)                                                   \
  const std::filesystem::path var = (path_expr);                                             \
  if (!std::filesystem::exists(var)) {                                                       \
    if (::llmux::testing::InCi()) {                                                          \
      FAIL() << "test data missing under CI=true: " << var.string()                          \
             << " (set LLMUX_TEST_DATA)";                                                    \
    } else {                                                                                 \
      GTEST_SKIP() << "SKIPPED: test data missing: " << var.string()                         \
                   << " (set LLMUX_TEST_DATA)";                                              \
    }                                                                                        \
  }
