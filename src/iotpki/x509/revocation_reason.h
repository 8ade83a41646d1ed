// RFC 5280 CRLReason: the one revocation-reason type of iotpki. The CRL codec and the store (whose
// text forms are these names) share it.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "iotpki/common/error.h"

namespace iotpki::x509 {

// RFC 5280 5.3.1 CRLReason values; the numbers are the CRL codes (7 is unassigned).
enum class RevocationReason {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kCaCompromise = 2,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
  kCertificateHold = 6,
  kRemoveFromCrl = 8,
  kPrivilegeWithdrawn = 9,
  kAaCompromise = 10,
};

// The ASN.1 identifiers of RFC 5280 ("keyCompromise", "cACompromise", ...). They are stored in
// databases and printed by the CLI, so they never change.
std::string_view RevocationReasonName(RevocationReason reason);
// InvalidArgument "unknown revocation reason 'X'" for anything but one of those names, exactly.
Result<RevocationReason> ParseRevocationReason(std::string_view name);
// The reason with CRL code `code`, or none for an unassigned code.
std::optional<RevocationReason> RevocationReasonFromCode(int64_t code);

}  // namespace iotpki::x509
