#include "iotpki/enroll/errors.h"

#include <nlohmann/json.hpp>

#include "iotpki/common/strings.h"

namespace iotpki::enroll {
namespace {

bool WantsJson(const server::Request& request) {
  return ToLowerAscii(request.accept).find("application/json") != std::string::npos;
}

// The answer shows `message`; its log says `code` and `reason` (the same message, unless the
// client is shown less).
server::Response Render(int status, std::string_view code, std::string_view message,
                        ErrorFormat format, const server::Request& request,
                        std::string_view reason) {
  server::Response r{.status = status,
                     .log = {.error = std::string(code), .reason = std::string(reason)}};
  if (format == ErrorFormat::kJson || WantsJson(request)) {
    r.content_type = "application/json";
    r.body = JsonErrorBody(code, message, request.id) + "\n";
  } else {
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::string(message);
    if (!request.id.empty()) r.body += " (request id " + request.id + ")";
    r.body += "\n";
  }
  return r;
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

std::string JsonErrorBody(std::string_view code, std::string_view message,
                          std::string_view request_id) {
  nlohmann::json body = {{"error", code}, {"message", message}};
  if (!request_id.empty()) body["request_id"] = request_id;
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

server::Response ErrorResponse(const Error& error, ErrorFormat format,
                               const server::Request& request) {
  int status = HttpStatus(error.code());
  // Internal failures keep their detail (and even their message) for the logs.
  std::string_view message = status == 500 ? std::string_view("internal error") : error.message();
  server::Response r =
      Render(status, CodeName(error.code()), message, format, request, error.message());
  r.log.detail = error.detail();
  if (status == 503) r.headers.emplace_back("Retry-After", "5");
  return r;
}

server::Response UnsupportedMediaType(std::string_view expected, ErrorFormat format,
                                      const server::Request& request) {
  std::string message = "Content-Type must be " + std::string(expected);
  return Render(415, "unsupported_media_type", message, format, request, message);
}

server::Response NotAcceptable(std::string_view available, ErrorFormat format,
                               const server::Request& request) {
  std::string message =
      "none of the media types in Accept is available here; this endpoint answers " +
      std::string(available);
  return Render(406, "not_acceptable", message, format, request, message);
}

bool HasMediaType(std::string_view content_type, std::string_view media_type) {
  std::string_view type = Trim(content_type.substr(0, content_type.find(';')));
  return ToLowerAscii(type) == ToLowerAscii(media_type);
}

}  // namespace iotpki::enroll
