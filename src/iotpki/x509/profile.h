// Certificate profiles, the issuance policy that parameterises them, and device identities.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/x509/names.h"

namespace iotpki::x509 {

// The certificate kinds the CA issues (DESIGN.md, "Trust hierarchy" and "Device identity").
// kOcspResponder: a delegated OCSP responder of an issuing CA (RFC 6960 4.2.2.2), with
// id-kp-OCSPSigning and id-pkix-ocsp-nocheck, short-lived.
// kCommandSigner: the server's rotation-command key (docs/rotation.md#signed-commands), from the
// operational CA, with the extended key usage kOidCommandSigning (and clientAuth: the same
// certificate is the server's MQTT identity), short-lived.
enum class ProfileKind {
  kRoot,
  kIssuingCa,
  kIDevID,
  kLDevID,
  kTlsServer,
  kOcspResponder,
  kCommandSigner
};

// The command-signing key purpose: an arc under RFC 5612's documentation PEN (32473), like the
// device URNs' default. A production fork registers its own PEN and changes this.
inline constexpr std::string_view kOidCommandSigning = "1.3.6.1.4.1.32473.2.1";

// "root", "issuing-ca", "idevid", "ldevid", "tls-server", "ocsp-responder", "command-signer".
std::string_view ProfileName(ProfileKind kind);
// Case-insensitive inverse of ProfileName; InvalidArgument naming the accepted profiles.
Result<ProfileKind> ParseProfile(std::string_view name);
bool IsCaProfile(ProfileKind kind);
bool IsDeviceProfile(ProfileKind kind);

inline constexpr int64_t kSecondsPerDay = 86400;

// Limits for one profile. Checked by the lints before signing.
struct ProfilePolicy {
  int64_t default_validity = 0;  // seconds, used by NewTemplate
  int64_t max_validity = 0;      // seconds; notAfter - notBefore may not exceed it
  bool no_expiry = false;        // notAfter must be 99991231235959Z (IEEE 802.1AR IDevID)
  std::vector<crypto::KeyType> key_types{};  // allowed subject keys
  size_t max_der_size = 0;                   // bytes of the signed certificate
};

// Default size budget for device certificates. The issue asked for 400 bytes, but the mandated
// fields alone (64-hex-char CN, serialNumber, O, RFC 9039 URN, hardwareModuleName, AKI,
// uncompressed P-256 SPKI, 72-byte signature, issuer name) exceed it. Measured under P-256
// CAs named "CN=Acme Manufacturing CA,O=Acme Devices" and "CN=Acme Operational CA,O=Acme
// Devices" (upper bounds: ECDSA signatures vary by 1-2 bytes): IDevID 563 and LDevID 581 bytes with
// serial "SN-000123" and O "Acme Devices"; 785 and 804 bytes with a 64-character serial (which
// appears three times) and a 64-character O. 850 fits the longest identity the validation accepts;
// raise it for long CA names.
inline constexpr size_t kDefaultDeviceDerBudget = 850;

// Issuance policy. The defaults are the documented ones; the CA's config file overrides them.
struct Policy {
  ProfilePolicy root{.default_validity = 7305 * kSecondsPerDay,  // 20 years
                     .max_validity = 9131 * kSecondsPerDay,      // 25 years
                     .key_types = {crypto::KeyType::kP256, crypto::KeyType::kP384},
                     .max_der_size = 1024};
  ProfilePolicy issuing_ca{.default_validity = 3653 * kSecondsPerDay,  // 10 years
                           .max_validity = 5479 * kSecondsPerDay,      // 15 years
                           .key_types = {crypto::KeyType::kP256, crypto::KeyType::kP384},
                           .max_der_size = 1024};
  ProfilePolicy idevid{.no_expiry = true,
                       .key_types = {crypto::KeyType::kP256},
                       .max_der_size = kDefaultDeviceDerBudget};
  ProfilePolicy ldevid{.default_validity = 90 * kSecondsPerDay,
                       .max_validity = 397 * kSecondsPerDay,
                       .key_types = {crypto::KeyType::kP256},
                       .max_der_size = kDefaultDeviceDerBudget};
  ProfilePolicy tls_server{.default_validity = 365 * kSecondsPerDay,
                           .max_validity = 397 * kSecondsPerDay,
                           .key_types = {crypto::KeyType::kP256, crypto::KeyType::kP384},
                           .max_der_size = 1024};
  // Renewed by `iotpki serve` at half its life; nocheck makes a short life the only bound on a
  // stolen responder key (RFC 6960 4.2.2.2.1).
  ProfilePolicy ocsp_responder{.default_validity = 30 * kSecondsPerDay,
                               .max_validity = 90 * kSecondsPerDay,
                               .key_types = {crypto::KeyType::kP256, crypto::KeyType::kP384},
                               .max_der_size = 1024};
  // Renewed by `iotpki serve` at half its life: a stolen command key is good for weeks at most.
  ProfilePolicy command_signer{.default_validity = 30 * kSecondsPerDay,
                               .max_validity = 90 * kSecondsPerDay,
                               .key_types = {crypto::KeyType::kP256},
                               .max_der_size = 1024};
  // IANA Private Enterprise Number in device URNs (urn:dev:os:<PEN>-<serial>, RFC 9039).
  // 32473 is RFC 5612's documentation number: set your own in production.
  uint32_t enterprise_number = 32473;
  // RSA keys, if a profile allows them at all, need at least this many bits.
  int min_rsa_bits = 2048;
  // notBefore is set this far in the past so devices whose clocks lag accept a new certificate.
  int64_t backdate = 300;

  const ProfilePolicy& For(ProfileKind kind) const;
  ProfilePolicy& For(ProfileKind kind);
};

// InvalidArgument naming the key and the allowed types, e.g. "ldevid certificates need a P-256
// key, not RSA-1024": weak or unlisted keys never reach the signer.
Result<void> CheckKeyAllowed(const Policy& policy, ProfileKind kind, const crypto::PublicKey& key);

// hwType in the hardwareModuleName: an arc under RFC 5612's documentation PEN. Set your own.
inline constexpr std::string_view kDefaultHwTypeOid = "1.3.6.1.4.1.32473.1";

// Who a device is. Fixed at manufacturing; the same identity goes into IDevID and LDevID.
struct DeviceIdentity {
  // ComputeDeviceId(serial, hardware fingerprint): 64 lowercase hex characters.
  std::string device_id{};
  // The manufacturer's serial: 1 to 64 of A-Z a-z 0-9 '.' '-'. Goes into the subject
  // serialNumber (PrintableString), the device URN and hwSerialNum. '_' is refused although
  // common in factory serials: PrintableString cannot hold it and RFC 9039 uses it to separate
  // URN components.
  std::string serial{};
  // Subject O, 1 to 64 characters of UTF-8.
  std::string organization{};
  std::string hw_type_oid = std::string(kDefaultHwTypeOid);

  bool operator==(const DeviceIdentity&) const = default;
};

// device_id = lowercase hex of SHA-256(serial || 0x00 || hardware_fingerprint). The serial is
// taken as its ASCII bytes, the fingerprint as raw bytes (decode hex first).
std::string ComputeDeviceId(std::string_view serial, ByteView hardware_fingerprint);

// Each InvalidArgument with a one-line message safe to show to the requester.
Result<void> ValidateSerial(std::string_view serial);
Result<void> ValidateDeviceId(std::string_view device_id);
Result<void> ValidateOrganization(std::string_view organization);
// CA and server common names: 1 to 64 characters of UTF-8 (ub-common-name), no control chars.
Result<void> ValidateCommonName(std::string_view common_name);
Result<void> ValidateDeviceIdentity(const DeviceIdentity& identity);

// "urn:dev:os:32473-AB-1234" (RFC 9039 section 3.4, "os" subtype).
std::string DeviceUrn(uint32_t enterprise_number, std::string_view serial);
// The subject and subjectAltName every device certificate carries for `identity`.
NameFields DeviceSubject(const DeviceIdentity& identity);
SubjectAltNames DeviceSubjectAltNames(const DeviceIdentity& identity, uint32_t enterprise_number);

}  // namespace iotpki::x509
