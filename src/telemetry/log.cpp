#include "llmux/log.h"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>

namespace llmux {
namespace {

std::mutex g_mutex;
std::shared_ptr<spdlog::logger> g_logger;  // Guarded by g_mutex (the pointer; spdlog is thread-safe)

std::shared_ptr<spdlog::logger> Logger() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_logger) {
    g_logger = std::make_shared<spdlog::logger>("llmux", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    g_logger->set_pattern("%v");
  }
  return g_logger;
}

std::string_view LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

}  // namespace

void InitLogging(const std::string& file, size_t max_bytes, size_t max_files) {
  std::shared_ptr<spdlog::logger> logger;
  if (file.empty()) {
    logger = std::make_shared<spdlog::logger>("llmux", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else {
    logger = std::make_shared<spdlog::logger>(
        "llmux", std::make_shared<spdlog::sinks::rotating_file_sink_mt>(file, max_bytes, max_files));
  }
  logger->set_pattern("%v");
  logger->flush_on(spdlog::level::info);
  std::lock_guard<std::mutex> lock(g_mutex);
  g_logger = std::move(logger);
}

void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  nlohmann::ordered_json j;
  char time_buf[64];
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::snprintf(time_buf, sizeof(time_buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  j["time"] = time_buf;
  j["level"] = LevelName(level);
  j["event"] = event;
  for (const LogField& f : fields) {
    if (f.raw) {
      j[f.key] = nlohmann::ordered_json::parse(f.value, nullptr, /*allow_exceptions=*/false);
    } else {
      j[f.key] = f.value;
    }
  }
  Logger()->info(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

}  // namespace llmux
