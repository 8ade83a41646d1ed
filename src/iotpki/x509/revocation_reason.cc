#include "iotpki/x509/revocation_reason.h"

#include <array>
#include <string>
#include <utility>

namespace iotpki::x509 {
namespace {

constexpr std::array<std::pair<RevocationReason, std::string_view>, 10> kReasons{{
    {RevocationReason::kUnspecified, "unspecified"},
    {RevocationReason::kKeyCompromise, "keyCompromise"},
    {RevocationReason::kCaCompromise, "cACompromise"},
    {RevocationReason::kAffiliationChanged, "affiliationChanged"},
    {RevocationReason::kSuperseded, "superseded"},
    {RevocationReason::kCessationOfOperation, "cessationOfOperation"},
    {RevocationReason::kCertificateHold, "certificateHold"},
    {RevocationReason::kRemoveFromCrl, "removeFromCRL"},
    {RevocationReason::kPrivilegeWithdrawn, "privilegeWithdrawn"},
    {RevocationReason::kAaCompromise, "aACompromise"},
}};

}  // namespace

std::string_view RevocationReasonName(RevocationReason reason) {
  for (const auto& [value, name] : kReasons) {
    if (value == reason) return name;
  }
  return "unknown";
}

Result<RevocationReason> ParseRevocationReason(std::string_view name) {
  for (const auto& [value, text] : kReasons) {
    if (text == name) return value;
  }
  return Fail(Code::kInvalidArgument, "unknown revocation reason '" + std::string(name) + "'");
}

std::optional<RevocationReason> RevocationReasonFromCode(int64_t code) {
  for (const auto& [value, name] : kReasons) {
    if (static_cast<int64_t>(value) == code) return value;
  }
  return std::nullopt;
}

}  // namespace iotpki::x509
