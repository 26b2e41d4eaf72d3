#include "llmux/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace llmux {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> ReadLines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Logging, JsonLinesAndPerTenantFilesHoldOnlyTheirTenant) {
  const fs::path dir = fs::temp_directory_path() / ("llmux-log-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  InitLogging((dir / "main.log").string(), 1 << 20, 2, (dir / "tenants").string());
  LogEvent(LogLevel::kInfo, "access", {F("tenant", "acme"), F("status", 200)});
  LogEvent(LogLevel::kWarn, "access", {F("tenant", "beta"), F("request_id", "r1")});
  LogEvent(LogLevel::kInfo, "listening", {F("port", 8080)});
  LogEvent(LogLevel::kInfo, "access", {F("tenant", "../evil")});
  LogEvent(LogLevel::kInfo, "access", {F("tenant", "_unauthenticated")});
  FlushLogs();
  const auto main = ReadLines(dir / "main.log");
  ASSERT_EQ(main.size(), 5u);
  EXPECT_EQ(main[0]["event"], "access");
  EXPECT_EQ(main[0]["level"], "info");
  EXPECT_EQ(main[0]["status"], 200);
  EXPECT_EQ(main[1]["level"], "warn");
  EXPECT_EQ(main[0]["time"].get<std::string>().size(), 24u);  // 2024-05-01T00:00:00.000Z
  const auto acme = ReadLines(dir / "tenants" / "acme.log");
  ASSERT_EQ(acme.size(), 1u);
  EXPECT_EQ(acme[0]["tenant"], "acme");
  const auto beta = ReadLines(dir / "tenants" / "beta.log");
  ASSERT_EQ(beta.size(), 1u);
  EXPECT_EQ(beta[0]["request_id"], "r1");
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir / "tenants")) files += e.is_regular_file();
  EXPECT_EQ(files, 2u);
  EXPECT_FALSE(fs::exists(dir / "evil.log"));
  InitLogging("", 1 << 20, 1);
  fs::remove_all(dir);
}

TEST(Traceparent, ValidatesTheW3cFormat) {
  EXPECT_TRUE(IsValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_TRUE(IsValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                          "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
    EXPECT_FALSE(IsValidTraceparent(bad)) << bad;
  }
}

}  // namespace
}  // namespace llmux
