// Internal to the x509 layer: OIDs, DER building blocks for the writer side (builder, CSR, CRL)
// and OpenSSL accessors for the reader side (Certificate, Csr, Crl, lint). Includes OpenSSL
// headers, so public headers must not include it.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/der.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/names.h"

namespace iotpki::x509::internal {

inline constexpr std::string_view kOidCountry = "2.5.4.6";
inline constexpr std::string_view kOidOrganization = "2.5.4.10";
inline constexpr std::string_view kOidCommonName = "2.5.4.3";
inline constexpr std::string_view kOidSerialNumber = "2.5.4.5";

inline constexpr std::string_view kOidSubjectKeyId = "2.5.29.14";
inline constexpr std::string_view kOidKeyUsage = "2.5.29.15";
inline constexpr std::string_view kOidSubjectAltName = "2.5.29.17";
inline constexpr std::string_view kOidBasicConstraints = "2.5.29.19";
inline constexpr std::string_view kOidCrlNumber = "2.5.29.20";
inline constexpr std::string_view kOidCrlReason = "2.5.29.21";
inline constexpr std::string_view kOidAuthorityKeyId = "2.5.29.35";
inline constexpr std::string_view kOidExtKeyUsage = "2.5.29.37";

inline constexpr std::string_view kOidServerAuth = "1.3.6.1.5.5.7.3.1";
inline constexpr std::string_view kOidClientAuth = "1.3.6.1.5.5.7.3.2";
inline constexpr std::string_view kOidOcspSigning = "1.3.6.1.5.5.7.3.9";
inline constexpr std::string_view kOidCrlDistributionPoints = "2.5.29.31";
inline constexpr std::string_view kOidIssuingDistributionPoint = "2.5.29.28";
inline constexpr std::string_view kOidAuthorityInfoAccess = "1.3.6.1.5.5.7.1.1";
inline constexpr std::string_view kOidAccessOcsp = "1.3.6.1.5.5.7.48.1";
inline constexpr std::string_view kOidOcspNoCheck = "1.3.6.1.5.5.7.48.1.5";
inline constexpr std::string_view kOidHardwareModuleName = "1.3.6.1.5.5.7.8.4";
inline constexpr std::string_view kOidExtensionRequest = "1.2.840.113549.1.9.14";

inline constexpr std::string_view kOidEcdsaSha256 = "1.2.840.10045.4.3.2";
inline constexpr std::string_view kOidEcdsaSha384 = "1.2.840.10045.4.3.3";
inline constexpr std::string_view kOidEd25519 = "1.3.101.112";

// GeneralName CHOICE tags (RFC 5280 4.2.1.6), IMPLICIT.
inline constexpr uint8_t kGeneralNameOther = 0xa0;
inline constexpr uint8_t kGeneralNameDns = 0x82;
inline constexpr uint8_t kGeneralNameUri = 0x86;
inline constexpr uint8_t kGeneralNameIp = 0x87;

// --- Writing ---------------------------------------------------------------------------------

// Name ::= SEQUENCE OF RDN, one attribute per RDN, in NameFields' documented order.
Bytes EncodeName(const NameFields& name);
// Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE (omitted when false), extnValue }.
Bytes EncodeExtension(std::string_view oid, bool critical, ByteView value);
// The KeyUsage BIT STRING, DER-minimal (trailing zero bits dropped, unused-bit count set).
Bytes EncodeKeyUsage(uint16_t bits);
// GeneralNames in a fixed order: URIs, DNS names, IP addresses, hardware module names.
// InvalidArgument for a non-ASCII URI/DNS name, an unparsable IP address or a malformed OID.
Result<Bytes> EncodeGeneralNames(const SubjectAltNames& san);
// The cRLDistributionPoints (fullName URI) and authorityInfoAccess (id-ad-ocsp URI) extensions,
// each non-critical and only if its URL is not empty, concatenated. InvalidArgument unless each
// URL is http:// or https:// followed by printable ASCII without spaces.
Result<Bytes> EncodeStatusExtensions(std::string_view crl_url, std::string_view ocsp_url);
// AuthorityKeyIdentifier with the keyIdentifier field only.
Bytes EncodeAuthorityKeyId(ByteView key_id);

// AlgorithmIdentifier of the signatures `key` makes with `digest`: ecdsa-with-SHA256/384
// (parameters absent, RFC 5758) or Ed25519 (RFC 8410). Unimplemented for other key types.
Result<Bytes> SignatureAlgorithm(const crypto::PublicKey& key, crypto::DigestAlgorithm digest);
Result<Bytes> SignatureAlgorithm(const crypto::Signer& signer);
// A signature BIT STRING of the largest size `key` can produce (both ECDSA integers with a
// leading zero byte), so that a pre-certificate is never smaller than the real one.
Result<Bytes> PlaceholderSignature(const crypto::PublicKey& key);
// SEQUENCE { tbs, algorithm, BIT STRING signature }: signs `tbs` with `signer`.
Result<Bytes> SignAndAssemble(ByteView tbs, ByteView algorithm, const crypto::Signer& signer);

// --- Reading ---------------------------------------------------------------------------------

// Readers for the fast path (see certificate.cc): they give up (false / nullopt) on anything
// they would not render exactly as OpenSSL does, and the caller then parses with OpenSSL.
//   A Name of single-valued RDNs of C, ST, L, O, OU, CN, serialNumber as PrintableString or
//   UTF8String of printable ASCII that RFC 4514 never escapes: RFC 4514 text and attributes.
bool ReadNameFast(ByteView name_der, std::string& text,
                  std::vector<x509::NameAttribute>* attributes);
// The first O, CN and serialNumber among `attributes` (empty when absent; country is not set).
NameFields FirstNameFields(const std::vector<x509::NameAttribute>& attributes);
//   GeneralNames of URIs, DNS names, IP addresses and hardwareModuleNames.
std::optional<SubjectAltNames> GeneralNamesFast(ByteView general_names_der);
//   AlgorithmIdentifier contents without parameters: the dotted OID.
std::optional<std::string> AlgorithmFast(ByteView contents);

// Certificate::FromDer and Csr::FromDer read the shapes this project issues and devices send
// with the strict DER reader and everything else with OpenSSL; tests clear this to compare the
// two parses.
extern std::atomic<bool> g_fast_parse;

// The three parts of a signed X.509 structure (certificate, CSR, CRL); views into the input.
struct SignedParts {
  der::Element tbs;
  der::Element algorithm;
  ByteView signature;  // BIT STRING contents without the unused-bits byte
};
// Strict DER framing of SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING } with nothing trailing.
// OpenSSL's d2i parsers accept some BER; this keeps what we store byte-identical to what we hash.
Result<SignedParts> SplitSigned(ByteView der);

// RFC 4514-style one-line text ("CN=...,O=..."), UTF-8 kept as UTF-8.
std::string NameToText(const X509_NAME* name);
// The first attribute with this NID as UTF-8, or empty.
std::string NameAttribute(const X509_NAME* name, int nid);
// The string's value as UTF-8; nullopt (and the error queue emptied) if OpenSSL cannot convert it.
std::optional<std::string> StringToUtf8(const ASN1_STRING* data);
// The ASN.1 string type (V_ASN1_*) of the first attribute with this NID, or -1.
int NameAttributeType(const X509_NAME* name, int nid);
Result<int64_t> TimeToUnix(const ASN1_TIME* time);
SubjectAltNames DecodeGeneralNames(const GENERAL_NAMES* names);
// "192.0.2.1" / "2001:db8::1"; empty for lengths other than 4 and 16.
std::string IpToText(ByteView ip);
Result<Bytes> IpFromText(std::string_view text);
std::string ObjectToOid(const ASN1_OBJECT* obj);
// Strips the sign byte DER adds before a magnitude with its top bit set.
Bytes IntegerMagnitude(ByteView integer_contents);

}  // namespace iotpki::x509::internal
