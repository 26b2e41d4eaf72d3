// A fresh, empty folder per test: tests that write files (ledgers, policy files) start from
// nothing whatever an earlier run left, and two test binaries never share one.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace llmux::testing {

// <temp>/PREFIX-<pid>-<running test's name>, emptied and created. The caller removes it
// (TearDown).
inline std::filesystem::path FreshTestDir(const std::string& prefix) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      (prefix + "-" + std::to_string(::getpid()) + "-" +
       ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace llmux::testing
