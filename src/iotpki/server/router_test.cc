#include "iotpki/server/router.h"

#include <gtest/gtest.h>

namespace iotpki::server {
namespace {

Handler Named(std::string body) {
  return [body](const Request&) { return Response{.status = 200, .body = body}; };
}

TEST(RouterTest, MatchesLiteralAndPlaceholderSegments) {
  Router r;
  r.Add("GET", "/.well-known/est/cacerts", "cacerts", Named("plain"));
  r.Add("GET", "/.well-known/est/{label}/cacerts", "cacerts", Named("label"));
  auto m = r.Find("GET", "/.well-known/est/cacerts");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ((*m.handler)(Request{}).body, "plain");
  EXPECT_TRUE(m.params.empty());
  m = r.Find("GET", "/.well-known/est/fleet-a/cacerts");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ((*m.handler)(Request{}).body, "label");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0], "fleet-a");
  EXPECT_EQ(m.name, "cacerts");
}

TEST(RouterTest, UnknownPathsAndTrailingSlashesDoNotMatch) {
  Router r;
  r.Add("GET", "/healthz", "healthz", Named("ok"));
  EXPECT_EQ(r.Find("GET", "/healthz/").handler, nullptr);
  EXPECT_EQ(r.Find("GET", "/nope").handler, nullptr);
  EXPECT_EQ(r.Find("GET", "/nope").name, "unknown");
  EXPECT_EQ(r.Find("GET", "").handler, nullptr);
  EXPECT_EQ(r.Find("GET", "//healthz").handler, nullptr);
}

TEST(RouterTest, WrongMethodListsAllowedMethods) {
  Router r;
  r.Add("POST", "/api/v1/bootstrap", "bootstrap", Named("ok"));
  auto m = r.Find("GET", "/api/v1/bootstrap");
  EXPECT_EQ(m.handler, nullptr);
  ASSERT_EQ(m.allowed_methods.size(), 1u);
  EXPECT_EQ(m.allowed_methods[0], "POST");
  EXPECT_EQ(m.name, "bootstrap");
}

TEST(RouterTest, PlaceholderNeedsANonEmptySegment) {
  Router r;
  r.Add("GET", "/a/{x}/b", "ab", Named("ok"));
  EXPECT_EQ(r.Find("GET", "/a//b").handler, nullptr);
}

TEST(RouterTest, MatchCarriesTheRouteOptions) {
  Router r;
  r.Add("GET", "/ocsp/{request}", "ocsp", Named("fast"), {.on_io_thread = true});
  r.Add("POST", "/ocsp", "ocsp", Named("pool"));
  EXPECT_TRUE(r.Find("GET", "/ocsp/abc").on_io_thread);
  EXPECT_FALSE(r.Find("POST", "/ocsp").on_io_thread);
  // A wrong method finds no handler, so nothing runs anywhere.
  EXPECT_FALSE(r.Find("PUT", "/ocsp").on_io_thread);
}

}  // namespace
}  // namespace iotpki::server
