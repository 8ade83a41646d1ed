// Certificate revocation lists (RFC 5280 section 5) as immutable values, and building them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/revocation_reason.h"

typedef struct X509_crl_st X509_CRL;

namespace iotpki::x509 {

struct RevokedEntry {
  Bytes serial;  // magnitude, as Certificate::serial()
  int64_t revoked_at = 0;
  RevocationReason reason = RevocationReason::kUnspecified;

  bool operator==(const RevokedEntry&) const = default;
};

// A parsed CRL. Cheap to copy; thread-safe. Parsing does not check the signature.
class Crl {
 public:
  // InvalidArgument "not an X.509 CRL" for anything but exactly one DER CRL.
  static Result<Crl> FromDer(ByteView der);
  static Result<Crl> FromPem(std::string_view pem);  // "X509 CRL" block

  const Bytes& ToDer() const;
  std::string ToPem() const;

  std::string issuer() const;
  ByteView issuer_der() const;
  int64_t this_update() const;
  std::optional<int64_t> next_update() const;
  // cRLNumber, if present and below 2^63.
  std::optional<int64_t> crl_number() const;
  const Bytes& authority_key_id() const;
  // In CRL order.
  const std::vector<RevokedEntry>& revoked() const;
  // `serial` as a magnitude; leading zero bytes are ignored. O(log n).
  bool IsRevoked(ByteView serial) const;

  bool IsSignedBy(const crypto::PublicKey& key) const;

  // Borrowed OpenSSL handle for the library's own use; must not be modified.
  X509_CRL* handle() const;

  // Opaque; defined in crl.cc.
  struct Impl;

 private:
  explicit Crl(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// What a CRL's DER holds besides its revokedCertificates list, at most: version, algorithm
// identifiers, an issuer name of up to 1 KiB, the two times, the extensions (a partition's
// issuingDistributionPoint URI included) and the signature.
inline constexpr int64_t kCrlEnvelopeBytes = 2048;

// The exact DER size of the revokedCertificates list BuildCrl encodes for `entries` (0 when
// there are none): the size check of the lint, computed without encoding anything.
int64_t RevokedListDerSize(std::span<const RevokedEntry> entries);

// The lint a CRL's contents pass before it is signed: entries in strictly ascending serial order
// (by value; so no serial twice), each serial a positive INTEGER of at most 20 octets (RFC 5280
// 4.1.2.2), no revocation after `this_update`, only reasons RFC 5280 defines,
// thisUpdate < nextUpdate, and, when `max_bytes` is above 0, a size within that budget
// (RevokedListDerSize + kCrlEnvelopeBytes, an upper bound of the signed CRL's size): a CRL no
// relying party or broker can load is refused rather than published. FailedPrecondition naming
// the first finding.
Result<void> LintCrlEntries(std::span<const RevokedEntry> entries, int64_t this_update,
                            int64_t next_update, int64_t max_bytes = 0);

// Builds a v2 CRL for `issuer`, signed with `issuer_key`, with the authorityKeyIdentifier and
// cRLNumber extensions and a reasonCode entry extension for every reason but kUnspecified
// (RFC 5280 5.3.1: absent rather than unspecified). Entries keep their order; a serial listed
// twice is InvalidArgument. FailedPrecondition if `issuer_key` is not the issuer's key or the
// issuer may not sign CRLs (not a CA, or keyUsage without cRLSign).
//
// `distribution_point`, if not empty, makes it a partition CRL: a critical
// issuingDistributionPoint (RFC 5280 5.2.5) whose distributionPoint is that one fullName URI. It
// covers only the certificates whose cRLDistributionPoints name the same URI (OpenSSL and GnuTLS
// match the two), and must then list every revoked certificate among them.
Result<Crl> BuildCrl(const Certificate& issuer, const crypto::Signer& issuer_key,
                     std::span<const RevokedEntry> entries, int64_t this_update,
                     int64_t next_update, int64_t crl_number,
                     std::string_view distribution_point = {});

// The issuance month ("2026-12", UTC) of a certificate this CA signed, read from its serial: the
// first 7 octets are the issuance time in microseconds (NewSerial, from the system clock). Empty
// for a serial of another form (not 16 octets with the top bit clear, or a time before 2000):
// an imported one.
std::string IssuanceMonth(ByteView serial);
// The month a serial made now carries (IssuanceMonth of a NewSerial()).
std::string CurrentIssuanceMonth();

}  // namespace iotpki::x509
