#include "iotpki/enroll/errors.h"

#include <nlohmann/json.hpp>

namespace iotpki::enroll {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool WantsJson(const server::Request& request) {
  return Lower(request.accept).find("application/json") != std::string::npos;
}

server::Response Render(int status, std::string_view code, std::string_view message,
                        ErrorFormat format, const server::Request& request) {
  if (format == ErrorFormat::kJson || WantsJson(request)) {
    return {.status = status,
            .content_type = "application/json",
            .body = JsonErrorBody(code, message) + "\n"};
  }
  return {.status = status,
          .content_type = "text/plain; charset=utf-8",
          .body = std::string(message) + "\n"};
}

}  // namespace

int HttpStatus(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
      return 400;
    case Code::kUnauthenticated:
      return 401;
    case Code::kPermissionDenied:
    case Code::kFailedPrecondition:
      return 403;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
    case Code::kAborted:
      return 409;
    case Code::kResourceExhausted:
    case Code::kUnavailable:
      return 503;
    case Code::kUnimplemented:
      return 501;
    case Code::kInternal:
    case Code::kDataLoss:
      return 500;
  }
  return 500;
}

std::string JsonErrorBody(std::string_view code, std::string_view message) {
  return nlohmann::json({{"error", code}, {"message", message}})
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

server::Response ErrorResponse(const Error& error, ErrorFormat format,
                               const server::Request& request) {
  int status = HttpStatus(error.code());
  // Internal failures keep their detail (and even their message) for the logs.
  std::string_view message = status == 500 ? std::string_view("internal error") : error.message();
  server::Response r = Render(status, CodeName(error.code()), message, format, request);
  if (status == 503) r.headers.emplace_back("Retry-After", "5");
  return r;
}

server::Response UnsupportedMediaType(std::string_view expected, ErrorFormat format,
                                      const server::Request& request) {
  return Render(415, "unsupported_media_type", "Content-Type must be " + std::string(expected),
                format, request);
}

server::Response NotAcceptable(std::string_view available, ErrorFormat format,
                               const server::Request& request) {
  return Render(406, "not_acceptable",
                "none of the media types in Accept is available here; this endpoint answers " +
                    std::string(available),
                format, request);
}

bool HasMediaType(std::string_view content_type, std::string_view media_type) {
  std::string_view type = Trim(content_type.substr(0, content_type.find(';')));
  return Lower(type) == Lower(media_type);
}

}  // namespace iotpki::enroll
