// Chain verification. The outcome is a verdict value, never an Error: "revoked" or "expired" is
// an answer, not a failure to answer (STYLE.md, rule 5).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "iotpki/x509/certificate.h"
#include "iotpki/x509/crl.h"

namespace iotpki::x509 {

enum class Verdict {
  kValid,
  kExpired,
  kNotYetValid,
  kBadSignature,
  kUnknownIssuer,
  kRevoked,
  // CRLs were given but none covers the leaf's issuer, or the one that does is expired, not yet
  // valid or badly signed: revocation status cannot be established, so the leaf is not valid.
  kRevocationUnknown,
  // Anything else that makes the chain unacceptable: an issuer that is not a CA or lacks
  // keyCertSign, pathLen exceeded, a malformed or unknown critical extension, ...
  kInvalidChain,
};

// "valid", "expired", "not_yet_valid", "bad_signature", "unknown_issuer", "revoked",
// "revocation_unknown", "invalid_chain".
std::string_view VerdictName(Verdict verdict);

// Verifies `leaf` up to one of `roots` at `at_time` (Unix seconds) with OpenSSL's verifier in
// X.509 strict mode. `intermediates` are untrusted candidates for chain building. Every
// certificate in `roots` is a trust anchor, self-signed or not (so an issuing CA can be trusted
// on its own, as the bootstrap endpoint trusts the manufacturing CA). When `crls` is non-empty
// the leaf's revocation is checked against them (the leaf only: CRLs are per issuing CA).
// Thread-safe; each call builds its own store.
Verdict VerifyChain(const Certificate& leaf, std::span<const Certificate> intermediates,
                    std::span<const Certificate> roots, int64_t at_time,
                    std::span<const Crl> crls = {});

}  // namespace iotpki::x509
