// The HTTPS transport: Boost.Beast/Asio over OpenSSL, mutual TLS, routing, limits, metrics and
// graceful shutdown. It knows nothing of EST or certificates policy: handlers (enroll/) are
// mounted on a Router, and the client's certificate reaches them as a ClientCertificate.
//
// Threads: `io_threads` run TLS handshakes and HTTP parsing, each for the connections given to it
// (round robin, at accept) for their whole life; handlers run on a separate pool of
// `handler_threads`, because they may block (a group commit waits for fsync), and a blocked
// handler must not stall handshakes. Exceptions stop at each session: a handler that throws
// yields a 500 for its request only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/server/metrics.h"
#include "iotpki/server/router.h"

namespace iotpki::server {

struct Limits {
  size_t max_body_bytes = 64 << 10;   // larger bodies: 413
  size_t max_header_bytes = 8 << 10;  // larger request line + headers: 431
  // Beyond: 503 (after the handshake) for a few, then plain close. At the limit, a new
  // connection first takes the place of the kept-alive connection idle the longest.
  size_t max_connections = 1024;
  // The same, per client address (an IPv6 client's /64), so that one client cannot hold every
  // slot. A NAT of many devices enrolling at once stays far below it: an enrollment holds its
  // connection for a few tens of milliseconds.
  size_t max_connections_per_source = 256;
  std::chrono::seconds handshake_timeout{10};
  // From the first byte of a request to its last (slowloris): 408.
  std::chrono::seconds request_timeout{10};
  // A keep-alive connection waiting for its next request is closed after this, silently.
  std::chrono::seconds idle_timeout{30};
  // Graceful shutdown waits this long for in-flight requests before closing everything.
  std::chrono::seconds drain_timeout{30};
};

struct ServerOptions {
  std::string host = "127.0.0.1";  // an address to bind, or a name resolved at start
  uint16_t port = 8443;            // 0: any free port (see Server::port)
  int io_threads = 0;              // 0: one per core
  int handler_threads = 0;         // 0: max(8, 4 per core)
  Limits limits;

  // The server's certificate chain (leaf first, DER) and its key. OpenSSL signs the handshake
  // itself, so the key must offer crypto::OpenSslKey (serve generates it in memory; the CA keys
  // that certify it may live in a token).
  std::vector<Bytes> certificate_chain;
  const crypto::Signer* key = nullptr;  // must outlive the server

  // Client authentication: a certificate is requested on every connection but never required
  // by the handshake. `client_issuers` are the CAs whose certificates clients present (their
  // index identifies them in ClientCertificate). They are the trust anchors themselves (partial
  // chains): the CA directory vouches for them, and a handshake then verifies one signature on
  // the client's chain instead of two.
  std::vector<Bytes> client_issuers;

  // Validity periods of client certificates (and of the CA that issued them) are judged by this
  // clock: in the handshake, and again at every request, so that a kept-alive connection stops
  // being authenticated when its certificate expires. Null: the system clock. Must outlive the
  // server.
  const Clock* clock = nullptr;
};

class Server {
 public:
  // Binds, listens and starts the threads. `router` and `metrics` must outlive the server.
  // Errors: InvalidArgument (bad options, unusable certificate or key), Unavailable (cannot
  // bind: address in use, permission).
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options, const Router& router,
                                               Registry& metrics);
  ~Server();  // Shutdown() and Wait()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address and port (the real port when 0 was asked for).
  const std::string& address() const;
  uint16_t port() const;

  // Begins a graceful shutdown: stops accepting, closes idle connections, lets requests in
  // flight finish (their responses carry "Connection: close"). Thread-safe, idempotent; returns
  // at once.
  void Shutdown();
  // Blocks until every connection is closed (or the drain timeout passed) and every thread has
  // stopped.
  void Wait();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotpki::server
