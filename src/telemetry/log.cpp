// Structured JSON logs on spdlog: one main sink (rotating file or stderr) and, optionally, one
// rotating file per tenant holding only that tenant's lines.
#include "llmux/log.h"
#include "llmux/thread_annotations.h"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

namespace llmux {
namespace {

struct LogState {
  std::shared_ptr<spdlog::logger> main;
  std::string per_tenant_dir;  // "" = off
  size_t max_bytes = 0;
  size_t max_files = 1;
  std::map<std::string, std::shared_ptr<spdlog::logger>> tenants;
};

Mutex g_mutex;
LogState g_state GUARDED_BY(g_mutex);  // the loggers themselves are thread-safe

std::shared_ptr<spdlog::logger> MakeLogger(std::shared_ptr<spdlog::sinks::sink> sink) {
  auto logger = std::make_shared<spdlog::logger>("llmux", std::move(sink));
  logger->set_pattern("%v");
  logger->flush_on(spdlog::level::info);
  return logger;
}

// Tenant names become file names: only the policy's name syntax is accepted.
bool IsTenantFileName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '-' || name[0] == '_') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// The main logger, and the tenant's logger when per-tenant files are on (else null).
std::pair<std::shared_ptr<spdlog::logger>, std::shared_ptr<spdlog::logger>> Loggers(
    const std::string* tenant) {
  MutexLock lock(g_mutex);
  if (!g_state.main) g_state.main = MakeLogger(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  std::shared_ptr<spdlog::logger> per_tenant;
  if (tenant != nullptr && !g_state.per_tenant_dir.empty() && IsTenantFileName(*tenant)) {
    auto& slot = g_state.tenants[*tenant];
    if (!slot) {
      try {
        slot = MakeLogger(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
            g_state.per_tenant_dir + "/" + *tenant + ".log", g_state.max_bytes, g_state.max_files));
      } catch (const spdlog::spdlog_ex&) {
        g_state.tenants.erase(*tenant);  // unwritable folder: the main log still has the line
      }
    }
    auto it = g_state.tenants.find(*tenant);
    if (it != g_state.tenants.end()) per_tenant = it->second;
  }
  return {g_state.main, per_tenant};
}

std::string_view LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string NowRfc3339() {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

void InitLogging(const std::string& file, size_t max_bytes, size_t max_files,
                 const std::string& per_tenant_dir) {
  std::shared_ptr<spdlog::logger> logger;
  if (file.empty()) {
    logger = MakeLogger(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else {
    logger = MakeLogger(
        std::make_shared<spdlog::sinks::rotating_file_sink_mt>(file, max_bytes, max_files));
  }
  if (!per_tenant_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(per_tenant_dir, ec);
  }
  MutexLock lock(g_mutex);
  g_state.main = std::move(logger);
  g_state.per_tenant_dir = per_tenant_dir;
  g_state.max_bytes = max_bytes;
  g_state.max_files = max_files;
  g_state.tenants.clear();
}

void LogEvent(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  nlohmann::ordered_json j;
  j["time"] = NowRfc3339();
  j["level"] = LevelName(level);
  j["event"] = event;
  const std::string* tenant = nullptr;
  for (const LogField& f : fields) {
    if (f.raw) {
      j[f.key] = nlohmann::ordered_json::parse(f.value, nullptr, /*allow_exceptions=*/false);
    } else {
      j[f.key] = f.value;
    }
    if (f.key == "tenant" && !f.raw) tenant = &f.value;
  }
  const std::string line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  auto [main, per_tenant] = Loggers(tenant);
  main->info(line);
  if (per_tenant) per_tenant->info(line);
}

void FlushLogs() {
  MutexLock lock(g_mutex);
  if (g_state.main) g_state.main->flush();
  for (auto& [name, logger] : g_state.tenants) logger->flush();
}

bool IsValidTraceparent(std::string_view h) {
  auto hex = [](std::string_view s) {
    for (char c : s) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
  };
  auto zeros = [](std::string_view s) {
    return s.find_first_not_of('0') == std::string_view::npos;
  };
  if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return false;
  const std::string_view version = h.substr(0, 2), trace = h.substr(3, 32),
                         parent = h.substr(36, 16), flags = h.substr(53, 2);
  if (!hex(version) || version == "ff" || !hex(trace) || !hex(parent) || !hex(flags)) return false;
  if (zeros(trace) || zeros(parent)) return false;
  if (version == "00") return h.size() == 55;
  // Later versions may append "-..." fields.
  return h.size() == 55 || h[55] == '-';
}

}  // namespace llmux
