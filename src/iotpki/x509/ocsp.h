// OCSP (RFC 6960) for the responder of `iotpki serve`: requests parsed and bounded, responses
// built and signed by a delegated responder. Status decisions are the caller's; this layer only
// speaks the format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/crl.h"

namespace iotpki::x509 {

// OCSPResponseStatus (RFC 6960 4.2.1).
enum class OcspResponseStatus {
  kSuccessful = 0,
  kMalformedRequest = 1,
  kInternalError = 2,
  kTryLater = 3,
  kSigRequired = 5,
  kUnauthorized = 6,
};

// CertIDs one request may ask about; more is a malformed request. Relying parties ask about a
// chain at most; the cap bounds the signing work one request can cause.
inline constexpr size_t kMaxOcspCertIds = 64;
// RFC 8954 2.1: a nonce of 1 to 32 octets.
inline constexpr size_t kMaxOcspNonceBytes = 32;

struct OcspCertId {
  std::string hash;  // "sha1", "sha256", "sha384" or "sha512"
  Bytes issuer_name_hash;
  Bytes issuer_key_hash;
  Bytes serial;  // magnitude, as Certificate::serial()
  Bytes der;     // the CertID as the client sent it, echoed in its answer
};

struct OcspRequest {
  std::vector<OcspCertId> cert_ids;  // 1..kMaxOcspCertIds, in request order
  std::optional<Bytes> nonce;        // the nonce's octets (RFC 8954), if asked for
};

// Parses a DER OCSPRequest. InvalidArgument, with a message naming the fault, for anything else:
// not exactly one DER OCSPRequest, no CertID or more than kMaxOcspCertIds, a hash algorithm other
// than SHA-1 or SHA-2, hashes of the wrong length, a negative serial, a nonce that is not 1 to 32
// octets or given twice. A request signature is not checked (requests need none here).
Result<OcspRequest> ParseOcspRequest(ByteView der);
// The same through OpenSSL's decoder (d2i_OCSP_REQUEST and an i2d check that it was DER) alone.
// ParseOcspRequest reads the common shapes with the DER reader and leaves the rest to this; tests
// and the fuzzer check that both agree.
Result<OcspRequest> ParseOcspRequestWithOpenSsl(ByteView der);

// The (name hash, key hash) of `issuer` for a CertID hash algorithm, as RFC 6960 4.1.1 defines
// them; nullopt for an algorithm ParseOcspRequest does not accept.
struct OcspIssuerHashes {
  Bytes name_hash;
  Bytes key_hash;
};
std::optional<OcspIssuerHashes> OcspIssuerHashesOf(const Certificate& issuer,
                                                   std::string_view hash);

enum class OcspCertStatus { kGood, kRevoked, kUnknown };

struct OcspSingleAnswer {
  const OcspCertId* id = nullptr;  // borrowed from the request
  OcspCertStatus status = OcspCertStatus::kUnknown;
  int64_t revoked_at = 0;  // kRevoked only
  RevocationReason reason = RevocationReason::kUnspecified;
  int64_t this_update = 0;
  int64_t next_update = 0;
};

// Signing state kept for one responder key, so that an answer does not pay OpenSSL 3.0's
// per-call algorithm fetches (which take global read-write locks) and the digest and signature
// set-up: EVP_DigestSignInit runs once here, and each answer signs with a copy. Immutable after
// Make, so one context serves every thread.
class OcspSigningContext {
 public:
  // FailedPrecondition if the key has no OpenSSL handle (a token key): such answers are signed
  // without a prepared context.
  static Result<std::shared_ptr<const OcspSigningContext>> Make(const crypto::Signer& key);
  ~OcspSigningContext();
  OcspSigningContext(const OcspSigningContext&) = delete;
  OcspSigningContext& operator=(const OcspSigningContext&) = delete;

  struct Impl;  // defined in ocsp.cc
  const Impl& impl() const { return *impl_; }

 private:
  explicit OcspSigningContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A successful OCSPResponse (DER) with a BasicOCSPResponse signed by `responder_key`, whose
// certificate `responder` is included and named by key hash; the nonce, if any, echoed.
// producedAt is the system clock's. InvalidArgument if an answer has no CertID. `prepared`, if
// given, is used while the key's OpenSSL handle is the one it was made with (else ignored).
Result<Bytes> BuildOcspResponse(const Certificate& responder, const crypto::Signer& responder_key,
                                std::span<const OcspSingleAnswer> answers,
                                const std::optional<Bytes>& nonce,
                                const OcspSigningContext* prepared = nullptr);

// The bytes of a BasicOCSPResponse that are the same in every answer of one responder, encoded
// once: the ResponderID (byKey), the signatureAlgorithm and the `certs` field carrying the
// responder's certificate. Immutable after Make; one template serves every thread.
class OcspResponseTemplate {
 public:
  // FailedPrecondition if `key` is not the key of `responder`; Unimplemented for a key type
  // that cannot sign certificates here (x509 builder: ECDSA or Ed25519).
  static Result<OcspResponseTemplate> Make(const Certificate& responder, const crypto::Signer& key);

  // What BuildOcspResponse makes from the same arguments (the same bytes but for the signature,
  // which ECDSA draws anew), written directly as DER: the ResponseData from the template and the
  // answers, signed by `key` (through `prepared` while it was made for `key`'s OpenSSL handle,
  // else Signer::Sign, so a token key works too), and producedAt `produced_at` rather than the
  // system clock's. `key` must be the key Make was given. InvalidArgument if an answer has no
  // CertID, a nonce is not 1 to kMaxOcspNonceBytes octets, or there are more than
  // kMaxOcspCertIds answers (ParseOcspRequest's bounds).
  Result<Bytes> Write(const crypto::Signer& key, std::span<const OcspSingleAnswer> answers,
                      const std::optional<Bytes>& nonce, int64_t produced_at,
                      const OcspSigningContext* prepared = nullptr) const;

 private:
  OcspResponseTemplate() = default;
  Bytes responder_id_;  // [2] EXPLICIT OCTET STRING: SHA-1 of the responder's public key
  Bytes algorithm_;     // AlgorithmIdentifier of the key's signatures
  Bytes certs_;         // [0] EXPLICIT SEQUENCE OF Certificate: the responder's
};

// An unsuccessful OCSPResponse (no responseBytes; RFC 6960 4.2.1): malformedRequest,
// internalError, tryLater or unauthorized.
Bytes OcspErrorResponse(OcspResponseStatus status);

}  // namespace iotpki::x509
