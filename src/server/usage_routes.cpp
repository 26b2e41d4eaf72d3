#include "server/usage_routes.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace llmux::server {
namespace {

using json = nlohmann::ordered_json;

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && Hex(s[i + 1]) >= 0 && Hex(s[i + 2]) >= 0) {
      out += static_cast<char>(Hex(s[i + 1]) * 16 + Hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// `cost_nano`: token charges (the calls); `capacity_cost_nano`: capacity charges (reservation,
// dedicated pool); `total_cost_nano`: both.
json TotalsJson(const UsageTotals& t) {
  return {{"requests", t.requests},
          {"prompt_tokens", t.prompt_tokens},
          {"cached_tokens", t.cached_tokens},
          {"completion_tokens", t.completion_tokens},
          {"cost_nano", t.cost_nano},
          {"cost", FormatNano(t.cost_nano)},
          {"capacity_cost_nano", t.capacity_cost_nano},
          {"capacity_cost", FormatNano(t.capacity_cost_nano)},
          {"total_cost_nano", t.total_cost_nano()},
          {"total_cost", FormatNano(t.total_cost_nano())}};
}

json TenantJson(const TenantUsage& u) {
  json daily = json::array();
  for (const DailyUsage& d : u.daily) {
    json entry = {{"date", d.date}};
    entry.update(TotalsJson(d.totals));
    daily.push_back(std::move(entry));
  }
  return {{"tenant", u.tenant}, {"totals", TotalsJson(u.totals)}, {"daily", daily}};
}

// Parses start/end; sends a 400 and returns false on a bad value.
bool ParseRange(const HttpRequest& req, UsageQuery* q, ResponseChannel& channel) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  q->start_ms = StartOfMonthMs(now);
  q->end_ms = now;
  for (const char* key : {"start", "end"}) {
    auto v = QueryParam(req.query, key);
    if (!v) continue;
    auto t = ParseTimeArg(*v);
    if (!t.ok()) {
      SendApiError(channel, InvalidRequest(t.status().message(), key));
      return false;
    }
    (std::string(key) == "start" ? q->start_ms : q->end_ms) = *t;
  }
  if (q->end_ms < q->start_ms) {
    SendApiError(channel, InvalidRequest("end is before start", "end"));
    return false;
  }
  return true;
}

void Respond(ResponseChannel& channel, const json& body) {
  channel.Respond(200, "application/json",
                  body.dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

std::optional<std::string> QueryParam(const std::string& query, const std::string& key) {
  size_t pos = 0;
  std::optional<std::string> found;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string_view part(query.data() + pos, amp - pos);
    const size_t eq = part.find('=');
    if (PercentDecode(part.substr(0, eq)) == key) {
      found = eq == std::string_view::npos ? std::string() : PercentDecode(part.substr(eq + 1));
    }
    pos = amp + 1;
  }
  return found;
}

void ServeTenantUsage(const HttpRequest& req, const std::string& tenant, UsageLedger& ledger,
                      ResponseChannel& channel) {
  UsageQuery q;
  if (!ParseRange(req, &q, channel)) return;
  q.tenant = tenant;
  auto usage = ledger.Summarize(q);
  if (!usage.ok()) return SendApiError(channel, ApiErrorFromStatus(usage.status()));
  TenantUsage mine{tenant, {}, {}};
  for (TenantUsage& u : *usage) {
    if (u.tenant == tenant) mine = std::move(u);
  }
  json body = {
      {"object", "usage"}, {"start", FormatRfc3339(q.start_ms)}, {"end", FormatRfc3339(q.end_ms)}};
  body.update(TenantJson(mine));
  Respond(channel, body);
}

void ServeAdminUsage(const HttpRequest& req, UsageLedger& ledger, ResponseChannel& channel) {
  UsageQuery q;
  if (!ParseRange(req, &q, channel)) return;
  if (auto t = QueryParam(req.query, "tenant"); t && !t->empty()) q.tenant = *t;
  const std::optional<std::string> format = QueryParam(req.query, "format");
  if (format && *format != "csv" && *format != "json") {
    return SendApiError(channel, InvalidRequest("format must be csv or json", "format"));
  }
  const std::string rows_kind = QueryParam(req.query, "rows").value_or("calls");
  if (rows_kind != "calls" && rows_kind != "capacity") {
    return SendApiError(channel, InvalidRequest("rows must be calls or capacity", "rows"));
  }
  if (format && rows_kind == "capacity") {
    auto rows = ledger.CapacityRecords(q);
    if (!rows.ok()) return SendApiError(channel, ApiErrorFromStatus(rows.status()));
    if (*format == "csv") return channel.Respond(200, "text/csv", CapacityRecordsCsv(*rows));
    return channel.Respond(200, "application/json", CapacityRecordsJson(*rows));
  }
  if (format) {
    auto rows = ledger.Records(q);
    if (!rows.ok()) return SendApiError(channel, ApiErrorFromStatus(rows.status()));
    if (*format == "csv") return channel.Respond(200, "text/csv", UsageRecordsCsv(*rows));
    return channel.Respond(200, "application/json", UsageRecordsJson(*rows));
  }
  auto usage = ledger.Summarize(q);
  if (!usage.ok()) return SendApiError(channel, ApiErrorFromStatus(usage.status()));
  json tenants = json::array();
  for (const TenantUsage& u : *usage) tenants.push_back(TenantJson(u));
  Respond(channel, {{"object", "usage"},
                    {"start", FormatRfc3339(q.start_ms)},
                    {"end", FormatRfc3339(q.end_ms)},
                    {"tenants", tenants}});
}

}  // namespace llmux::server
