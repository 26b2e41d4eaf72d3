// GET /v1/usage (a tenant's own usage) and GET /admin/usage (every tenant's), from the ledger.
//
// Query: start, end (RFC 3339, a date, or Unix seconds; [start, end)); defaults: the start of
// the current UTC month and now. /admin/usage also takes tenant=NAME and format=csv|json
// (format returns the rows themselves instead of the summary).
#pragma once

#include <optional>
#include <string>

#include "llmux/usage_ledger.h"
#include "server/http_types.h"

namespace llmux::server {

// `tenant` is the authenticated caller: the answer never holds another tenant's rows.
void ServeTenantUsage(const HttpRequest& request, const std::string& tenant, UsageLedger& ledger,
                      ResponseChannel& channel);
void ServeAdminUsage(const HttpRequest& request, UsageLedger& ledger, ResponseChannel& channel);

// Value of `key` in a query string ("a=1&b=2"), %XX-decoded ('+' stays '+'); nullopt when
// absent.
std::optional<std::string> QueryParam(const std::string& query, const std::string& key);

}  // namespace llmux::server
