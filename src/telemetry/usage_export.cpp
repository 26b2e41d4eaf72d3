// Export formats of usage rows: CSV (RFC 4180) and JSON.
#include <nlohmann/json.hpp>

#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

constexpr const char* kHeader =
    "request_id,tenant,model,lane,pool,finished_at,prompt_tokens,cached_tokens,"
    "completion_tokens,queue_ms,ttft_ms,duration_ms,outcome,cost_nano,engine_ms";

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string UsageRecordsCsv(const std::vector<UsageRecord>& records) {
  std::string out = std::string(kHeader) + "\r\n";
  for (const UsageRecord& r : records) {
    out += CsvField(r.request_id) + ',' + CsvField(r.tenant) + ',' + CsvField(r.model) + ',' +
           CsvField(r.lane) + ',' + CsvField(r.pool) + ',' + FormatRfc3339(r.finished_unix_ms);
    for (int64_t v : {r.prompt_tokens, r.cached_tokens, r.completion_tokens, r.queue_ms, r.ttft_ms,
                      r.duration_ms}) {
      out += ',' + std::to_string(v);
    }
    out += ',' + CsvField(r.outcome) + ',' + std::to_string(r.cost_nano) + ',' +
           std::to_string(r.engine_ms) + "\r\n";
  }
  return out;
}

std::string UsageRecordsJson(const std::vector<UsageRecord>& records) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const UsageRecord& r : records) {
    a.push_back({{"request_id", r.request_id},
                 {"tenant", r.tenant},
                 {"model", r.model},
                 {"lane", r.lane},
                 {"pool", r.pool},
                 {"finished_at", FormatRfc3339(r.finished_unix_ms)},
                 {"prompt_tokens", r.prompt_tokens},
                 {"cached_tokens", r.cached_tokens},
                 {"completion_tokens", r.completion_tokens},
                 {"queue_ms", r.queue_ms},
                 {"ttft_ms", r.ttft_ms},
                 {"duration_ms", r.duration_ms},
                 {"outcome", r.outcome},
                 {"cost_nano", r.cost_nano},
                 {"engine_ms", r.engine_ms}});
  }
  return a.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string CapacityRecordsCsv(const std::vector<CapacityRecord>& records) {
  std::string out =
      "tenant,hour_start,pool,reserved_kv_tokens,reserved_seqs,dedicated,held_ms,cost_nano\r\n";
  for (const CapacityRecord& r : records) {
    out += CsvField(r.tenant) + ',' + FormatRfc3339(r.hour_start_ms) + ',' + CsvField(r.pool) +
           ',' + std::to_string(r.reserved_kv_tokens) + ',' + std::to_string(r.reserved_seqs) +
           ',' + (r.dedicated ? "true" : "false") + ',' + std::to_string(r.held_ms) + ',' +
           std::to_string(r.cost_nano) + "\r\n";
  }
  return out;
}

std::string CapacityRecordsJson(const std::vector<CapacityRecord>& records) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const CapacityRecord& r : records) {
    a.push_back({{"tenant", r.tenant},
                 {"hour_start", FormatRfc3339(r.hour_start_ms)},
                 {"pool", r.pool},
                 {"reserved_kv_tokens", r.reserved_kv_tokens},
                 {"reserved_seqs", r.reserved_seqs},
                 {"dedicated", r.dedicated},
                 {"held_ms", r.held_ms},
                 {"cost_nano", r.cost_nano}});
  }
  return a.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string UsageSummaryCsv(const std::vector<TenantUsage>& usage) {
  std::string out =
      "tenant,requests,prompt_tokens,cached_tokens,completion_tokens,token_cost_nano,"
      "capacity_cost_nano,total_cost_nano\r\n";
  for (const TenantUsage& u : usage) {
    const UsageTotals& t = u.totals;
    out += CsvField(u.tenant);
    for (int64_t v : {t.requests, t.prompt_tokens, t.cached_tokens, t.completion_tokens,
                      t.cost_nano, t.capacity_cost_nano, t.total_cost_nano()}) {
      out += ',' + std::to_string(v);
    }
    out += "\r\n";
  }
  return out;
}

std::string UsageSummaryJson(const std::vector<TenantUsage>& usage) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const TenantUsage& u : usage) {
    const UsageTotals& t = u.totals;
    a.push_back({{"tenant", u.tenant},
                 {"requests", t.requests},
                 {"prompt_tokens", t.prompt_tokens},
                 {"cached_tokens", t.cached_tokens},
                 {"completion_tokens", t.completion_tokens},
                 {"token_cost_nano", t.cost_nano},
                 {"capacity_cost_nano", t.capacity_cost_nano},
                 {"total_cost_nano", t.total_cost_nano()}});
  }
  return a.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace llmux
