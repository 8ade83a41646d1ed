// The agent's HTTPS client against the project's own server (server/), on a loopback port.
#include "iotpki/agent/https_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "iotpki/crypto/signer.h"
#include "iotpki/server/server.h"
#include "iotpki/server/test_util.h"

namespace iotpki::agent {
namespace {

using server::testing::TestPki;

const TestPki& Pki() {
  static const TestPki pki;
  return pki;
}

class HttpsClientTest : public ::testing::Test {
 protected:
  HttpsClientTest() {
    router_.Add("POST", "/echo", "echo", [](const server::Request& r) {
      std::string cert = !r.client_cert ? "none"
                         : r.client_cert->chain_valid
                             ? "valid issuer=" + std::to_string(r.client_cert->issuer_index)
                             : "invalid";
      return server::Response{.status = 200,
                              .content_type = "text/plain",
                              .body = r.method + " " + r.path + " type=" + r.content_type +
                                      " accept=" + r.accept + " cert=" + cert + " body=" + r.body};
    });
    router_.Add("GET", "/big", "big", [](const server::Request&) {
      return server::Response{.status = 200, .body = std::string((1 << 20) + 1, 'x')};
    });
  }

  void Start(std::vector<Bytes> chain = {}) {
    server::ServerOptions o = server::testing::TestOptions(Pki(), clock_);
    if (!chain.empty()) o.certificate_chain = std::move(chain);
    auto s = server::Server::Start(o, router_, metrics_);
    ASSERT_TRUE(s) << s.error().ToString();
    server_ = std::move(*s);
  }

  ServerAddress Address() const { return {.host = "127.0.0.1", .port = server_->port()}; }
  TlsSettings Trusting(const x509::Certificate& anchor) const {
    return {.trust_anchors = {anchor.ToDer()}};
  }

  server::testing::TestClock clock_{x509::testing::kNow + 86400};
  server::Router router_;
  server::Registry metrics_;
  std::unique_ptr<server::Server> server_;
};

TEST_F(HttpsClientTest, SendsARequestWithItsClientCertificateAndReadsTheAnswer) {
  Start();
  TlsSettings tls = Trusting(Pki().root);
  tls.client_chain = {Pki().idevid.ToDer()};
  tls.client_key = &Pki().idevid_key;
  auto r = HttpsRequest(Address(), tls, "POST", "/echo", "application/json", "{\"a\":1}",
                        "application/pkcs7-mime");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_type, "text/plain");
  EXPECT_EQ(r->body,
            "POST /echo type=application/json accept=application/pkcs7-mime cert=valid issuer=0 "
            "body={\"a\":1}");
}

TEST_F(HttpsClientTest, AnyStatusIsAnAnswerNotAnError) {
  Start();
  auto r = HttpsRequest(Address(), Trusting(Pki().root), "GET", "/nowhere", "", "");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->content_type, "application/json");
}

TEST_F(HttpsClientTest, AServerCertificateFromAnotherHierarchyIsUnauthenticated) {
  Start();
  TestPki other;
  auto r = HttpsRequest(Address(), Trusting(other.root), "GET", "/nowhere", "", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnauthenticated);
  EXPECT_NE(r.error().message().find("server certificate not accepted"), std::string::npos)
      << r.error().message();
}

TEST_F(HttpsClientTest, AServerCertificateForAnotherNameIsUnauthenticated) {
  x509::CertificateTemplate t =
      x509::NewTemplate(x509::ProfileKind::kTlsServer, Pki().server_key.public_key(),
                        SystemClock().NowUnix(), Pki().policy);
  t.subject = {.organization = "Acme Devices", .common_name = "est.example.com"};
  t.dns_names = {"est.example.com"};
  auto elsewhere = Pki().IssueFor(t);
  ASSERT_TRUE(elsewhere) << elsewhere.error().ToString();
  Start({elsewhere->ToDer(), Pki().ops.ToDer()});
  auto r = HttpsRequest(Address(), Trusting(Pki().root), "GET", "/nowhere", "", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnauthenticated);
  EXPECT_NE(r.error().message().find("IP address mismatch"), std::string::npos)
      << r.error().message();
}

TEST_F(HttpsClientTest, AnAnswerOverOneMebibyteIsDataLoss) {
  Start();
  auto r = HttpsRequest(Address(), Trusting(Pki().root), "GET", "/big", "", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kDataLoss);
}

// A peer that accepts the TCP connection and never says anything.
TEST_F(HttpsClientTest, AServerThatNeverAnswersIsUnavailableAfterTheTimeout) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  TlsSettings tls = Trusting(Pki().root);
  tls.timeout = std::chrono::seconds(1);
  auto r =
      HttpsRequest({.host = "127.0.0.1", .port = ntohs(addr.sin_port)}, tls, "GET", "/", "", "");
  close(fd);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_NE(r.error().message().find("(timeout)"), std::string::npos) << r.error().message();
}

// A TLS peer with the test server's certificate that reads one request and then vanishes
// without an answer, as a server killed (-9) after acting on it: with a TCP reset (`reset`) or
// a plain close without TLS's close_notify.
Result<HttpResponse> AskAPeerThatVanishes(bool reset) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::thread peer([fd, reset] {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) return;
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, Pki().server_cert.handle());
    SSL_CTX_add1_chain_cert(ctx, Pki().ops.handle());
    SSL_CTX_use_PrivateKey(ctx, crypto::OpenSslHandle(Pki().server_key));
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c);
    char buf[4096];
    if (SSL_accept(ssl) == 1) {
      // The whole request (headers and body), then nothing.
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos ||
             request.find("payload") == std::string::npos) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
    }
    if (reset) {
      linger l{.l_onoff = 1, .l_linger = 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(c);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  });
  TlsSettings tls{.trust_anchors = {Pki().root.ToDer()}};
  tls.timeout = std::chrono::seconds(10);
  auto r = HttpsRequest({.host = "127.0.0.1", .port = ntohs(addr.sin_port)}, tls, "POST", "/",
                        "text/plain", "payload");
  peer.join();
  close(fd);
  return r;
}

// The request went out and no answer came back: the server may have acted on it (a rotation's
// confirmation committed, the old certificate revoked), so this is Unavailable -- "ask again"
// -- and never an authentication failure or a bad answer, on which the agent would roll back.
TEST_F(HttpsClientTest, AConnectionLostAfterTheRequestIsUnavailable) {
  for (bool reset : {false, true}) {
    auto r = AskAPeerThatVanishes(reset);
    ASSERT_FALSE(r) << "reset=" << reset;
    EXPECT_EQ(r.error().code(), Code::kUnavailable) << r.error().message();
    EXPECT_NE(r.error().message().find("may have acted"), std::string::npos) << r.error().message();
  }
}

TEST_F(HttpsClientTest, SettingsWithoutATrustAnchorOrWithAKeylessCertificateAreRefused) {
  Start();
  auto none = HttpsRequest(Address(), TlsSettings{}, "GET", "/", "", "");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Code::kInvalidArgument);
  TlsSettings keyless = Trusting(Pki().root);
  keyless.client_chain = {Pki().idevid.ToDer()};
  auto r = HttpsRequest(Address(), keyless, "GET", "/", "", "");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "a client certificate needs its key");
}

}  // namespace
}  // namespace iotpki::agent
