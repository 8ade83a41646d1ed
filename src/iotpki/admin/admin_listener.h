// `iotpki serve --admin-listen HOST:PORT`: the dashboard's own TLS listener, apart from the device
// port. Its handshake asks every client for a certificate and trusts only the admin CA
// (DIR/certs/admin-ca.pem), so a device certificate never authenticates here; AdminApi answers
// 403 to anything but an operator certificate.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "iotpki/admin/admin_api.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/server/server.h"

namespace iotpki::admin {

struct AdminListenerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 9443;  // 0: any free port
  // The TLS server certificate chain and key (serve's own; its names must cover `host`).
  std::vector<Bytes> certificate_chain;
  const crypto::Signer* key = nullptr;  // must outlive the listener
  AdminOptions api;                     // dir is where the admin CA is read from
};

class AdminListener {
 public:
  // FailedPrecondition if DIR has no admin CA (saying how to make one); else as Server::Start.
  static Result<std::unique_ptr<AdminListener>> Start(AdminListenerOptions options);
  ~AdminListener();  // Shutdown() and Wait()

  const std::string& address() const;
  uint16_t port() const;
  void Shutdown();
  void Wait();

 private:
  AdminListener() = default;
  server::Router router_;
  server::Registry metrics_;
  std::unique_ptr<AdminApi> api_;
  std::unique_ptr<server::Server> server_;
};

}  // namespace iotpki::admin
