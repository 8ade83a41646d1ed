// The keys and certificates `iotpki serve` makes for itself and keeps in the CA directory, and
// when each is renewed. Defined in server_cert.cc.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include "iotpki/ca/authority.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::ca {

// True while `now` is in the first half of `cert`'s validity. The server's own short-lived
// certificates (OCSP responders, the command certificate) are renewed once this is false, so a
// renewal that fails is retried for half a lifetime before anything expires.
bool InFirstHalfOfLife(const x509::Certificate& cert, int64_t now);

// The rotation-command certificate (profile command-signer, CN iotpki-server) and its key.
struct CommandIdentity {
  x509::Certificate certificate;
  // Shared: a renewal hands the new key to the notifier while a command being signed with the
  // old one finishes.
  std::shared_ptr<crypto::PrivateKey> key;
  std::filesystem::path cert_file;  // DIR/certs/command.pem: the certificate, then the CA
  std::filesystem::path key_file;   // DIR/keys/command.key: encrypted, 0600
  bool issued = false;              // made by this call rather than read from DIR
};

// The command identity kept in `authority`'s DIR: reused while it is from the operational CA, in
// the first half of its life (by the authority's clock) and its key matches; otherwise a new key
// and certificate are made, recorded in the store (with an audit row), and saved, the files
// replaced atomically. `iotpki serve` calls it at start and then once a minute, so a server that
// runs for months renews it without a restart. FailedPrecondition if the operational CA is
// locked.
Result<CommandIdentity> LoadOrIssueCommandIdentity(Authority& authority,
                                                   std::string_view passphrase);

}  // namespace iotpki::ca
