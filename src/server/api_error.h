// OpenAI-shaped errors: {"error":{"message","type","param","code"}}, and the one place where a
// Status becomes an HTTP status code.
#pragma once

#include <optional>
#include <string>

#include "llmux/status.h"
#include "server/http_types.h"

namespace llmux::server {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" -> null
  std::string code;   // "" -> null
  int retry_after_seconds = 0;  // > 0 adds a Retry-After header

  std::string ToJson() const;
};

// The single Status -> HTTP mapping (STYLE rule 3):
//   InvalidArgument/OutOfRange/FailedPrecondition -> 400, Unimplemented -> 400 (feature not
//   supported), NotFound -> 404, Unauthenticated -> 401, PermissionDenied -> 403,
//   ResourceExhausted -> 429 (the tenant's own limits), Unavailable/DeadlineExceeded -> 503,
//   Aborted -> 499-like 400, DataLoss/Internal -> 500.
ApiError ApiErrorFromStatus(const Status& status, std::string param = "", std::string code = "");

ApiError InvalidRequest(std::string message, std::string param, std::string code = "");

// Sends `error` on `channel` with Retry-After when set; a 429 or 503 always carries one
// (1 second when `retry_after_seconds` is 0).
void SendApiError(ResponseChannel& channel, const ApiError& error);

}  // namespace llmux::server
