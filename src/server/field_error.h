// Request-body parsing failures as an exception inside the parsers (openai_request.cpp,
// responses_api.cpp): a nested validator throws FieldError at the first bad field, and the
// parser's entry point catches it and returns its ApiError (OpenAI's error shape, naming the
// field). It never crosses a parser's public function.
#pragma once

#include <string>
#include <utility>

#include "server/api_error.h"

namespace llmux::server::parse {

struct FieldError {
  ApiError error;
};

// 400 invalid_request_error naming `param`.
[[noreturn]] inline void Fail(std::string param, std::string message, std::string code = "") {
  throw FieldError{InvalidRequest(std::move(message), std::move(param), std::move(code))};
}

// 400 for a documented OpenAI field llmux does not implement (code unsupported_feature).
[[noreturn]] inline void Unsupported(const std::string& param, const std::string& what) {
  throw FieldError{
      InvalidRequest(what + " is not supported by llmux", param, "unsupported_feature")};
}

}  // namespace llmux::server::parse
