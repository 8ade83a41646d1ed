// The HTTPS transport over real sockets: a Server on a free loopback port, a raw TLS client
// (OpenSSL over a blocking socket) that sends exactly the bytes a test gives it, and handlers
// that say what they were handed.
#include "iotpki/server/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "iotpki/common/log.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/server/test_util.h"

namespace iotpki::server {
namespace {

using testing::TestClock;
using testing::TestPki;

const TestPki& Pki() {
  static const TestPki pki;
  return pki;
}

struct Answer {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lowercase
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct ClientOptions {
  const x509::Certificate* cert = nullptr;
  const crypto::PrivateKey* key = nullptr;
  const char* source = "127.0.0.1";  // any 127/8 address: the server sees another client
};

// A TLS client over a blocking socket. It never verifies the server (the HTTPS client's tests
// do): these tests are about what the server does with the bytes it gets.
class RawClient {
 public:
  // Connects and completes the TLS handshake; throws if either fails.
  static std::unique_ptr<RawClient> Connect(uint16_t port, const ClientOptions& options = {}) {
    std::unique_ptr<RawClient> c(new RawClient);
    c->fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd_ < 0) throw std::runtime_error("socket");
    // A guard against a hung test, not a measurement: a server that should answer or close
    // and does neither fails the test after this.
    timeval guard{.tv_sec = 60, .tv_usec = 0};
    setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, options.source, &src.sin_addr);
    if (bind(c->fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      throw std::runtime_error("bind");
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    if (connect(c->fd_, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
      throw std::runtime_error("connect");
    }
    c->ctx_ = ossl::Own(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_verify(c->ctx_.get(), SSL_VERIFY_NONE, nullptr);
    if (options.cert != nullptr) {
      SSL_CTX_use_certificate(c->ctx_.get(), options.cert->handle());
      SSL_CTX_use_PrivateKey(c->ctx_.get(), options.key->handle());
    }
    c->ssl_ = ossl::Own(SSL_new(c->ctx_.get()));
    SSL_set_fd(c->ssl_.get(), c->fd_);
    if (SSL_connect(c->ssl_.get()) != 1) {
      ossl::ClearErrors();
      throw std::runtime_error("TLS handshake");
    }
    return c;
  }

  ~RawClient() {
    ssl_.reset();
    if (fd_ >= 0) close(fd_);
  }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      int n = SSL_write(ssl_.get(), bytes.data(), static_cast<int>(bytes.size()));
      if (n <= 0) {
        ossl::ClearErrors();
        return false;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response: the status line, headers, and a body of Content-Length bytes. nullopt if the
  // connection ends first.
  std::optional<Answer> Read() {
    size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return std::nullopt;
    }
    Answer a;
    std::string head = in_.substr(0, end + 2);
    in_.erase(0, end + 4);
    if (head.compare(0, 9, "HTTP/1.1 ") != 0) return std::nullopt;
    a.status = std::stoi(head.substr(9, 3));
    for (size_t pos = head.find("\r\n") + 2; pos < head.size();) {
      size_t eol = head.find("\r\n", pos);
      std::string line = head.substr(pos, eol - pos);
      size_t colon = line.find(':');
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      a.headers[Lower(line.substr(0, colon))] = value;
      pos = eol + 2;
    }
    size_t length = a.headers.count("content-length") ? std::stoul(a.headers["content-length"]) : 0;
    while (in_.size() < length) {
      if (!Fill()) return std::nullopt;
    }
    a.body = in_.substr(0, length);
    in_.erase(0, length);
    return a;
  }

  // True when the server closes the connection without sending anything more.
  bool ReadsEof() {
    while (Fill()) {
    }
    return closed_ && in_.empty();
  }

 private:
  RawClient() = default;

  // Appends what the server sends next; false when the connection ended (closed_) or the guard
  // expired.
  bool Fill() {
    char buf[16384];
    errno = 0;
    int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      return true;
    }
    int err = SSL_get_error(ssl_.get(), n);
    closed_ = !(err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
    ossl::ClearErrors();
    return false;
  }

  int fd_ = -1;
  ossl::UniquePtr<SSL_CTX> ctx_;
  ossl::UniquePtr<SSL> ssl_;
  std::string in_;
  bool closed_ = false;
};

// The server's log lines (JSON), as they are written.
class LogLines {
 public:
  void Add(std::string_view line) {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(nlohmann::json::parse(line));
    cv_.notify_all();
  }

  // The first line with `key` = `value`. The server writes a request's line once its answer is
  // sent, which may be just after the client has read it: this waits for it (a guard against a
  // hung test, not a measurement, ends the wait).
  nlohmann::json Find(const std::string& key, const std::string& value) {
    std::unique_lock<std::mutex> lock(mu_);
    nlohmann::json found;
    cv_.wait_for(lock, std::chrono::seconds(60), [&] {
      for (const auto& l : lines_) {
        if (l.contains(key) && l[key] == value) {
          found = l;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  bool Contains(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& l : lines_) {
      if (l.dump().find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nlohmann::json> lines_;
};

// What a handler was handed, as text.
std::string Describe(const Request& r) {
  std::string out = r.method + " " + r.path + " body=" + std::to_string(r.body.size());
  if (!r.client_cert) return out + " cert=none";
  const ClientCertificate& cc = *r.client_cert;
  if (!cc.chain_valid) return out + " cert=invalid (" + cc.verify_error + ")";
  return out + " cert=valid issuer=" + std::to_string(cc.issuer_index) +
         " cn=" + (cc.certificate ? cc.certificate->common_name() : "?");
}

class ServerTest : public ::testing::Test {
 protected:
  ServerTest() {
    auto echo = [](const Request& r) {
      return Response{.status = 200, .content_type = "text/plain", .body = Describe(r)};
    };
    router_.Add("GET", "/echo", "echo", echo);
    router_.Add("POST", "/echo", "echo", echo);
    router_.Add("GET", "/smuggled", "smuggled", [this](const Request&) {
      ++smuggled_;
      return Response{.status = 200, .body = "smuggled"};
    });
    router_.Add("GET", "/throw", "throw",
                [](const Request&) -> Response { throw std::runtime_error("boom"); });
    log::Configure(log::Format::kJson, log::Level::kDebug);
    log::SetSinkForTesting([this](std::string_view line) { lines_.Add(line); });
  }

  ~ServerTest() override {
    server_.reset();  // its threads are the ones that log
    log::SetSinkForTesting(nullptr);
    log::Configure(log::Format::kText, log::Level::kInfo);
  }

  // Starts the server with the test options, changed by `edit`.
  void Start(const std::function<void(ServerOptions&)>& edit = nullptr) {
    ServerOptions o = testing::TestOptions(Pki(), clock_);
    if (edit) edit(o);
    auto s = Server::Start(o, router_, metrics_);
    ASSERT_TRUE(s) << s.error().ToString();
    server_ = std::move(*s);
  }

  std::unique_ptr<RawClient> Connect(const ClientOptions& o = {}) {
    return RawClient::Connect(server_->port(), o);
  }
  ClientOptions WithIdevid() const { return {.cert = &Pki().idevid, .key = &Pki().idevid_key}; }

  // One request on a new connection.
  Answer Exchange(std::string_view request, const ClientOptions& o = {}) {
    auto c = Connect(o);
    EXPECT_TRUE(c->Send(request));
    auto a = c->Read();
    EXPECT_TRUE(a) << "no answer to " << request;
    return a.value_or(Answer{});
  }

  // A day after the test PKI's certificates begin.
  TestClock clock_{x509::testing::kNow + 86400};
  Router router_;
  Registry metrics_;
  std::atomic<int> smuggled_{0};
  LogLines lines_;
  std::unique_ptr<Server> server_;
};

constexpr char kGetEcho[] = "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n";

TEST_F(ServerTest, AnswersRequestsOnAKeptAliveConnection) {
  Start();
  auto c = Connect();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(c->Send(kGetEcho));
    auto a = c->Read();
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200);
    EXPECT_EQ(a->body, "GET /echo body=0 cert=none");
    EXPECT_EQ(a->Header("content-type"), "text/plain");
    EXPECT_EQ(a->Header("cache-control"), "no-store");
  }
}

TEST_F(ServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Start();
  EXPECT_EQ(Exchange("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").status, 404);
  Answer a = Exchange("DELETE /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a.status, 405);
  EXPECT_EQ(a.Header("allow"), "GET, POST");
}

TEST_F(ServerTest, ABodyWithContentLengthReachesTheHandler) {
  Start();
  Answer a = Exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "POST /echo body=5 cert=none");
}

TEST_F(ServerTest, TheClientCertificateVerdictReachesTheHandler) {
  Start();
  Answer a = Exchange(kGetEcho, WithIdevid());
  EXPECT_EQ(a.body, "GET /echo body=0 cert=valid issuer=0 cn=" + Pki().device_id());
}

TEST_F(ServerTest, TheHandshakeJudgesValidityByTheInjectedClock) {
  Start();
  const ClientOptions ldevid = {.cert = &Pki().ldevid, .key = &Pki().ldevid_key};
  EXPECT_EQ(Exchange(kGetEcho, ldevid).body,
            "GET /echo body=0 cert=valid issuer=1 cn=" + Pki().device_id());
  clock_.Set(Pki().ldevid.not_after() + 1);
  EXPECT_EQ(Exchange(kGetEcho, ldevid).body,
            "GET /echo body=0 cert=invalid (certificate has expired)");
  clock_.Set(Pki().ldevid.not_before() - 1);
  EXPECT_EQ(Exchange(kGetEcho, ldevid).body,
            "GET /echo body=0 cert=invalid (certificate is not yet valid)");
}

TEST_F(ServerTest, ACertificateThatExpiresOnAKeptAliveConnectionIsRefusedFromThen) {
  Start();
  auto c = Connect({.cert = &Pki().ldevid, .key = &Pki().ldevid_key});
  ASSERT_TRUE(c->Send(kGetEcho));
  auto before = c->Read();
  ASSERT_TRUE(before);
  EXPECT_EQ(before->body, "GET /echo body=0 cert=valid issuer=1 cn=" + Pki().device_id());
  clock_.Set(Pki().ldevid.not_after() + 1);
  ASSERT_TRUE(c->Send(kGetEcho));
  auto after = c->Read();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /echo body=0 cert=invalid (certificate has expired)");
}

TEST_F(ServerTest, AnIdevidIsRefusedOnAKeptAliveConnectionOnceItsCaHasExpired) {
  Start();
  auto c = Connect(WithIdevid());
  ASSERT_TRUE(c->Send(kGetEcho));
  auto before = c->Read();
  ASSERT_TRUE(before);
  EXPECT_EQ(before->body, "GET /echo body=0 cert=valid issuer=0 cn=" + Pki().device_id());
  // The IDevID itself never expires (notAfter 9999-12-31); the manufacturing CA does.
  clock_.Set(Pki().mfg.not_after() + 1);
  ASSERT_TRUE(c->Send(kGetEcho));
  auto after = c->Read();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /echo body=0 cert=invalid (certificate has expired)");
}

TEST_F(ServerTest, BodiesAndHeadersOverTheLimitsAre413And431) {
  Start([](ServerOptions& o) {
    o.limits.max_body_bytes = 1024;
    o.limits.max_header_bytes = 1024;
  });
  Answer body = Exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" +
                         std::string(1025, 'a'));
  EXPECT_EQ(body.status, 413);
  EXPECT_EQ(body.Header("connection"), "close");
  Answer headers =
      Exchange("GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(2048, 'a') + "\r\n\r\n");
  EXPECT_EQ(headers.status, 431);
}

// The request with a Transfer-Encoding `te`, followed by another one: the smuggled request the
// body would be if the first were taken to have none.
std::string Smuggling(const std::string& te, const std::string& more_headers = "") {
  return "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te + "\r\n" + more_headers +
         "\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
}

TEST_F(ServerTest, TransferEncodingsOtherThanChunkedAreRefusedAndNothingIsSmuggled) {
  Start();
  struct Case {
    std::string request;
    int status;
  };
  const Case cases[] = {
      {Smuggling("gzip"), 400},  // RFC 9112 6.3: chunked must be the final coding
      {Smuggling("chunked, gzip"), 400},
      {Smuggling("identity"), 400},
      {Smuggling("chunked, chunked"), 400},
      {Smuggling(","), 400},
      {Smuggling("gzip", "Content-Length: 0\r\n"), 400},
      {Smuggling("gzip", "Transfer-Encoding: chunked\r\n"), 501},  // gzip, chunked
      {Smuggling("gzip, chunked"), 501},                           // 6.1: unknown coding
      {"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
  };
  for (const Case& c : cases) {
    auto client = Connect();
    ASSERT_TRUE(client->Send(c.request));
    auto a = client->Read();
    ASSERT_TRUE(a) << c.request;
    EXPECT_EQ(a->status, c.status) << c.request;
    EXPECT_EQ(a->Header("connection"), "close") << c.request;
    EXPECT_TRUE(client->ReadsEof()) << "a second answer to " << c.request;
  }
  EXPECT_EQ(smuggled_.load(), 0);
}

// Every client of these endpoints sends Content-Length; a chunked body is refused at its header,
// so no chunk-size line, extension or trailer is ever buffered.
TEST_F(ServerTest, ChunkedRequestBodiesAreRefusedBeforeAnyChunkIsRead) {
  Start();
  const std::string chunked =
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string endless_extension = chunked + "1;" + std::string(200000, 'a');
  const std::string endless_trailers = chunked + "0\r\nX-A: 1\r\nX-B: 2\r\n" + std::string(64, 'c');
  const std::string well_formed = chunked + "5\r\nhello\r\n0\r\n\r\n";
  for (const std::string& request : {endless_extension, endless_trailers, well_formed}) {
    auto client = Connect();
    ASSERT_TRUE(client->Send(request));
    auto a = client->Read();
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 411) << request.substr(0, 80);
    EXPECT_NE(a->body.find("Content-Length"), std::string::npos) << a->body;
    EXPECT_TRUE(client->ReadsEof());
  }
}

// RFC 9112 3.2: exactly one Host, and a valid one.
TEST_F(ServerTest, ARequestNeedsExactlyOneValidHost) {
  Start();
  for (const char* bad :
       {"GET /echo HTTP/1.1\r\n\r\n", "GET /echo HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        "GET /echo HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "GET /echo HTTP/1.1\r\nHost: \r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: a/b\r\n\r\n", "GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: a:80x\r\n\r\n", "GET /echo HTTP/1.1\r\nHost: [::1\r\n\r\n"}) {
    auto client = Connect();
    ASSERT_TRUE(client->Send(bad));
    auto a = client->Read();
    ASSERT_TRUE(a) << bad;
    EXPECT_EQ(a->status, 400) << bad;
    EXPECT_NE(a->body.find("Host"), std::string::npos) << a->body;
    EXPECT_TRUE(client->ReadsEof()) << bad;
  }
  for (const char* good :
       {"GET /echo HTTP/1.0\r\n\r\n", "GET /echo HTTP/1.1\r\nHost: est.example.com\r\n\r\n",
        "GET /echo HTTP/1.1\r\nhost: 127.0.0.1:8443\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"}) {
    EXPECT_EQ(Exchange(good).status, 200) << good;
  }
}

constexpr char kHalfARequest[] = "GET /echo HTTP/1.1\r\n";

TEST_F(ServerTest, OneClientAddressHoldsAtMostItsShareOfTheConnections) {
  Start([](ServerOptions& o) { o.limits.max_connections_per_source = 2; });
  // Two connections of 127.0.0.1 in the middle of a request: busy, not idle.
  auto a = Connect();
  ASSERT_TRUE(a->Send(kHalfARequest));
  auto b = Connect();
  ASSERT_TRUE(b->Send(kHalfARequest));
  Answer refused = Exchange(kGetEcho);
  EXPECT_EQ(refused.status, 503);
  EXPECT_NE(refused.body.find("too many connections from your address"), std::string::npos)
      << refused.body;
  EXPECT_EQ(refused.Header("retry-after"), "5");
  EXPECT_EQ(Exchange(kGetEcho, {.source = "127.0.0.2"}).status, 200);
  EXPECT_EQ(metrics_.CounterValue("iotpki_http_connections_source_limited_total"), 1u);

  // Once a's request is answered, a waits idle: the address's next connection takes its place.
  ASSERT_TRUE(a->Send("Host: x\r\n\r\n"));
  auto answered = a->Read();
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->status, 200);
  EXPECT_EQ(Exchange(kGetEcho).status, 200);
  EXPECT_TRUE(a->ReadsEof());
  EXPECT_EQ(metrics_.CounterValue("iotpki_http_idle_connections_closed_total"), 1u);
}

TEST_F(ServerTest, AtTheConnectionLimitTheLongestIdleConnectionMakesRoom) {
  Start([](ServerOptions& o) { o.limits.max_connections = 3; });
  auto older = Connect();
  ASSERT_TRUE(older->Send(kGetEcho));
  ASSERT_TRUE(older->Read());
  auto newer = Connect({.source = "127.0.0.2"});
  ASSERT_TRUE(newer->Send(kGetEcho));
  ASSERT_TRUE(newer->Read());
  auto busy = Connect();
  ASSERT_TRUE(busy->Send(kHalfARequest));

  // The fourth connection closes the one idle the longest; the other stays.
  auto fourth = Connect();
  ASSERT_TRUE(fourth->Send(kGetEcho));
  auto a = fourth->Read();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 200);
  EXPECT_TRUE(older->ReadsEof());
  ASSERT_TRUE(newer->Send(kGetEcho));
  auto still = newer->Read();
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);

  EXPECT_EQ(metrics_.CounterValue("iotpki_http_idle_connections_closed_total"), 1u);
  EXPECT_EQ(metrics_.CounterValue("iotpki_http_connections_rejected_total", {{"action", "503"}}),
            0u);
}

// Closing a connection that has not sent its first request could lose a request about to
// arrive; request_timeout_s bounds those.
TEST_F(ServerTest, AConnectionWaitingForItsFirstRequestIsNotClosedForAnother) {
  Start([](ServerOptions& o) { o.limits.max_connections = 2; });
  auto first = Connect();
  auto second = Connect();
  Answer refused = Exchange(kGetEcho);
  EXPECT_EQ(refused.status, 503);
  EXPECT_NE(refused.body.find("too many connections, retry later"), std::string::npos);
  ASSERT_TRUE(first->Send(kGetEcho));
  auto a = first->Read();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(metrics_.CounterValue("iotpki_http_idle_connections_closed_total"), 0u);
}

TEST_F(ServerTest, EachAnswerHasARequestIdThatItsLogLineNames) {
  Start();
  Answer a = Exchange(kGetEcho, WithIdevid());
  std::string id = a.Header("x-request-id");
  ASSERT_EQ(id.size(), 16u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  nlohmann::json line = lines_.Find("request_id", id);
  ASSERT_FALSE(line.is_null());
  EXPECT_EQ(line["level"], "info");
  EXPECT_EQ(line["event"], "http.request");
  EXPECT_EQ(line["method"], "GET");
  EXPECT_EQ(line["path"], "/echo");
  EXPECT_EQ(line["endpoint"], "echo");
  EXPECT_EQ(line["status"], 200);
  EXPECT_EQ(line["device"], Pki().device_id());
  EXPECT_EQ(line["peer"].get<std::string>().rfind("127.0.0.1:", 0), 0u) << line;
  EXPECT_EQ(line["bytes_in"], std::string_view(kGetEcho).size());
  EXPECT_GT(line["bytes_out"].get<int>(), static_cast<int>(a.body.size()));
  EXPECT_TRUE(line["ms"].is_number());
  EXPECT_FALSE(line.contains("error"));
  EXPECT_NE(Exchange(kGetEcho).Header("x-request-id"), id);
}

// Request ids are drawn from the CSPRNG 64 at a time per I/O thread: past a draw's end they are
// still new and well-formed.
TEST_F(ServerTest, RequestIdsStayUniquePastOneDraw) {
  Start([](ServerOptions& o) { o.io_threads = 1; });
  auto client = Connect();
  ASSERT_TRUE(client);
  std::set<std::string> ids;
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(client->Send(kGetEcho));
    auto a = client->Read();
    ASSERT_TRUE(a);
    std::string id = a->Header("x-request-id");
    ASSERT_EQ(id.size(), 16u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    EXPECT_TRUE(ids.insert(id).second) << "request id " << id << " given twice";
  }
}

TEST_F(ServerTest, TransportRefusalsQuoteTheRequestIdAndAreLoggedWithTheirReason) {
  Start();
  Answer a = Exchange("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string id = a.Header("x-request-id");
  EXPECT_EQ(a.body, "{\"error\":\"not_found\",\"message\":\"no such endpoint\",\"request_id\":\"" +
                        id + "\"}\n");
  nlohmann::json line = lines_.Find("request_id", id);
  EXPECT_EQ(line["status"], 404);
  EXPECT_EQ(line["error"], "not_found");
  EXPECT_EQ(line["reason"], "no such endpoint");
  EXPECT_FALSE(line.contains("device"));

  Answer large = Exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n");
  line = lines_.Find("request_id", large.Header("x-request-id"));
  EXPECT_EQ(line["status"], 413);
  EXPECT_EQ(line["path"], "/echo");
  EXPECT_EQ(line["reason"], "request body too large");

  Answer smuggling = Exchange(Smuggling("gzip"));
  line = lines_.Find("request_id", smuggling.Header("x-request-id"));
  EXPECT_EQ(line["status"], 400);
  EXPECT_EQ(line["method"], "POST");
  EXPECT_EQ(line["endpoint"], "unknown");
  EXPECT_EQ(line["reason"], "the final transfer coding must be chunked");
}

TEST_F(ServerTest, AFailureIsLoggedAtErrorWithTheDetailTheClientNeverSees) {
  router_.Add("GET", "/fail", "fail", [](const Request&) {
    return Response{.status = 500,
                    .content_type = "application/json",
                    .body = "{\"error\":\"internal\",\"message\":\"internal error\"}\n",
                    .log = {.error = "internal",
                            .reason = "cannot write to the store",
                            .detail = "disk I/O error (/var/lib/iotpki/iotpki.db)"}};
  });
  Start();
  Answer a = Exchange("GET /fail HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a.status, 500);
  EXPECT_EQ(a.body.find("disk"), std::string::npos);
  nlohmann::json line = lines_.Find("request_id", a.Header("x-request-id"));
  EXPECT_EQ(line["level"], "error");
  EXPECT_EQ(line["error"], "internal");
  EXPECT_EQ(line["reason"], "cannot write to the store");
  EXPECT_EQ(line["detail"], "disk I/O error (/var/lib/iotpki/iotpki.db)");

  Answer thrown = Exchange("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n");
  line = lines_.Find("request_id", thrown.Header("x-request-id"));
  EXPECT_EQ(line["level"], "error");
  EXPECT_EQ(line["detail"], "the handler threw: boom");
}

TEST_F(ServerTest, TheHandlersDeviceIdIsLoggedOverTheCertificates) {
  router_.Add("GET", "/claim", "claim", [](const Request&) {
    return Response{.status = 200, .log = {.device_id = std::string(64, 'e')}};
  });
  Start();
  Answer a = Exchange("GET /claim HTTP/1.1\r\nHost: x\r\n\r\n", WithIdevid());
  EXPECT_EQ(lines_.Find("request_id", a.Header("x-request-id"))["device"], std::string(64, 'e'));
}

TEST_F(ServerTest, AFailedHandshakeIsLoggedAtDebug) {
  Start();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(server_->port());
  inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst), 0);
  std::string_view plain = kGetEcho;  // HTTP without TLS
  ASSERT_EQ(write(fd, plain.data(), plain.size()), static_cast<ssize_t>(plain.size()));
  nlohmann::json line = lines_.Find("event", "tls.handshake_failed");
  close(fd);
  EXPECT_EQ(line["level"], "debug");
  EXPECT_EQ(line["peer"].get<std::string>().rfind("127.0.0.1:", 0), 0u) << line;
  EXPECT_TRUE(line.contains("reason"));
  EXPECT_EQ(metrics_.CounterValue("iotpki_tls_handshake_failures_total"), 1u);
}

TEST_F(ServerTest, AHandlerThatThrowsAnswers500AndClosesTheConnection) {
  Start();
  auto c = Connect();
  ASSERT_TRUE(c->Send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto a = c->Read();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 500);
  EXPECT_EQ(a->body.find("boom"), std::string::npos);
  EXPECT_TRUE(c->ReadsEof());
}

// RouteOptions::on_io_thread: answered on the I/O thread, so even with every handler thread
// held, and a handler that throws there still gets its 500.
TEST_F(ServerTest, AnIoThreadRouteIsAnsweredWhileEveryHandlerThreadIsBusy) {
  std::mutex mu;
  std::condition_variable cv;
  int held = 0;
  bool release = false;
  router_.Add("GET", "/hold", "hold", [&](const Request&) {
    std::unique_lock lock(mu);
    ++held;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return Response{.status = 200, .body = "released"};
  });
  router_.Add("GET", "/here", "here",
              [](const Request&) { return Response{.status = 200, .body = "here"}; },
              {.on_io_thread = true});
  router_.Add("GET", "/here-throw", "here",
              [](const Request&) -> Response { throw std::runtime_error("boom"); },
              {.on_io_thread = true});
  // Released on every way out of the test, so that the server can stop.
  struct Releaser {
    std::mutex& mu;
    std::condition_variable& cv;
    bool& release;
    ~Releaser() {
      std::lock_guard lock(mu);
      release = true;
      cv.notify_all();
    }
  } releaser{mu, cv, release};
  Start([](ServerOptions& o) { o.handler_threads = 1; });
  auto blocked = Connect();
  ASSERT_TRUE(blocked->Send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return held == 1; });
  }
  auto c = Connect();
  for (int i = 0; i < 2; ++i) {  // and the connection is kept alive
    ASSERT_TRUE(c->Send("GET /here HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto a = c->Read();
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200);
    EXPECT_EQ(a->body, "here");
  }
  ASSERT_TRUE(c->Send("GET /here-throw HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto thrown = c->Read();
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->status, 500);
  EXPECT_EQ(thrown->body.find("boom"), std::string::npos);
  {
    std::lock_guard lock(mu);
    release = true;
    cv.notify_all();
  }
  auto a = blocked->Read();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->body, "released");
}

}  // namespace
}  // namespace iotpki::server
