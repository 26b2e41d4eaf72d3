#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace llmux::server {

std::string ApiError::ToJson() const {
  nlohmann::json e;
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
  e["code"] = code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code);
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiError ApiErrorFromStatus(const Status& status, std::string param, std::string code) {
  ApiError e;
  e.message = status.message();
  e.param = std::move(param);
  e.code = std::move(code);
  switch (status.code()) {
    case StatusCode::kOk:
    case StatusCode::kInternal:
    case StatusCode::kDataLoss:
      e.http_status = 500;
      e.type = "server_error";
      break;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kAborted:
      e.http_status = 400;
      break;
    case StatusCode::kUnimplemented:
      e.http_status = 400;
      if (e.code.empty()) e.code = "unsupported_feature";
      break;
    case StatusCode::kNotFound:
      e.http_status = 404;
      if (e.code.empty()) e.code = "not_found";
      break;
    case StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      if (e.code.empty()) e.code = "invalid_api_key";
      break;
    case StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "permission_error";
      break;
    case StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      break;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
      e.http_status = 503;
      e.type = "server_error";
      break;
  }
  return e;
}

ApiError InvalidRequest(std::string message, std::string param, std::string code) {
  ApiError e;
  e.http_status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

void SendApiError(ResponseChannel& channel, const ApiError& error) {
  HeaderList headers;
  // NOTE: gateways and endpoint pickers read 429 as "this tenant is over its own limits" and
  // 503 as "this replica cannot take work now"; both always carry Retry-After (1 s when the
  // caller knew no better figure) so a retrying client or gateway never spins.
  int retry_after = error.retry_after_seconds;
  if (retry_after <= 0 && (error.http_status == 429 || error.http_status == 503)) retry_after = 1;
  if (retry_after > 0) headers.emplace_back("Retry-After", std::to_string(retry_after));
  channel.Respond(error.http_status, "application/json", error.ToJson(), std::move(headers));
}

}  // namespace llmux::server
