#include "iotpki/admin/admin_listener.h"

#include "iotpki/admin/admin_ca.h"

namespace iotpki::admin {

Result<std::unique_ptr<AdminListener>> AdminListener::Start(AdminListenerOptions options) {
  IOTPKI_TRY(x509::Certificate admin_ca, LoadAdminCa(options.api.dir));
  std::unique_ptr<AdminListener> l(new AdminListener());
  l->api_ = std::make_unique<AdminApi>(options.api);
  l->api_->Mount(l->router_, /*issuer_index=*/0);
  server::ServerOptions so;
  so.host = options.host;
  so.port = options.port;
  // A few operators, not a fleet: small pools, and the default limits.
  so.io_threads = 1;
  so.handler_threads = 2;
  so.certificate_chain = options.certificate_chain;
  so.key = options.key;
  so.client_issuers = {admin_ca.ToDer()};
  so.clock = options.api.clock;
  IOTPKI_TRY(l->server_, server::Server::Start(so, l->router_, l->metrics_));
  l->api_->Start();
  return l;
}

AdminListener::~AdminListener() {
  Shutdown();
  Wait();
}

const std::string& AdminListener::address() const { return server_->address(); }
uint16_t AdminListener::port() const { return server_->port(); }

void AdminListener::Shutdown() {
  if (api_) api_->Stop();
  if (server_) server_->Shutdown();
}

void AdminListener::Wait() {
  if (server_) server_->Wait();
}

}  // namespace iotpki::admin
