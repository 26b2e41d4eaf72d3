// Status and StatusOr<T>: how errors cross module boundaries in llmux.
//
// Exceptions are caught at the edge where a throwing library is called and converted here.
// "Does not fit" conditions (a full KV cache, a budget reached) are plain values
// (std::optional / bool), never a Status. Broken invariants abort through LLMUX_CHECK.
#pragma once

#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace llmux {

// Ordered as the HTTP layer maps them (see server/error_mapping); keep in sync there.
enum class StatusCode {
  kOk,
  kInvalidArgument,     // caller's input is wrong (HTTP 400)
  kNotFound,            // a named thing does not exist (404)
  kFailedPrecondition,  // the system is not in a state to do this
  kOutOfRange,          // a value outside what is supported (e.g. context length)
  kResourceExhausted,   // a tenant's own limit (429)
  kUnavailable,         // the server cannot take it now (503)
  kUnauthenticated,     // 401
  kPermissionDenied,    // 403
  kDeadlineExceeded,    // a wait ran out
  kAborted,             // cancelled by the caller
  kUnimplemented,       // a feature llmux does not implement
  kDataLoss,            // a file is corrupt or truncated
  kInternal,            // a bug or an environment failure
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message" (or "OK").
  std::string ToString() const;

  // Returns a copy whose message is "prefix: message" (keeps the code).
  Status WithContext(std::string_view prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const T& value) : v_(value) {}  // NOLINT(google-explicit-constructor)
  StatusOr(T&& value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  StatusOr(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "StatusOr built from OK");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

namespace internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const std::string& msg);

// Collects `<<` parts of an LLMUX_CHECK message, then aborts in its destructor.
class CheckMessage {
 public:
  CheckMessage(const char* file, int line, const char* expr) : file_(file), line_(line), expr_(expr) {}
  [[noreturn]] ~CheckMessage() { CheckFailed(file_, line_, expr_, os_.str()); }
  template <typename V>
  CheckMessage& operator<<(const V& v) {
    os_ << v;
    return *this;
  }

 private:
  const char* file_;
  int line_;
  const char* expr_;
  std::ostringstream os_;
};
}  // namespace internal

}  // namespace llmux

#define LLMUX_CONCAT_INNER(a, b) a##b
#define LLMUX_CONCAT(a, b) LLMUX_CONCAT_INNER(a, b)

#define LLMUX_RETURN_IF_ERROR(expr)              \
  do {                                           \
    ::llmux::Status llmux_status_ = (expr);      \
    if (!llmux_status_.ok()) return llmux_status_; \
  } while (0)

#define LLMUX_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

// LLMUX_ASSIGN_OR_RETURN(auto x, MakeX());
#define LLMUX_ASSIGN_OR_RETURN(lhs, expr) \
  LLMUX_ASSIGN_OR_RETURN_IMPL(LLMUX_CONCAT(llmux_statusor_, __LINE__), lhs, expr)

// Aborts with file:line, the expression and any streamed message when cond is false.
// For broken invariants only; never for bad input.
#define LLMUX_CHECK(cond) \
  if (cond) {             \
  } else                  \
    ::llmux::internal::CheckMessage(__FILE__, __LINE__, #cond)
