#include "iotpki/x509/profile.h"

#include <algorithm>
#include <cctype>

#include "iotpki/common/der.h"
#include "iotpki/common/strings.h"
#include "iotpki/crypto/primitives.h"

namespace iotpki::x509 {
namespace {

constexpr ProfileKind kAllProfiles[] = {ProfileKind::kRoot,         ProfileKind::kIssuingCa,
                                        ProfileKind::kIDevID,       ProfileKind::kLDevID,
                                        ProfileKind::kTlsServer,    ProfileKind::kOcspResponder,
                                        ProfileKind::kCommandSigner};

// Counts UTF-8 characters; -1 if `s` is not well-formed UTF-8 or contains control characters.
int Utf8Length(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return -1;
  }
  auto n = iotpki::Utf8Length(s);
  return n ? static_cast<int>(*n) : -1;
}

}  // namespace

std::string_view ProfileName(ProfileKind kind) {
  switch (kind) {
    case ProfileKind::kRoot:
      return "root";
    case ProfileKind::kIssuingCa:
      return "issuing-ca";
    case ProfileKind::kIDevID:
      return "idevid";
    case ProfileKind::kLDevID:
      return "ldevid";
    case ProfileKind::kTlsServer:
      return "tls-server";
    case ProfileKind::kOcspResponder:
      return "ocsp-responder";
    case ProfileKind::kCommandSigner:
      return "command-signer";
  }
  return "unknown";
}

Result<ProfileKind> ParseProfile(std::string_view name) {
  std::string lower = ToLowerAscii(name);
  for (ProfileKind kind : kAllProfiles) {
    if (lower == ProfileName(kind)) return kind;
  }
  return Fail(Code::kInvalidArgument,
              "unknown profile (expected root, issuing-ca, idevid, ldevid, tls-server, "
              "ocsp-responder or command-signer)");
}

bool IsCaProfile(ProfileKind kind) {
  return kind == ProfileKind::kRoot || kind == ProfileKind::kIssuingCa;
}

bool IsDeviceProfile(ProfileKind kind) {
  return kind == ProfileKind::kIDevID || kind == ProfileKind::kLDevID;
}

const ProfilePolicy& Policy::For(ProfileKind kind) const {
  switch (kind) {
    case ProfileKind::kRoot:
      return root;
    case ProfileKind::kIssuingCa:
      return issuing_ca;
    case ProfileKind::kIDevID:
      return idevid;
    case ProfileKind::kLDevID:
      return ldevid;
    case ProfileKind::kTlsServer:
      return tls_server;
    case ProfileKind::kOcspResponder:
      return ocsp_responder;
    case ProfileKind::kCommandSigner:
      return command_signer;
  }
  return idevid;
}

ProfilePolicy& Policy::For(ProfileKind kind) {
  return const_cast<ProfilePolicy&>(static_cast<const Policy&>(*this).For(kind));
}

Result<void> CheckKeyAllowed(const Policy& policy, ProfileKind kind, const crypto::PublicKey& key) {
  const auto& allowed = policy.For(kind).key_types;
  bool listed = std::find(allowed.begin(), allowed.end(), key.type()) != allowed.end();
  if (listed && key.type() == crypto::KeyType::kRsa && key.bits() < policy.min_rsa_bits) {
    listed = false;
  }
  if (listed) return {};
  std::string names;
  for (size_t i = 0; i < allowed.size(); ++i) {
    if (i > 0) names += i + 1 == allowed.size() ? " or " : ", ";
    names += crypto::KeyTypeName(allowed[i],
                                 allowed[i] == crypto::KeyType::kRsa ? policy.min_rsa_bits : 0);
  }
  return Fail(Code::kInvalidArgument, std::string(ProfileName(kind)) + " certificates need a " +
                                          names + " key, not " + key.Describe());
}

std::string ComputeDeviceId(std::string_view serial, ByteView hardware_fingerprint) {
  Bytes input(serial.begin(), serial.end());
  input.push_back(0x00);
  input.insert(input.end(), hardware_fingerprint.begin(), hardware_fingerprint.end());
  return ToHex(crypto::Sha256(input));
}

Result<void> ValidateSerial(std::string_view serial) {
  if (serial.empty() || serial.size() > 64) {
    return Fail(Code::kInvalidArgument, "serial must be 1 to 64 characters long");
  }
  for (size_t i = 0; i < serial.size(); ++i) {
    char c = serial[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-';
    if (!ok) {
      return Fail(Code::kInvalidArgument, "serial with invalid characters (position " +
                                              std::to_string(i + 1) +
                                              "): only A-Z, a-z, 0-9, '.' and '-' are allowed");
    }
  }
  return {};
}

Result<void> ValidateDeviceId(std::string_view device_id) {
  bool ok = device_id.size() == 64 && std::all_of(device_id.begin(), device_id.end(), [](char c) {
              return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            });
  if (!ok) return Fail(Code::kInvalidArgument, "device id must be 64 lowercase hex characters");
  return {};
}

Result<void> ValidateOrganization(std::string_view organization) {
  int n = Utf8Length(organization);
  if (n < 1 || n > 64) {
    return Fail(Code::kInvalidArgument,
                "organization must be 1 to 64 characters of UTF-8 without control characters");
  }
  return {};
}

Result<void> ValidateCommonName(std::string_view common_name) {
  int n = Utf8Length(common_name);
  if (n < 1 || n > 64) {
    return Fail(Code::kInvalidArgument,
                "common name must be 1 to 64 characters of UTF-8 without control characters");
  }
  return {};
}

Result<void> ValidateDeviceIdentity(const DeviceIdentity& identity) {
  IOTPKI_CHECK(ValidateDeviceId(identity.device_id));
  IOTPKI_CHECK(ValidateSerial(identity.serial));
  IOTPKI_CHECK(ValidateOrganization(identity.organization));
  if (der::OidContent(identity.hw_type_oid).empty()) {
    return Fail(Code::kInvalidArgument, "hardware type must be a dotted OID");
  }
  return {};
}

std::string DeviceUrn(uint32_t enterprise_number, std::string_view serial) {
  return "urn:dev:os:" + std::to_string(enterprise_number) + "-" + std::string(serial);
}

NameFields DeviceSubject(const DeviceIdentity& identity) {
  return NameFields{.organization = identity.organization,
                    .common_name = identity.device_id,
                    .serial_number = identity.serial};
}

SubjectAltNames DeviceSubjectAltNames(const DeviceIdentity& identity, uint32_t enterprise_number) {
  SubjectAltNames san;
  san.uris.push_back(DeviceUrn(enterprise_number, identity.serial));
  san.hardware_module_names.push_back(
      {identity.hw_type_oid, Bytes(identity.serial.begin(), identity.serial.end())});
  return san;
}

}  // namespace iotpki::x509
