// Lint before sign: every certificate is checked against its profile and the policy before the
// issuer signs it (as Let's Encrypt's Boulder does with zlint). Each rule is small, named, and
// has its own tests; rules run in the fixed order of LintNames().
//
// The rules read the pre-certificate through Certificate, i.e. through OpenSSL's parser, not
// through the builder's own data: a builder bug cannot vouch for itself.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/x509/builder.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/profile.h"

namespace iotpki::x509 {

struct LintFinding {
  std::string lint;     // rule name, e.g. "e_der_size_budget"
  std::string message;  // one line, safe to show to the requester

  bool operator==(const LintFinding&) const = default;
};

// Rule names in the order they run:
//   e_serial_length_and_sign      serial is the template's, positive, exactly 16 octets
//   e_signature_algorithm         ecdsa-with-SHA256 (P-256 issuer) / SHA384 (P-384 issuer)
//   e_issuer_matches              issuer name is byte-identical to the issuer's subject; the
//                                 issuer is a CA allowed to sign certificates
//   e_key_algorithm_allowed       subject key type and size allowed for the profile
//   e_validity_within_policy      notBefore < notAfter, duration within the profile maximum,
//                                 IDevID notAfter 99991231235959Z
//   e_validity_within_issuer      notAfter not beyond the issuer's (not for IDevID, which by
//                                 802.1AR outlives its CA)
//   e_extensions_well_formed      v3, every extension decodes, none appears twice
//   e_required_extensions         exactly the profile's extensions, no others
//   e_extension_criticality       basicConstraints and keyUsage critical, the rest not
//   e_ca_basic_constraints        CA:TRUE and pathLen for CA profiles (allowed by the issuer's
//                                 pathLen), no CA:TRUE otherwise
//   e_key_usage                   exactly the profile's keyUsage bits
//   e_extended_key_usage          exactly clientAuth (LDevID) / serverAuth (TLS server)
//   e_key_identifiers             SKI = SHA-1 of the subject key; AKI = the issuer's SKI
//   e_san_well_formed             device: one URN and one hardwareModuleName, nothing else;
//                                 server: valid DNS names / IPs; CAs: no SAN
//   e_identity_matches_request    subject and SAN carry exactly the template's identity with
//                                 the right string types
//   e_der_size_budget             DER size within the profile's budget
std::span<const std::string_view> LintNames();

// Runs every rule and returns all findings (empty = clean), in rule order. `precert` is the
// certificate to be signed (its signature is not checked); `issuer` is null for a self-signed
// root. Never fails.
std::vector<LintFinding> Lint(const Certificate& precert, const CertificateTemplate& tmpl,
                              const Policy& policy, const Certificate* issuer);

}  // namespace iotpki::x509
