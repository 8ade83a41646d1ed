// Issuing certificates: the TBSCertificate is built byte by byte with the DER writer, linted as
// a pre-certificate, then signed through a Signer (the builder never sees key bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/names.h"
#include "iotpki/x509/profile.h"

namespace iotpki::x509 {

// What to issue. Which fields matter depends on `kind`:
//   kRoot, kIssuingCa: subject (CN required, O and C optional), path_len;
//   kIDevID, kLDevID:  device (subject and SAN are derived from it; `subject` is ignored);
//   kTlsServer:        subject (CN), dns_names and/or ip_addresses;
//   kOcspResponder:    subject (CN).
//   kCommandSigner:    subject (CN).
// Start from NewTemplate, which fills the serial and the validity from the policy.
struct CertificateTemplate {
  ProfileKind kind = ProfileKind::kIDevID;
  // INTEGER magnitude; NewSerial() makes the 16 octets the policy requires.
  Bytes serial{};
  NameFields subject{};
  DeviceIdentity device{};
  std::vector<std::string> dns_names{};
  std::vector<std::string> ip_addresses{};
  crypto::PublicKey subject_key;
  int64_t not_before = 0;
  int64_t not_after = 0;
  // pathLenConstraint for CA profiles; nullopt = unconstrained (roots by default).
  std::optional<int> path_len;
  // Device profiles only, when not empty: a cRLDistributionPoints extension naming this URL (the
  // issuer's CRL) and an authorityInfoAccess extension naming this OCSP responder.
  std::string crl_url{};
  std::string ocsp_url{};
};

// 16 octets, a positive INTEGER of exactly 16 content octets (RFC 5280's 20-octet limit): the
// issuance time in microseconds since 1970 (7 octets, big-endian) then 9 random octets (72 bits
// from the CSPRNG; the CA/Browser Forum asks for 64). Serials therefore sort by issuance time, so
// the store's indexes keyed by serial grow at their end instead of taking each new certificate
// on a random page (docs/formats.md).
Bytes NewSerial();

// A template for `kind` with a new serial, notBefore = now - policy.backdate and notAfter from
// the profile's default validity (99991231235959Z for IDevID), path_len 0 for issuing CAs.
// The caller fills in the subject, device identity or server names.
CertificateTemplate NewTemplate(ProfileKind kind, const crypto::PublicKey& subject_key, int64_t now,
                                const Policy& policy);

// Builds the pre-certificate: the real TBSCertificate with a placeholder signature of the
// largest size `issuer_key` can produce, parsed back with OpenSSL. `issuer` is null for a
// self-signed root. InvalidArgument when the template cannot be encoded (bad serial characters,
// malformed IP address, ...). Exposed so a CA can dry-run the lints.
Result<Certificate> BuildPrecertificate(const CertificateTemplate& tmpl, const Certificate* issuer,
                                        const crypto::Signer& issuer_key, const Policy& policy);

// Builds, lints (lint.h) and signs. `issuer` is null for a self-signed root, in which case
// `issuer_key` must hold the template's subject key. Errors:
//   InvalidArgument      the template cannot be encoded;
//   FailedPrecondition   a lint failed ("lint e_der_size_budget: certificate is 612 bytes,
//                        budget 400"; every finding is in the detail), or issuer_key does not
//                        belong to the issuer certificate;
//   others               from the signer; Internal if the signature does not verify.
Result<Certificate> Issue(const CertificateTemplate& tmpl, const Certificate* issuer,
                          const crypto::Signer& issuer_key, const Policy& policy);

}  // namespace iotpki::x509
