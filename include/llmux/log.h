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

inline LogField F(std::string key, std::string value) {
  return {std::move(key), std::move(value), false};
}
inline LogField F(std::string key, const char* value) { return {std::move(key), value, false}; }
inline LogField F(std::string key, long long value) {
  return {std::move(key), std::to_string(value), true};
}
inline LogField F(std::string key, int value) {
  return {std::move(key), std::to_string(value), true};
}
inline LogField F(std::string key, double value) {
  return {std::move(key), std::to_string(value), true};
}

// Sends logs to `file` (rotating at max_bytes, keeping max_files) or stderr when `file` is "".
// When `per_tenant_dir` is not empty, a line whose "tenant" field names a tenant (a valid
// name: [A-Za-z0-9_-], 1-64 characters) is also written to per_tenant_dir/TENANT.log, rotated
// the same way. Thread-safe; call once at start-up (later calls replace the sinks).
void InitLogging(const std::string& file, size_t max_bytes, size_t max_files,
                 const std::string& per_tenant_dir = "");

// Writes one line: {"time":..., "level":..., "event":..., fields...}. Any thread.
void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields = {});

// Flushes every sink (tests, shutdown). Any thread.
void FlushLogs();

// Whether `header` is a valid W3C traceparent of version 00 ("00-<32 hex>-<16 hex>-<2 hex>",
// lowercase, trace id and parent id not all zeros) or of a later version (its first four
// fields well-formed, version not "ff").
bool IsValidTraceparent(std::string_view header);

}  // namespace llmux
