#include "iotpki/agent/agent.h"

#include <gtest/gtest.h>

#include "iotpki/agent/https_client.h"
#include "iotpki/ca/bootstrap.h"

namespace iotpki::agent {
namespace {

TEST(AgentTest, TokenIsTheOneTheServerChecks) {
  Bytes k_dev(32, 0x42);
  std::string device_id(64, 'a');
  std::string token = BootstrapToken(k_dev, device_id, 1790000000);
  EXPECT_EQ(token, ca::BootstrapToken(k_dev, device_id, 1790000000));
  EXPECT_TRUE(ca::VerifyBootstrapToken(k_dev, device_id, 1790000000, token));
}

TEST(AgentTest, ServerUrls) {
  auto a = ParseServerUrl("https://127.0.0.1:8443");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8443);
  auto b = ParseServerUrl("https://est.example/");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "est.example");
  EXPECT_EQ(b->port, 443);
  auto c = ParseServerUrl("https://[::1]:9");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 9);
  for (const char* bad : {"http://x:1", "https://", "https://x:0", "https://x:65536", "https://x:",
                          "https://x:1/path", "x:1", "https://[::1", "https://x:1a"}) {
    auto r = ParseServerUrl(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(Classify(r.error()), Outcome::kUsage) << bad;
  }
}

TEST(AgentTest, OutcomesByCode) {
  EXPECT_EQ(Classify(Error(Code::kUnavailable, "")), Outcome::kUnreachable);
  EXPECT_EQ(Classify(Error(Code::kUnauthenticated, "")), Outcome::kTls);
  EXPECT_EQ(Classify(Error(Code::kPermissionDenied, "")), Outcome::kRefused);
  EXPECT_EQ(Classify(Error(Code::kDataLoss, "")), Outcome::kBadAnswer);
  EXPECT_EQ(Classify(Error(Code::kFailedPrecondition, "")), Outcome::kLocal);
  EXPECT_EQ(static_cast<int>(Outcome::kRefused), 5);
}

TEST(AgentTest, UnreachableServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there in a test environment.
  TlsSettings tls{.trust_anchors = {}};
  auto r = HttpsRequest({.host = "127.0.0.1", .port = 1}, tls, "GET", "/", "", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);  // no trust anchor: refused before dialing
}

TEST(AgentTest, MissingStateIsALocalFailure) {
  AgentOptions o{.state = "/nonexistent/iotpki-agent-state", .server_url = "https://127.0.0.1:1"};
  auto r = Bootstrap(o, BootstrapMode::kEst);
  ASSERT_FALSE(r);
  EXPECT_EQ(Classify(r.error()), Outcome::kLocal);
  EXPECT_NE(r.error().message().find("factory"), std::string::npos);
}

}  // namespace
}  // namespace iotpki::agent
