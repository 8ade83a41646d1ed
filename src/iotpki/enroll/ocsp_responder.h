// The OCSP responder (RFC 6960) of `iotpki serve`: POST /ocsp (application/ocsp-request) and
// GET /ocsp/<base64 request>, answering good, revoked (time and reason) or unknown for each
// CertID from the store, signed by the delegated responder certificate of the CA that issued the
// certificates asked about.
//
// Answers for good certificates are cached (signed once, served until half their validity has
// passed), but the store is asked for the status at every request, so a revocation committed by
// any process changes the next answer at once. Answers with a nonce are never cached.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/server/http.h"
#include "iotpki/server/metrics.h"
#include "iotpki/server/router.h"
#include "iotpki/store/store.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/ocsp.h"

namespace iotpki::enroll {

struct OcspOptions {
  // nextUpdate - thisUpdate of every answer.
  int64_t validity = 3600;
  // Cached good answers kept at most; beyond it the cache starts over.
  size_t max_cached = 100000;
  // Answer on the connection's I/O thread rather than the handler pool (server::RouteOptions):
  // right when the store's status lookup is a local read (SQLite), not a network round trip.
  bool on_io_thread = true;
};

// Thread-safe.
class OcspResponder {
 public:
  // `store`, `clock` and `metrics` must outlive the responder.
  OcspResponder(store::Store& store, const Clock& clock, server::Registry& metrics,
                OcspOptions options = {});

  // Answers for certificates `issuer` (store name `issuer_name`) issued, signed by `responder`
  // with `key`. Called again to rotate the responder certificate; answers already cached for the
  // issuer are dropped.
  void SetIssuer(std::string issuer_name, const x509::Certificate& issuer,
                 const x509::Certificate& responder, std::shared_ptr<const crypto::Signer> key);

  // The DER OCSPResponse for a DER OCSPRequest, and whether it may be cached by HTTP caches
  // for `max_age` seconds (a single good or revoked answer without nonce).
  struct Answer {
    Bytes der;
    int64_t max_age = 0;  // 0: not cacheable
    std::string log_reason;
  };
  Answer Respond(ByteView request_der);

  void Mount(server::Router& router);

 private:
  struct Issuer {
    std::string name;
    x509::Certificate certificate;
    x509::Certificate responder;
    std::shared_ptr<const crypto::Signer> key;
    // Null when the key has no OpenSSL handle; answers are then signed through Signer::Sign.
    std::shared_ptr<const x509::OcspSigningContext> signing;
    // The answers' fixed bytes; none (every answer an internalError, logged with `refusal`) if
    // the key does not match the responder certificate or cannot sign here.
    std::optional<x509::OcspResponseTemplate> response;
    std::string refusal;
    // "sha1" -> hashes, ... for matching CertIDs.
    std::map<std::string, x509::OcspIssuerHashes, std::less<>> hashes;
  };
  struct Cached {
    Bytes der;
    int64_t this_update = 0;
  };

  std::shared_ptr<const Issuer> IssuerOf(const x509::OcspCertId& id) const;
  // iotpki_ocsp_answers_total{status}: `status` is one of kStatuses (ocsp_responder.cc).
  void Count(std::string_view status);
  server::Response Render(const server::Request& req, ByteView der);

  store::Store& store_;
  const Clock& clock_;
  server::Registry& metrics_;
  OcspOptions options_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const Issuer>> issuers_;
  std::map<Bytes, Cached, BytesLess> cache_;  // by the CertID's DER (BytesLess: common/bytes.h)
  // Every status's series, looked up in the registry once (so all are exported from the start):
  // an answer then costs an atomic increment, not the registry's lock and label map.
  std::vector<std::pair<std::string_view, server::Counter*>> counters_;
};

}  // namespace iotpki::enroll
