// Subject name fields and subjectAltName entries, shared by certificates, CSRs and the builder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "iotpki/common/bytes.h"

namespace iotpki::x509 {

// The distinguished-name attributes this project issues and reads. Empty fields are absent.
// Encoded in this order, one attribute per RDN: C, O, CN, serialNumber. C and serialNumber are
// PrintableString (X.520 allows nothing else), O and CN UTF8String (RFC 5280 4.1.2.6).
struct NameFields {
  std::string country{};
  std::string organization{};
  std::string common_name{};
  std::string serial_number{};

  bool operator==(const NameFields&) const = default;
};

// One name attribute as encoded, for lints: dotted OID, ASN.1 string tag (0x0c UTF8String,
// 0x13 PrintableString, ...) and the value as UTF-8.
struct NameAttribute {
  std::string oid;
  uint8_t tag = 0;
  std::string value;

  bool operator==(const NameAttribute&) const = default;
};

// RFC 4108 HardwareModuleName (otherName 1.3.6.1.5.5.7.8.4), as IEEE 802.1AR DevIDs carry it.
struct HardwareModuleName {
  std::string hw_type;  // dotted OID
  Bytes hw_serial;      // hwSerialNum OCTET STRING

  bool operator==(const HardwareModuleName&) const = default;
};

// The subjectAltName entries this project issues. Entries of any other kind (rfc822Name,
// directoryName, other otherNames, ...) are counted in `other`, never silently dropped, so a
// lint can refuse them.
struct SubjectAltNames {
  std::vector<std::string> uris;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // text: "192.0.2.1", "2001:db8::1"
  std::vector<HardwareModuleName> hardware_module_names;
  size_t other = 0;

  bool empty() const {
    return uris.empty() && dns_names.empty() && ip_addresses.empty() &&
           hardware_module_names.empty() && other == 0;
  }
  bool operator==(const SubjectAltNames&) const = default;
};

// RFC 5280 4.2.1.3 key usage bits, numbered as in the BIT STRING (bit 0 = digitalSignature).
namespace key_usage {
inline constexpr uint16_t kDigitalSignature = 1u << 0;
inline constexpr uint16_t kNonRepudiation = 1u << 1;
inline constexpr uint16_t kKeyEncipherment = 1u << 2;
inline constexpr uint16_t kDataEncipherment = 1u << 3;
inline constexpr uint16_t kKeyAgreement = 1u << 4;
inline constexpr uint16_t kKeyCertSign = 1u << 5;
inline constexpr uint16_t kCrlSign = 1u << 6;
inline constexpr uint16_t kEncipherOnly = 1u << 7;
inline constexpr uint16_t kDecipherOnly = 1u << 8;
}  // namespace key_usage

}  // namespace iotpki::x509
