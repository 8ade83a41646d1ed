// Errors as HTTP answers: the one mapping from canonical codes to statuses, and the bodies.
//
// The JSON API answers {"error": "<code>", "message": "<text>", "request_id": "<id>"}
// (application/json). EST answers text/plain, one line ending with " (request id <id>)", as
// RFC 7030 section 4.2.3 expects of an error body, unless the client's Accept header asks for
// application/json. Only Error::message() is ever shown, never detail(); internal failures
// (Internal, DataLoss) show a generic text. The whole Error (code, message, detail) goes into the
// response's log, for the transport's line about the request.
#pragma once

#include <string_view>

#include "iotpki/common/error.h"
#include "iotpki/server/http.h"

namespace iotpki::enroll {

//   InvalidArgument 400, Unauthenticated 401, PermissionDenied 403, NotFound 404,
//   AlreadyExists 409, Aborted 409, FailedPrecondition 403, ResourceExhausted 503,
//   Unavailable 503, Unimplemented 501, Internal 500, DataLoss 500.
int HttpStatus(Code code);

enum class ErrorFormat { kJson, kEst };

// The response for `error` in `format` (EST may still get JSON when the request's Accept header
// asks for it).
server::Response ErrorResponse(const Error& error, ErrorFormat format,
                               const server::Request& request);

// 415, for a request whose Content-Type is not `expected`.
server::Response UnsupportedMediaType(std::string_view expected, ErrorFormat format,
                                      const server::Request& request);

// 406, for a request whose Accept header admits none of the media types in `available` (a
// comma-separated list, shown to the client).
server::Response NotAcceptable(std::string_view available, ErrorFormat format,
                               const server::Request& request);

// JSON text of {"error", "message", "request_id"} (without "request_id" when it is empty).
std::string JsonErrorBody(std::string_view code, std::string_view message,
                          std::string_view request_id = {});

// True if the Content-Type header names `media_type` (case-insensitive; parameters such as
// "; charset=utf-8" ignored).
bool HasMediaType(std::string_view content_type, std::string_view media_type);

}  // namespace iotpki::enroll
