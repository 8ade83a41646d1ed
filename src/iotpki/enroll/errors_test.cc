#include "iotpki/enroll/errors.h"

#include <gtest/gtest.h>

namespace iotpki::enroll {
namespace {

TEST(ErrorsTest, OneMappingFromCodesToStatuses) {
  EXPECT_EQ(HttpStatus(Code::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatus(Code::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatus(Code::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatus(Code::kNotFound), 404);
  EXPECT_EQ(HttpStatus(Code::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatus(Code::kUnavailable), 503);
  EXPECT_EQ(HttpStatus(Code::kInternal), 500);
}

TEST(ErrorsTest, JsonBodyCarriesCodeAndMessageButNeverTheDetail) {
  server::Request req;
  auto r = ErrorResponse(Error(Code::kNotFound, "unknown device", "SELECT secret"),
                         ErrorFormat::kJson, req);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "{\"error\":\"not_found\",\"message\":\"unknown device\"}\n");
  auto internal =
      ErrorResponse(Error(Code::kInternal, "sqlite said x", "detail"), ErrorFormat::kJson, req);
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(internal.body.find("sqlite"), std::string::npos);
}

TEST(ErrorsTest, EstErrorsArePlainTextUnlessJsonIsAccepted) {
  server::Request req;
  auto text =
      ErrorResponse(Error(Code::kUnauthenticated, "no certificate"), ErrorFormat::kEst, req);
  EXPECT_EQ(text.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(text.body, "no certificate\n");
  req.accept = "application/json";
  auto json =
      ErrorResponse(Error(Code::kUnauthenticated, "no certificate"), ErrorFormat::kEst, req);
  EXPECT_EQ(json.content_type, "application/json");
}

TEST(ErrorsTest, BodiesQuoteTheRequestIdAndTheLogKeepsTheWholeError) {
  server::Request req;
  req.id = "0123456789abcdef";
  auto json =
      ErrorResponse(Error(Code::kPermissionDenied, "device suspended"), ErrorFormat::kJson, req);
  EXPECT_EQ(json.body,
            "{\"error\":\"permission_denied\",\"message\":\"device suspended\","
            "\"request_id\":\"0123456789abcdef\"}\n");
  EXPECT_EQ(json.log.error, "permission_denied");
  EXPECT_EQ(json.log.reason, "device suspended");
  auto est = ErrorResponse(Error(Code::kUnauthenticated, "client certificate refused: expired"),
                           ErrorFormat::kEst, req);
  EXPECT_EQ(est.body, "client certificate refused: expired (request id 0123456789abcdef)\n");

  auto internal = ErrorResponse(Error(Code::kInternal, "cannot commit", "SQLITE_FULL: disk full"),
                                ErrorFormat::kEst, req);
  EXPECT_EQ(internal.body, "internal error (request id 0123456789abcdef)\n");
  EXPECT_EQ(internal.log.error, "internal");
  EXPECT_EQ(internal.log.reason, "cannot commit");
  EXPECT_EQ(internal.log.detail, "SQLITE_FULL: disk full");

  auto media = UnsupportedMediaType("application/pkcs10", ErrorFormat::kEst, req);
  EXPECT_EQ(media.log.error, "unsupported_media_type");
  EXPECT_EQ(media.body, "Content-Type must be application/pkcs10 (request id 0123456789abcdef)\n");
}

TEST(ErrorsTest, MediaTypesIgnoreCaseAndParameters) {
  EXPECT_TRUE(HasMediaType("application/pkcs10", "application/pkcs10"));
  EXPECT_TRUE(HasMediaType("Application/PKCS10; charset=x", "application/pkcs10"));
  EXPECT_TRUE(HasMediaType(" application/json ;charset=utf-8", "application/json"));
  EXPECT_FALSE(HasMediaType("application/pkcs10x", "application/pkcs10"));
  EXPECT_FALSE(HasMediaType("", "application/json"));
  EXPECT_FALSE(HasMediaType("text/plain", "application/json"));
}

TEST(ErrorsTest, MessagesAreEscapedInJson) {
  EXPECT_EQ(JsonErrorBody("x", "a \"quoted\"\n"),
            "{\"error\":\"x\",\"message\":\"a \\\"quoted\\\"\\n\"}");
}

}  // namespace
}  // namespace iotpki::enroll
