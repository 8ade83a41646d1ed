#include "iotpki/server/server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cmath>
#include <ctime>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "iotpki/common/log.h"
#include "iotpki/common/strings.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/profile.h"

namespace iotpki::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using beast::error_code;

// What the client-certificate callback found, owned by the session, reached from the SSL object.
struct PeerVerify {
  bool called = false;
  bool ok = false;
  std::string error;
  int issuer_index = -1;
};

// An answer the transport gives itself. Only constant texts: no JSON escaping needed.
struct Refusal {
  int status;
  std::string_view code;
  std::string_view message;
};

Response TransportError(const Refusal& r, std::string_view request_id) {
  return Response{.status = r.status,
                  .content_type = "application/json",
                  .body = "{\"error\":\"" + std::string(r.code) + "\",\"message\":\"" +
                          std::string(r.message) + "\",\"request_id\":\"" +
                          std::string(request_id) + "\"}\n",
                  .log = {.error = std::string(r.code), .reason = std::string(r.message)}};
}

// 16 hex digits from OpenSSL's DRBG: unpredictable, so a request id names one request only.
// 8 bytes of the CSPRNG, drawn for 64 ids at a time per thread: one RAND_bytes call costs about
// as much for 512 bytes as for 8 (locks, DRBG set-up), which was 3% of a fresh OCSP answer's CPU.
std::string NewRequestId() {
  constexpr size_t kIdBytes = 8;
  constexpr size_t kBatch = 64;
  thread_local Bytes pool;
  thread_local size_t used = 0;
  if (used == pool.size()) {
    pool = crypto::RandomBytes(kIdBytes * kBatch);
    used = 0;
  }
  std::string id = ToHex(ByteView(pool).subspan(used, kIdBytes));
  used += kIdBytes;
  return id;
}

// Connections are counted per client address; an IPv6 client commonly holds a whole /64, so its
// addresses are counted by their /64.
std::string SourceKey(const net::ip::address& a) {
  if (!a.is_v6()) return a.to_string();
  net::ip::address_v6 v6 = a.to_v6();
  if (v6.is_v4_mapped()) return net::ip::make_address_v4(net::ip::v4_mapped, v6).to_string();
  net::ip::address_v6::bytes_type bytes = v6.to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return net::ip::address_v6(bytes).to_string() + "/64";
}

// The period in which a verified client chain stays valid: the leaf's validity period within its
// CA's (the anchor, which a partial chain does not check again).
struct Validity {
  int64_t not_before = std::numeric_limits<int64_t>::min();
  int64_t not_after = std::numeric_limits<int64_t>::max();

  void Narrow(const X509* x) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1) {
      not_before = std::max<int64_t>(not_before, timegm(&tm));
    }
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
      not_after = std::min<int64_t>(not_after, timegm(&tm));
    }
  }
  // OpenSSL's words for the certificate's state at `now`, or "" while it is valid.
  std::string_view Check(int64_t now) const {
    if (now < not_before) return X509_verify_cert_error_string(X509_V_ERR_CERT_NOT_YET_VALID);
    if (now > not_after) return X509_verify_cert_error_string(X509_V_ERR_CERT_HAS_EXPIRED);
    return {};
  }
};

// Every transfer coding named by the request's Transfer-Encoding lines, in order, lowercase,
// without parameters; empty list elements skipped (RFC 9110 5.6.1).
std::vector<std::string> TransferCodings(const http::request_header<>& h) {
  std::vector<std::string> out;
  auto [begin, end] = h.equal_range(http::field::transfer_encoding);
  for (auto it = begin; it != end; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view element = list.substr(0, comma);
      std::string coding = ToLowerAscii(Trim(element.substr(0, element.find(';'))));
      if (!coding.empty()) out.push_back(std::move(coding));
      list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
    }
  }
  return out;
}

// RFC 9112 6.1 and 6.3: a body's length must be unambiguous before any of it is read, or its
// bytes could be taken for another request (request smuggling). Every client of iotpki's
// endpoints sends Content-Length, so a Transfer-Encoding is refused, never decoded: nothing of a
// chunked body (chunk-size lines, extensions, trailers) is ever buffered.
std::optional<Refusal> FramingRefusal(const http::request_header<>& h) {
  if (h.count(http::field::transfer_encoding) == 0) return std::nullopt;
  auto bad = [](std::string_view why) { return Refusal{400, "invalid_argument", why}; };
  if (h.version() < 11) return bad("Transfer-Encoding in an HTTP/1.0 request");
  if (h.count(http::field::content_length) != 0) {
    return bad("Content-Length and Transfer-Encoding together");
  }
  std::vector<std::string> codings = TransferCodings(h);
  if (codings.empty() || codings.back() != "chunked") {
    return bad("the final transfer coding must be chunked");
  }
  for (size_t i = 0; i + 1 < codings.size(); ++i) {
    if (codings[i] == "chunked") return bad("chunked applied more than once");
  }
  if (codings.size() > 1) {
    return Refusal{501, "unimplemented", "no transfer coding but chunked is supported"};
  }
  return Refusal{411, "invalid_argument",
                 "chunked request bodies are not accepted: send Content-Length"};
}

// uri-host [":" port] (RFC 9110 7.2): a bracketed IPv6 literal, or an IPv4 address or
// registered name; never empty, which an https URI cannot be.
bool ValidHost(std::string_view host) {
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : host.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    }
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    if (!rest.empty()) port = rest.substr(1);
  } else {
    size_t colon = host.find(':');
    if (colon != std::string_view::npos) port = host.substr(colon + 1);
    std::string_view name = host.substr(0, colon);
    if (name.empty()) return false;
    for (char c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) &&
          std::string_view("-._~!$&'()*+,;=%").find(c) == std::string_view::npos) {
        return false;
      }
    }
  }
  return port.size() <= 5 && port.find_first_not_of("0123456789") == std::string_view::npos;
}

// Why the request's header is refused before its body is read, if it is.
std::optional<Refusal> HeaderRefusal(const http::request_header<>& h) {
  // RFC 9112 3.2: two Hosts could name two origins to two readers of the request.
  size_t hosts = h.count(http::field::host);
  if ((hosts == 0 && h.version() >= 11) || hosts > 1 ||
      (hosts == 1 && !ValidHost(h[http::field::host]))) {
    return Refusal{400, "invalid_argument", "the request needs exactly one valid Host"};
  }
  return FramingRefusal(h);
}

Result<ossl::UniquePtr<X509>> ParseDer(const Bytes& der, std::string_view what) {
  const unsigned char* p = der.data();
  auto x = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x || p != der.data() + der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, std::string(what) + " is not a certificate"));
  }
  return x;
}

}  // namespace

class Session;

struct Server::Impl {
  // Declared first, so destroyed last: sessions still queued in the io_context or the handler
  // pool when those are destroyed (after a drain timeout) unregister themselves here.
  std::mutex mu;  // guards everything up to `destroying`
  struct Entry {
    std::weak_ptr<Session> session;
    // Its client's address (an IPv6 client's /64), while the connection counts towards it.
    std::optional<std::string> source;
    // Waiting for the next request on a kept-alive connection, since `idle_since`.
    bool idle = false;
    std::chrono::steady_clock::time_point idle_since;
    bool evicting = false;  // asked to close to make room; no longer counted
  };
  std::unordered_map<Session*, Entry> sessions;
  std::unordered_map<std::string, size_t> per_source;  // admitted connections by client address
  size_t overloaded = 0;                               // sessions answering 503
  size_t evicting = 0;
  bool stopping = false;
  // `stopping`, read without the lock by every request (twice): set with it, under `mu`.
  std::atomic<bool> stopping_seen{false};
  bool waited = false;
  bool destroying = false;

  ServerOptions options;
  const Clock& clock;
  const Router& router;
  Registry& metrics;

  // One io_context per I/O thread, each run by its thread alone, and each connection on one of
  // them for its whole life: a request is read, answered and written on one thread, with no
  // hand-off between threads (a shared io_context wakes another thread through a futex and
  // interrupts the reactor for each completion it queues: a third of a fresh OCSP answer's CPU,
  // docs/performance.md, session 7). The acceptor is on the first.
  std::vector<std::unique_ptr<net::io_context>> contexts;
  // Keep each context's run() going while it has no connection, until shutdown.
  std::vector<net::executor_work_guard<net::io_context::executor_type>> keep_running;
  size_t next_context = 0;  // round robin over `contexts` (the acceptor's strand only)
  std::optional<ssl::context> ssl_ctx;
  tcp::acceptor acceptor;
  net::steady_timer drain_timer;
  std::optional<net::thread_pool> pool;
  std::vector<std::thread> threads;
  std::string address;
  uint16_t port = 0;
  int ex_index = -1;
  std::vector<ossl::UniquePtr<X509>> issuers;

  Counter& handshake_failures;
  Counter& rejected_overload;
  Counter& rejected_closed;
  Counter& source_limited;
  Counter& idle_closed;

  Impl(const ServerOptions& o, const Router& r, Registry& m, int io_threads)
      : options(o),
        clock(o.clock != nullptr ? *o.clock : SystemClock::Instance()),
        router(r),
        metrics(m),
        contexts(MakeContexts(io_threads)),
        acceptor(net::make_strand(*contexts.front())),
        drain_timer(acceptor.get_executor()),
        handshake_failures(m.GetCounter("iotpki_tls_handshake_failures_total",
                                        "TLS handshakes that failed or timed out")),
        rejected_overload(m.GetCounter("iotpki_http_connections_rejected_total",
                                       "Connections refused because of the connection limit",
                                       {{"action", "503"}})),
        rejected_closed(m.GetCounter("iotpki_http_connections_rejected_total",
                                     "Connections refused because of the connection limit",
                                     {{"action", "closed"}})),
        source_limited(m.GetCounter(
            "iotpki_http_connections_source_limited_total",
            "Connections refused because their client address had max_connections_per_source")),
        idle_closed(m.GetCounter("iotpki_http_idle_connections_closed_total",
                                 "Idle keep-alive connections closed to make room for new ones")) {}

  ~Impl() {
    std::lock_guard<std::mutex> lock(mu);
    destroying = true;
  }

  static std::vector<std::unique_ptr<net::io_context>> MakeContexts(int n) {
    std::vector<std::unique_ptr<net::io_context>> out;
    // Concurrency hint 1: one thread runs it, so its own completions need no wake-up.
    for (int i = 0; i < n; ++i) out.push_back(std::make_unique<net::io_context>(1));
    return out;
  }
  // The context of the next connection.
  net::io_context& NextContext() {
    net::io_context& c = *contexts[next_context];
    next_context = (next_context + 1) % contexts.size();
    return c;
  }
  void StopContexts() {
    for (auto& c : contexts) c->stop();
  }

  bool Stopping() const { return stopping_seen.load(std::memory_order_acquire); }
  void Register(Session* s, std::weak_ptr<Session> w, std::optional<std::string> source) {
    std::lock_guard<std::mutex> lock(mu);
    sessions.emplace(s, Entry{.session = std::move(w), .source = std::move(source)});
  }
  void Unregister(Session* s, bool was_overloaded);
  // A kept-alive connection starts or stops waiting for its next request.
  void SetIdle(Session* s, bool idle);
  enum class Admission { kAdmitted, kOverloaded, kSourceOverloaded, kDropped };
  Admission Admit(const std::string& source);
  Session* OldestIdle(const std::string* source);
  void DoAccept();
  void OnAccept(error_code ec, tcp::socket socket);
  void BeginShutdown();
  Counter& RequestCounter(const std::string& endpoint, int status) {
    return metrics.GetCounter("iotpki_http_requests_total", "HTTP requests by endpoint and status",
                              {{"endpoint", endpoint}, {"status", std::to_string(status)}});
  }
};

namespace {

// Replaces OpenSSL's chain verification for client certificates: verifies as OpenSSL would,
// records the outcome for the handler, and lets the handshake complete either way. The
// CertificateVerify signature (possession of the certificate's key) is checked by TLS itself,
// independently of this callback.
int VerifyClientCertificate(X509_STORE_CTX* x, void* arg) {
  auto* impl = static_cast<Server::Impl*>(arg);
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* out = ssl ? static_cast<PeerVerify*>(SSL_get_ex_data(ssl, impl->ex_index)) : nullptr;
  X509_STORE_CTX_set_time(x, 0, static_cast<time_t>(impl->clock.NowUnix()));
  int ok = X509_verify_cert(x);
  if (out != nullptr) {
    out->called = true;
    out->ok = ok == 1;
    if (!out->ok) {
      out->error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(x));
    } else {
      STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(x);
      X509* issuer = sk_X509_num(chain) >= 2 ? sk_X509_value(chain, 1) : nullptr;
      for (size_t i = 0; issuer != nullptr && i < impl->issuers.size(); ++i) {
        if (X509_cmp(issuer, impl->issuers[i].get()) == 0) out->issuer_index = static_cast<int>(i);
      }
      if (out->issuer_index < 0) {
        out->ok = false;
        out->error = "certificate not issued by a CA that may authenticate clients";
      }
    }
  }
  ossl::ClearErrors();
  return 1;
}

Result<ossl::UniquePtr<SSL_CTX>> BuildSslContext(Server::Impl& impl) {
  const ServerOptions& o = impl.options;
  if (o.certificate_chain.empty() || o.key == nullptr || crypto::OpenSslHandle(*o.key) == nullptr) {
    return Fail(Code::kInvalidArgument, "the server needs a certificate and a usable key");
  }
  auto ctx = ossl::Own(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return Fail(ossl::Drain(Code::kInternal, "cannot create a TLS context"));
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // No resumption: every connection authenticates its client certificate afresh, and the
  // verdict recorded by VerifyClientCertificate always belongs to this handshake.
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  static const unsigned char kSid[] = "iotpki";
  SSL_CTX_set_session_id_context(c, kSid, sizeof kSid - 1);
  if (SSL_CTX_set_cipher_list(c, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
      SSL_CTX_set1_groups_list(c, "X25519:P-256:P-384") != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot configure TLS ciphers"));
  }

  IOTPKI_TRY(auto leaf, ParseDer(o.certificate_chain[0], "the server certificate"));
  if (SSL_CTX_use_certificate(c, leaf.get()) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "unusable server certificate"));
  }
  for (size_t i = 1; i < o.certificate_chain.size(); ++i) {
    IOTPKI_TRY(auto ca, ParseDer(o.certificate_chain[i], "a server chain certificate"));
    if (SSL_CTX_add1_chain_cert(c, ca.get()) != 1) {
      return Fail(ossl::Drain(Code::kInvalidArgument, "unusable server chain certificate"));
    }
  }
  if (SSL_CTX_use_PrivateKey(c, crypto::OpenSslHandle(*o.key)) != 1 ||
      SSL_CTX_check_private_key(c) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument,
                            "the server key does not match the server certificate"));
  }

  X509_STORE* store = SSL_CTX_get_cert_store(c);
  for (const Bytes& der : o.client_issuers) {
    IOTPKI_TRY(auto ca, ParseDer(der, "a client CA"));
    if (X509_STORE_add_cert(store, ca.get()) != 1 || SSL_CTX_add_client_CA(c, ca.get()) != 1) {
      return Fail(ossl::Drain(Code::kInvalidArgument, "unusable client CA"));
    }
    impl.issuers.push_back(std::move(ca));
  }
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(c),
                              X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN);
  // Request, never require: /cacerts and the JSON API serve clients without a certificate, and a
  // refusal is better explained by an HTTP status than by a failed handshake.
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_cert_verify_callback(c, VerifyClientCertificate, &impl);
  return ctx;
}

}  // namespace

// One TCP connection: TLS handshake, then requests in sequence (keep-alive), each read under a
// deadline, handled on the handler pool, answered on the connection's I/O thread.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Server::Impl& srv, Server::Impl::Admission admission)
      : stream_(std::move(socket), *srv.ssl_ctx),
        timer_(stream_.get_executor()),
        // One request at its limits, and a little for the start of a pipelined next one.
        buffer_(srv.options.limits.max_header_bytes + srv.options.limits.max_body_bytes + 4096),
        srv_(srv),
        admission_(admission) {}

  ~Session() { srv_.Unregister(this, admission_ != Server::Impl::Admission::kAdmitted); }

  void Start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::OnStart, shared_from_this()));
  }

  // Called on the session's I/O thread when the server begins to shut down.
  void OnServerStopping() {
    if (phase_ == Phase::kIdle) CancelRead();
  }

  // Called on the session's I/O thread when another connection needs this one's slot (Admit): it
  // closes now if it is waiting for a request, else after the answer to the one it is reading.
  void Evict() {
    evicted_ = true;
    if (phase_ == Phase::kIdle) CancelRead();
  }

  net::any_io_executor executor() { return stream_.get_executor(); }

 private:
  using Steady = std::chrono::steady_clock;
  enum class Phase { kHandshake, kIdle, kReading, kHandling, kWriting, kClosing };

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void OnStart() {
    error_code ec;
    auto ep = lowest().socket().remote_endpoint(ec);
    if (!ec) peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    SSL_set_ex_data(stream_.native_handle(), srv_.ex_index, &verify_);
    lowest().expires_after(srv_.options.limits.handshake_timeout);
    stream_.async_handshake(ssl::stream_base::server,
                            beast::bind_front_handler(&Session::OnHandshake, shared_from_this()));
  }

  void OnHandshake(error_code ec) {
    lowest().expires_never();
    SSL_set_ex_data(stream_.native_handle(), srv_.ex_index, nullptr);
    ossl::ClearErrors();
    if (ec) {
      // Noise at fleet scale (scanners, clients that do not trust us yet): counted, and logged
      // only at debug.
      srv_.handshake_failures.Inc();
      log::Debug("tls.handshake_failed", {{"peer", peer_}, {"reason", ec.message()}});
      phase_ = Phase::kClosing;
      error_code ignored;
      lowest().socket().close(ignored);
      return;
    }
    if (X509* peer = SSL_get0_peer_certificate(stream_.native_handle())) {
      ClientCertificate cc;
      if (auto cert = x509::Certificate::FromParsed(peer)) cc.certificate = std::move(*cert);
      cc.chain_valid = verify_.called && verify_.ok;
      cc.verify_error = verify_.called ? verify_.error : "certificate not verified";
      cc.issuer_index = cc.chain_valid ? verify_.issuer_index : -1;
      if (cc.certificate && x509::ValidateDeviceId(cc.certificate->common_name())) {
        client_device_ = cc.certificate->common_name();
      }
      if (cc.chain_valid) {
        client_validity_.Narrow(peer);
        client_validity_.Narrow(srv_.issuers[static_cast<size_t>(cc.issuer_index)].get());
      }
      client_ = std::move(cc);
    }
    if (admission_ != Server::Impl::Admission::kAdmitted) {
      srv_.rejected_overload.Inc();
      NewRequest();
      Response r = Refuse({503, "unavailable",
                           admission_ == Server::Impl::Admission::kSourceOverloaded
                               ? "too many connections from your address, retry later"
                               : "too many connections, retry later"});
      r.headers.emplace_back("Retry-After", "5");
      return Send(std::move(r), "overload", /*close=*/true);
    }
    ReadRequest();
  }

  // One deadline per connection, for the phase it is in (waiting for a request, reading one,
  // writing its answer, lingering), and one timer that is not re-armed per request: setting a
  // later deadline only stores it, and the timer, when it fires, sleeps again until the
  // deadline then current. A keep-alive connection re-arms it about once per request_timeout
  // instead of three times per request (each a timerfd_settime, and a cancelled wait queued;
  // docs/performance.md, session 7).
  void SetDeadline(std::chrono::seconds timeout) {
    deadline_ = std::chrono::steady_clock::now() + timeout;
    if (!timer_waiting_ || deadline_ < timer_expiry_) ArmTimerAt(deadline_);
  }
  void ClearDeadline() { deadline_ = Steady::time_point::max(); }

  void ArmTimerAt(Steady::time_point at) {
    timer_expiry_ = at;
    timer_waiting_ = true;
    timer_.expires_at(at);  // a wait pending is cancelled: its generation is stale
    // Weak: a connection that has closed is not kept alive until its timer fires.
    timer_.async_wait([weak = weak_from_this(), gen = ++timer_gen_](error_code ec) {
      auto self = weak.lock();
      if (!self || gen != self->timer_gen_) return;  // gone, or re-armed since
      self->timer_waiting_ = false;
      if (ec) return;  // cancelled (closing)
      self->OnTimer();
    });
  }

  void OnTimer() {
    if (deadline_ == Steady::time_point::max()) return;  // no deadline now; armed again when set
    if (Steady::now() < deadline_) return ArmTimerAt(deadline_);
    ClearDeadline();
    switch (phase_) {
      case Phase::kIdle:
      case Phase::kReading:
        timed_out_ = true;
        return CancelRead();
      case Phase::kWriting:
      case Phase::kClosing: {
        // The client does not read the answer (or the lingering close ran out): closing the
        // socket ends the write (or the drain) with an error.
        error_code ignored;
        lowest().socket().close(ignored);
        return;
      }
      case Phase::kHandshake:
      case Phase::kHandling:
        return;
    }
  }

  void CancelRead() {
    error_code ignored;
    lowest().socket().cancel(ignored);
  }

  void ReadRequest() {
    if (srv_.Stopping() || (evicted_ && buffer_.size() == 0)) return Close();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(srv_.options.limits.max_header_bytes));
    parser_->body_limit(srv_.options.limits.max_body_bytes);
    if (buffer_.size() > 0) return BeginRequest();
    phase_ = Phase::kIdle;
    timed_out_ = false;
    SetDeadline(served_ == 0 ? srv_.options.limits.request_timeout
                             : srv_.options.limits.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            beast::bind_front_handler(&Session::OnFirstBytes, shared_from_this()));
  }

  void OnFirstBytes(error_code ec, size_t n) {
    ClearDeadline();
    if (ec) return Close();  // idle timeout, shutdown, or the client went away
    buffer_.commit(n);
    BeginRequest();
  }

  // The request's first bytes are here: the whole request must arrive within request_timeout
  // of them, however slowly the client trickles (slowloris). The header is read and judged
  // first; the body only once its framing is known to be unambiguous.
  void BeginRequest() {
    phase_ = Phase::kReading;
    NewRequest();
    if (idle_) {
      idle_ = false;
      srv_.SetIdle(this, false);
    }
    timed_out_ = false;
    SetDeadline(srv_.options.limits.request_timeout);
    // A request's header usually arrives whole with its first bytes: parsed here, as
    // async_read_header would (the same parser and limits, stopping after the header), without
    // the completion it would queue for an operation that needs no I/O (a trip through the
    // scheduler and an epoll_wait per request; docs/performance.md, session 7).
    if (buffer_.size() > 0) {
      error_code ec;
      size_t used = 0;
      while (!parser_->is_header_done() && buffer_.size() > 0) {
        size_t n = parser_->put(buffer_.data(), ec);
        buffer_.consume(n);
        used += n;
        if (ec || n == 0) break;
      }
      if (ec == http::error::need_more) ec = {};
      if (ec || parser_->is_header_done()) return OnHeader(ec, used);
      current_.bytes_in += used;  // a part of the header: the rest is read below
    }
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(error_code ec, size_t n) {
    current_.bytes_in += n;
    if (ec) return OnReadError(ec);
    NoteRequestLine();
    if (auto refusal = HeaderRefusal(parser_->get())) {
      StopTimer();
      // The body was not read: its bytes must not be taken for the next request.
      linger_ = true;
      return Send(Refuse(*refusal), "unknown", true);
    }
    if (parser_->is_done()) {
      StopTimer();
      return Dispatch();
    }
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnBody, shared_from_this()));
  }

  void OnBody(error_code ec, size_t n) {
    current_.bytes_in += n;
    if (ec) return OnReadError(ec);
    StopTimer();
    Dispatch();
  }

  void StopTimer() { ClearDeadline(); }

  // A new request begins (its first bytes are here, or a refused connection is answered).
  void NewRequest() {
    current_ = Current{.id = NewRequestId(), .started = std::chrono::steady_clock::now()};
  }

  // The method and path of the request, once its header is parsed, for its log line.
  void NoteRequestLine() {
    const auto& msg = parser_->get();
    current_.method = std::string(msg.method_string());
    std::string_view target = msg.target();
    current_.path = std::string(target.substr(0, target.find('?')));
  }

  Response Refuse(const Refusal& refusal) const { return TransportError(refusal, current_.id); }

  void OnReadError(error_code ec) {
    StopTimer();
    bool header_done = parser_->is_header_done();
    // A Content-Length over the limit is refused once the request line is parsed.
    if (!parser_->get().target().empty()) NoteRequestLine();
    if (timed_out_) {
      return Send(Refuse({408, "request_timeout", "the request took too long to arrive"}),
                  "unknown", true);
    }
    // The client may still be sending what was refused: drain it after the answer (Linger), or
    // closing with unread data would reset the connection before the client reads the answer.
    if (ec == http::error::header_limit || (ec == http::error::buffer_overflow && !header_done)) {
      linger_ = true;
      return Send(Refuse({431, "invalid_argument", "request headers too large"}), "unknown", true);
    }
    if (ec == http::error::body_limit || ec == http::error::buffer_overflow) {
      linger_ = true;
      return Send(Refuse({413, "invalid_argument", "request body too large"}), "unknown", true);
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::ssl::error::stream_truncated || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset) {
      return Close();
    }
    return Send(Refuse({400, "invalid_argument", "malformed HTTP request"}), "unknown", true);
  }

  void Dispatch() {
    phase_ = Phase::kHandling;
    ++served_;
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    Request req;
    req.method = std::string(msg.method_string());
    std::string_view target = msg.target();
    size_t q = target.find('?');
    req.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
    req.content_type = std::string(msg[http::field::content_type]);
    req.accept = std::string(msg[http::field::accept]);
    req.if_none_match = std::string(msg[http::field::if_none_match]);
    req.host = std::string(msg[http::field::host]);
    req.origin = std::string(msg[http::field::origin]);
    req.sec_fetch_site = std::string(msg["Sec-Fetch-Site"]);
    req.csrf_token = std::string(msg["X-CSRF-Token"]);
    req.body = std::move(msg.body());
    req.client_cert = ClientCertificateNow();
    req.peer = peer_;
    req.id = current_.id;

    Router::Match match = srv_.router.Find(req.method, req.path);
    if (match.handler == nullptr) {
      if (!match.allowed_methods.empty()) {
        Response r = Refuse({405, "invalid_argument", "method not allowed"});
        std::string allow;
        for (const auto& m : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + m;
        r.headers.emplace_back("Allow", allow);
        return Send(std::move(r), match.name, false);
      }
      return Send(Refuse({404, "not_found", "no such endpoint"}), match.name, false);
    }
    req.params = std::move(match.params);
    const Handler* handler = match.handler;
    if (match.on_io_thread) {
      // A handler that never waits (RouteOptions): answered here, on the connection's I/O thread.
      return Send(RunHandler(*handler, req), match.name, false);
    }
    // The handler may block (a group commit waiting for fsync): it runs on the pool, and the
    // work guard keeps the I/O threads alive until its answer is posted back.
    net::post(*srv_.pool, [self = shared_from_this(), handler, name = std::move(match.name),
                           req = std::move(req),
                           work = net::make_work_guard(stream_.get_executor())]() mutable {
      Response res = RunHandler(*handler, req);
      net::post(self->stream_.get_executor(),
                [self, res = std::move(res), name = std::move(name)]() mutable {
                  self->Send(std::move(res), name, false);
                });
    });
  }

  static Response RunHandler(const Handler& handler, const Request& req) {
    try {
      return handler(req);
    } catch (const std::exception& e) {
      Response res = TransportError({500, "internal", "internal error"}, req.id);
      res.log.detail = std::string("the handler threw: ") + e.what();
      return res;
    } catch (...) {
      Response res = TransportError({500, "internal", "internal error"}, req.id);
      res.log.detail = "the handler threw something that is not a std::exception";
      return res;
    }
  }

  // The handshake's verdict, unless the certificate (or its CA) has expired since: a kept-alive
  // connection is not authenticated beyond its certificate's validity.
  std::optional<ClientCertificate> ClientCertificateNow() const {
    if (!client_ || !client_->chain_valid) return client_;
    std::string_view invalid = client_validity_.Check(srv_.clock.NowUnix());
    if (invalid.empty()) return client_;
    ClientCertificate cc = *client_;
    cc.chain_valid = false;
    cc.verify_error = std::string(invalid);
    cc.issuer_index = -1;
    return cc;
  }

  void Send(Response r, const std::string& endpoint, bool close) {
    phase_ = Phase::kWriting;
    RequestCounter(endpoint, r.status).Inc();
    answered_ = Answered{.status = r.status, .endpoint = endpoint, .log = std::move(r.log)};
    bool keep = keep_alive_ && !close && !evicted_ && !srv_.Stopping() && r.status < 500;
    if (keep) {
      // Idle from now on, as far as making room goes: Evict() during the write closes the
      // connection after it instead of waiting for a next request.
      idle_ = true;
      srv_.SetIdle(this, true);
    }
    res_.emplace();
    res_->version(11);
    res_->result(static_cast<unsigned>(r.status));
    res_->reason(ReasonPhrase(r.status));
    res_->set(http::field::server, "iotpki");
    if (!r.content_type.empty()) res_->set(http::field::content_type, r.content_type);
    res_->set(http::field::cache_control, "no-store");
    res_->set("X-Request-Id", current_.id);
    for (auto& [k, v] : r.headers) res_->set(k, v);
    res_->body() = std::move(r.body);
    res_->keep_alive(keep);
    res_->prepare_payload();
    SetDeadline(srv_.options.limits.request_timeout);
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&Session::OnWrite, shared_from_this(), keep));
  }

  // The registry's counter for (endpoint, status), looked up once per connection while they stay
  // the same (a registry lookup builds its labels and takes the registry's lock).
  Counter& RequestCounter(const std::string& endpoint, int status) {
    if (counter_ == nullptr || status != counter_status_ || endpoint != counter_endpoint_) {
      counter_ = &srv_.RequestCounter(endpoint, status);
      counter_endpoint_ = endpoint;
      counter_status_ = status;
    }
    return *counter_;
  }

  void OnWrite(bool keep, error_code ec, size_t n) {
    ClearDeadline();
    res_.reset();
    LogRequest(n);
    if (ec) return Close();
    if (linger_) return Linger();
    if (!keep) return Close();
    ReadRequest();
  }

  // One line per answer, at error for a 5xx (the server failed) and info otherwise (a refusal is
  // normal traffic): what an operator needs to find a request by its id or by its device.
  void LogRequest(uint64_t bytes_out) const {
    log::Level level = answered_.status >= 500 ? log::Level::kError : log::Level::kInfo;
    if (!log::Enabled(level)) return;
    const ResponseLog& about = answered_.log;
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                          current_.started)
                    .count();
    // The text fields refer to the connection's own strings (Field::View), which outlive the
    // Write: no copy of the path or the ids per request.
    std::vector<log::Field> fields;
    fields.reserve(14);
    fields.push_back(log::Field::View("request_id", current_.id));
    fields.push_back(log::Field::View("peer", peer_));
    if (!current_.method.empty()) {
      fields.push_back(log::Field::View("method", current_.method));
      fields.push_back(log::Field::View("path", current_.path));
    }
    fields.push_back(log::Field::View("endpoint", answered_.endpoint));
    fields.emplace_back("status", answered_.status);
    const std::string& device = about.device_id.empty() ? client_device_ : about.device_id;
    if (!device.empty()) fields.push_back(log::Field::View("device", device));
    fields.emplace_back("ms", std::round(ms * 10) / 10);
    fields.emplace_back("bytes_in", current_.bytes_in);
    fields.emplace_back("bytes_out", bytes_out);
    if (!about.error.empty()) {
      fields.push_back(log::Field::View("error", about.error));
      fields.push_back(log::Field::View("reason", about.reason));
    }
    if (!about.detail.empty()) fields.push_back(log::Field::View("detail", about.detail));
    // Batched: info lines are written together within 20 ms (one write(2) for many requests);
    // an error line (a 5xx) at once, after them.
    log::Write(level, "http.request", fields, log::Delivery::kBatched);
  }

  // Half-closes the TCP connection and discards what the client still sends (up to a limit and
  // a deadline), so that it can read the answer before the connection goes away.
  void Linger() {
    phase_ = Phase::kClosing;
    error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    SetDeadline(std::chrono::seconds(2));
    DrainSome();
  }

  void DrainSome() {
    constexpr size_t kDrainBuffer = 16384;
    if (!drain_) drain_.reset(new char[kDrainBuffer]);
    lowest().socket().async_read_some(net::buffer(drain_.get(), kDrainBuffer),
                                      [self = shared_from_this()](error_code ec, size_t n) {
                                        self->drained_ += n;
                                        if (ec || self->drained_ > (8u << 20)) {
                                          self->timer_.cancel();
                                          error_code ignored;
                                          self->lowest().socket().close(ignored);
                                          return;
                                        }
                                        self->DrainSome();
                                      });
  }

  // Sends close_notify (bounded by a short deadline), then closes the socket.
  void Close() {
    if (phase_ == Phase::kClosing) return;
    phase_ = Phase::kClosing;
    timer_.cancel();
    lowest().expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = shared_from_this()](error_code) {
      error_code ignored;
      self->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      self->lowest().socket().close(ignored);
      ossl::ClearErrors();
    });
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  Server::Impl& srv_;
  Server::Impl::Admission admission_;
  bool idle_ = false;     // marked idle in the server's table
  bool evicted_ = false;  // asked to make room: no further request on this connection
  Phase phase_ = Phase::kHandshake;
  bool timed_out_ = false;  // the read was cancelled by its deadline
  Steady::time_point deadline_ = Steady::time_point::max();  // none
  bool timer_waiting_ = false;  // timer_ has a wait pending, until timer_expiry_
  Steady::time_point timer_expiry_;
  uint64_t timer_gen_ = 0;  // of the wait pending; an older one's handler does nothing
  bool keep_alive_ = false;
  bool linger_ = false;
  std::unique_ptr<char[]> drain_;  // allocated only for a lingering close
  size_t drained_ = 0;
  uint64_t served_ = 0;
  Counter* counter_ = nullptr;  // RequestCounter's last
  std::string counter_endpoint_;
  int counter_status_ = 0;
  PeerVerify verify_;
  Validity client_validity_;
  std::optional<ClientCertificate> client_;
  std::string client_device_;  // the client certificate's CN when it names a device
  std::string peer_;
  // The request being answered, for its log line.
  struct Current {
    std::string id;
    std::string method;
    std::string path;
    std::chrono::steady_clock::time_point started;
    uint64_t bytes_in = 0;
  } current_;
  // What Send leaves for the log line written once the answer is sent.
  struct Answered {
    int status = 0;
    std::string endpoint;
    ResponseLog log;
  } answered_;
};

void Server::Impl::Unregister(Session* s, bool was_overloaded) {
  bool drained = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = sessions.find(s);
    if (it != sessions.end()) {
      if (it->second.evicting) --evicting;
      if (it->second.source) {
        auto count = per_source.find(*it->second.source);
        if (count != per_source.end() && --count->second == 0) per_source.erase(count);
      }
      sessions.erase(it);
    }
    if (was_overloaded) --overloaded;
    drained = stopping && sessions.empty() && !destroying;
  }
  if (drained) {
    net::post(acceptor.get_executor(), [this] { drain_timer.cancel(); });
  }
}

void Server::Impl::SetIdle(Session* s, bool idle) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = sessions.find(s);
  if (it == sessions.end()) return;
  it->second.idle = idle;
  if (idle) it->second.idle_since = std::chrono::steady_clock::now();
}

// The kept-alive connection (of `source`, if given) that has waited longest for its next
// request. A connection that has not sent its first request is never chosen: closing it could
// lose a request about to arrive, and request_timeout_s bounds it anyway. Called with `mu` held.
Session* Server::Impl::OldestIdle(const std::string* source) {
  Session* oldest = nullptr;
  std::chrono::steady_clock::time_point since;
  for (auto& [p, e] : sessions) {
    if (!e.idle || e.evicting || !e.source || (source != nullptr && *e.source != *source)) {
      continue;
    }
    if (oldest == nullptr || e.idle_since < since) {
      oldest = p;
      since = e.idle_since;
    }
  }
  return oldest;
}

// Takes a slot for a new connection from `source`: within both limits, or in place of an idle
// kept-alive connection, which is asked to close (it may finish a request that has just begun).
// Otherwise a few connections get a 503, and beyond those the socket is just closed, so that a
// flood costs no handshakes.
Server::Impl::Admission Server::Impl::Admit(const std::string& source) {
  std::shared_ptr<Session> victim;
  Admission admission = Admission::kAdmitted;
  {
    std::lock_guard<std::mutex> lock(mu);
    const Limits& l = options.limits;
    auto count = per_source.find(source);
    bool over_source = count != per_source.end() && count->second >= l.max_connections_per_source;
    // Connections answering 503 are not counted: they are few (below) and close at once.
    bool over_total = sessions.size() - evicting - overloaded >= l.max_connections;
    if (over_source || over_total) {
      Session* oldest = OldestIdle(over_source ? &source : nullptr);
      if (oldest != nullptr) {
        Entry& e = sessions[oldest];
        victim = e.session.lock();
        e.evicting = true;
        ++evicting;
        if (--per_source[*e.source] == 0) per_source.erase(*e.source);
        e.source.reset();
      } else if (overloaded < std::max<size_t>(8, l.max_connections / 8)) {
        ++overloaded;
        admission = over_source ? Admission::kSourceOverloaded : Admission::kOverloaded;
      } else {
        admission = Admission::kDropped;
      }
      if (over_source && oldest == nullptr) source_limited.Inc();
    }
    if (admission == Admission::kAdmitted) ++per_source[source];
  }
  if (victim) {
    idle_closed.Inc();
    net::post(victim->executor(), [victim] { victim->Evict(); });
  }
  return admission;
}

void Server::Impl::DoAccept() {
  acceptor.async_accept(NextContext().get_executor(), [this](error_code ec, tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void Server::Impl::OnAccept(error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
  if (ec) {
    // Out of descriptors or memory: back off briefly instead of spinning.
    auto timer =
        std::make_shared<net::steady_timer>(acceptor.get_executor(), std::chrono::milliseconds(50));
    timer->async_wait([this, timer](error_code) {
      if (acceptor.is_open()) DoAccept();
    });
    return;
  }
  error_code no_peer;
  std::string source = SourceKey(socket.remote_endpoint(no_peer).address());
  Admission admission = Admit(source);
  if (admission == Admission::kDropped) {
    rejected_closed.Inc();
    error_code ignored;
    socket.close(ignored);
  } else {
    // The answer and the close_notify after it are small writes in a row: without this, Nagle
    // holds the second until the client's delayed ACK (about 40 ms per connection for a client
    // that reads until the server closes; docs/performance.md, "Baseline: OpenSSL's own server").
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto session = std::make_shared<Session>(std::move(socket), *this, admission);
    Register(session.get(), session,
             admission == Admission::kAdmitted ? std::optional(source) : std::nullopt);
    session->Start();
  }
  DoAccept();
}

void Server::Impl::BeginShutdown() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) return;
    stopping = true;
    stopping_seen.store(true, std::memory_order_release);
    for (auto& [p, e] : sessions) {
      if (auto s = e.session.lock()) live.push_back(std::move(s));
    }
  }
  net::post(acceptor.get_executor(), [this, empty = live.empty()] {
    error_code ignored;
    acceptor.close(ignored);
    if (empty) return;
    drain_timer.expires_after(options.limits.drain_timeout);
    drain_timer.async_wait([this](error_code ec) {
      if (ec) return;  // every connection finished in time
      // Past the drain timeout: stop whatever is left.
      StopContexts();
    });
  });
  for (auto& s : live) {
    net::post(s->executor(), [s] { s->OnServerStopping(); });
  }
  // Each I/O thread returns once its connections (and, for the first, the acceptor) are done.
  for (auto& g : keep_running) g.reset();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Shutdown();
  Wait();
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options, const Router& router,
                                              Registry& metrics) {
  int cores = std::max(1u, std::thread::hardware_concurrency());
  int io_threads = options.io_threads > 0 ? options.io_threads : cores;
  int handler_threads =
      options.handler_threads > 0 ? options.handler_threads : std::max(8, 4 * cores);
  auto impl = std::make_unique<Impl>(options, router, metrics, io_threads);
  impl->ex_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  IOTPKI_TRY(auto ctx, BuildSslContext(*impl));
  impl->ssl_ctx.emplace(ctx.release());

  error_code ec;
  tcp::resolver resolver(*impl->contexts.front());
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return Fail(Code::kInvalidArgument, "cannot resolve listen address " + options.host,
                ec.message());
  }
  tcp::endpoint endpoint = *endpoints.begin();
  auto& acc = impl->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Fail(Code::kUnavailable, "cannot listen on " + options.host + ":" +
                                        std::to_string(options.port) + ": " + ec.message());
  }
  auto local = acc.local_endpoint(ec);
  impl->address = local.address().to_string();
  impl->port = local.port();

  impl->pool.emplace(handler_threads);
  for (auto& c : impl->contexts) impl->keep_running.push_back(net::make_work_guard(*c));
  impl->DoAccept();
  for (int i = 0; i < io_threads; ++i) {
    impl->threads.emplace_back([raw = impl.get(), ctx = impl->contexts[i].get()] {
      // Exceptions stop at the session; one escaping here would be a bug in the transport.
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (const std::exception& e) {
          log::Error("server.io_thread_failed", {{"detail", e.what()}});
        }
      }
    });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

const std::string& Server::address() const { return impl_->address; }
uint16_t Server::port() const { return impl_->port; }

void Server::Shutdown() { impl_->BeginShutdown(); }

void Server::Wait() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->waited) return;
    impl_->waited = true;
  }
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  if (impl_->pool) impl_->pool->join();
}

}  // namespace iotpki::server
