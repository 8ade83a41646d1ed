// The device agent: onboarding (IDevID -> LDevID) and renewal against an iotpki server, with the
// device's files in a state directory. Depends only on common, crypto, x509 and the HTTPS client:
// no store, no server code, nothing of the CA.
//
// State directory:
//   STATE/factory/        the device's folder from `iotpki mfg provision` (docs/manufacturing.md):
//                         cert.pem (IDevID), chain.pem (manufacturing CA then root),
//                         bootstrap.hex (K_dev, for the JSON API), key.pem (the IDevID key:
//                         PKCS#8 PEM, encrypted under the batch's transport passphrase or plain)
//   STATE/slots/NAME/     each working certificate installed: cert.pem, chain.pem (the
//                         operational CA), key.pem (plain PKCS#8, mode 0600)
//   STATE/active          symlink to the slot in use; replaced by rename(2), so it always names a
//                         complete slot, old or new
//   STATE/previous        symlink to the slot `active` named before (for a rollback)
//   STATE/server          the server URL the device bootstrapped with (renew's default)
//
// The server is verified against the root CA, the self-signed certificate of factory/chain.pem.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/bootstrap_token.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::agent {

struct AgentOptions {
  std::filesystem::path state;
  // "https://HOST:PORT". Renew defaults to STATE/server.
  std::string server_url;
  // Decrypts factory/key.pem when it is encrypted.
  std::string key_passphrase;
  std::chrono::seconds timeout{30};
  // EST enrollments ask for the certificate in C509 (application/cose-c509-cert+cbor, draft-
  // ietf-cose-cbor-encoded-cert), decoded back to the byte-exact X.509 before it is checked and
  // installed: fewer bytes on a constrained link.
  bool c509 = false;
  const Clock* clock = &SystemClock::Instance();
};

enum class BootstrapMode {
  kEst,   // EST simpleenroll, authenticated by the IDevID over TLS
  kJson,  // POST /api/v1/bootstrap with a token, authenticated by the IDevID over TLS
  // The JSON API without a TLS client certificate: the CSR is signed with the IDevID key, which
  // the working certificate then certifies (for devices whose TLS stack cannot present one).
  kJsonWithoutClientCertificate,
};

struct Installed {
  x509::Certificate certificate;
  std::string device_id;
  std::string slot;  // STATE/slots/<slot>
  bool new_key = true;
};

// New key (except kJsonWithoutClientCertificate), CSR, request, checks on the answer (key,
// identity, chain to the root), atomic install as the active slot.
Result<Installed> Bootstrap(const AgentOptions& options, BootstrapMode mode);

// EST serverkeygen (RFC 7030 4.4), for a device without a good random source: the server makes
// the key and returns it sealed to the IDevID (CMS EnvelopedData, ECDH with the IDevID key); the
// agent opens it with the IDevID key, checks that it is the key of the returned certificate (and
// the usual identity and chain checks), and installs both atomically as the active slot.
Result<Installed> BootstrapServerKeygen(const AgentOptions& options);

// EST simplereenroll with the active working certificate; `rekey` makes a new key, otherwise
// the current key is kept (renew).
Result<Installed> Renew(const AgentOptions& options, bool rekey);

// What went wrong, by class. Errors map onto these by code (see Classify); local failures never
// carry the codes reserved for the three remote classes.
enum class Outcome {
  kOk = 0,
  kLocal = 1,        // state directory, files, keys
  kUsage = 2,        // bad command line
  kUnreachable = 3,  // Unavailable: cannot connect, timeout, connection dropped
  kTls = 4,          // Unauthenticated: TLS handshake failed
  kRefused = 5,      // PermissionDenied: the server answered with an error (its reason shown)
  kBadAnswer = 6,    // DataLoss: the server's answer is malformed or not what was asked for
};
Outcome Classify(const Error& error);
std::string_view OutcomeName(Outcome outcome);  // "server unreachable", "TLS failure", ...

// hex(HMAC-SHA256(K_dev, device_id || "." || decimal timestamp)), as the server checks it: the
// server's own function (crypto/bootstrap_token.h).
using crypto::BootstrapToken;

}  // namespace iotpki::agent
