// Structured logs: one JSON object per line with time, level, event and the event's fields.
// API keys are never passed here; prompts and outputs only when the tenant allows it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmux {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// A field value is logged as a JSON string unless `raw` marks it as a JSON literal (numbers).
struct LogField {
  std::string key;
  std::string value;
  bool raw = false;
};

inline LogField F(std::string key, std::string value) { return {std::move(key), std::move(value), false}; }
inline LogField F(std::string key, const char* value) { return {std::move(key), value, false}; }
inline LogField F(std::string key, long long value) { return {std::move(key), std::to_string(value), true}; }
inline LogField F(std::string key, int value) { return {std::move(key), std::to_string(value), true}; }
inline LogField F(std::string key, double value) { return {std::move(key), std::to_string(value), true}; }

// Sends logs to `file` (rotating at max_bytes, keeping max_files) or stderr when `file` is "".
// Thread-safe; call once at start-up (later calls replace the sink).
void InitLogging(const std::string& file, size_t max_bytes, size_t max_files);

// Writes one line: {"time":..., "level":..., "event":..., fields...}. Any thread.
void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields = {});

}  // namespace llmux
