// One error type for the whole library. Library boundaries return Result<T>; exceptions stop at
// the CLI's main, each server session and the agent loop.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace iotpki {

// Canonical codes (abseil's list). The HTTP layer maps them to statuses in one function.
enum class Code {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kFailedPrecondition,
  kResourceExhausted,
  kUnavailable,
  kAborted,
  kUnimplemented,
  kInternal,
  kDataLoss,
};

std::string_view CodeName(Code code);

// message() is safe to show to a client (an HTTP body, a CLI line); detail() is for logs only
// and may name files, OpenSSL reasons or SQL. Neither ever carries a secret.
class Error {
 public:
  Error(Code code, std::string message, std::string detail = {})
      : code_(code), message_(std::move(message)), detail_(std::move(detail)) {}

  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& detail() const { return detail_; }

  // "message (detail)" for logs and the CLI, which runs on the operator's own machine.
  std::string ToString() const;

  // Prefixes the message with what was being done: "reading csr.pem: not a PEM file".
  Error&& Context(std::string_view what) &&;

 private:
  Code code_;
  std::string message_;
  std::string detail_;
};

// tl::expected with [[nodiscard]]: a Result ignored by mistake is a compiler warning (an error in
// the project's own builds). Discard one deliberately with a (void) cast and a comment saying
// why. A class rather than an alias only because an alias cannot carry the attribute.
template <class T = void>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using tl::expected<T, Error>::expected;
  Result(const tl::expected<T, Error>& other) : tl::expected<T, Error>(other) {}
  Result(tl::expected<T, Error>&& other) : tl::expected<T, Error>(std::move(other)) {}
};

inline tl::unexpected<Error> Fail(Code code, std::string message, std::string detail = {}) {
  return tl::unexpected<Error>(Error(code, std::move(message), std::move(detail)));
}
inline tl::unexpected<Error> Fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

}  // namespace iotpki

#define IOTPKI_CONCAT_INNER_(a, b) a##b
#define IOTPKI_CONCAT_(a, b) IOTPKI_CONCAT_INNER_(a, b)

// IOTPKI_TRY(auto x, Expr()) declares x from a Result<T> or returns its error.
#define IOTPKI_TRY(decl, expr) IOTPKI_TRY_IMPL_(IOTPKI_CONCAT_(try_result_, __LINE__), decl, expr)
#define IOTPKI_TRY_IMPL_(tmp, decl, expr)                                     \
  auto tmp = (expr);                                                          \
  if (!tmp) return ::tl::unexpected<::iotpki::Error>(std::move(tmp).error()); \
  decl = std::move(*tmp)

// IOTPKI_CHECK(Expr()) returns the error of a Result<void> (or any Result) if it failed.
#define IOTPKI_CHECK(expr)                                                                      \
  do {                                                                                          \
    auto try_status_ = (expr);                                                                  \
    if (!try_status_) return ::tl::unexpected<::iotpki::Error>(std::move(try_status_).error()); \
  } while (0)
