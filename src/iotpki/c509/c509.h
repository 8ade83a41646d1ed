// C509: CBOR-encoded X.509 certificates (draft-ietf-cose-cbor-encoded-cert, -20/-21 wire
// format).
//
// Two certificate types:
//  - type 3, "re-encoded": a lossless CBOR re-encoding of a DER X.509 v3 certificate. The
//    signature is the original X.509 one, so verifying means rebuilding the DER TBSCertificate.
//    Invariant of this library: DecodeToX509(EncodeX509(der)) == der, byte for byte; the encoder
//    checks it and refuses a certificate it cannot represent exactly.
//  - type 2, "natively signed": the issuer signs the CBOR sequence of the ten TBS items (without
//    the 0x8B array header). There is no DER form.
//
// Certificates are emitted as the CBOR array C509Certificate (header 0x8B); decoding also
// accepts the unwrapped 11-item CBOR sequence of drafts up to -18.
//
// All functions are thread-safe and do no I/O (other than through a Signer they are given).
// Errors are Code::kInvalidArgument for input that is malformed or not representable, with a
// message naming the element; Code::kUnimplemented for valid input this library does not handle
// (e.g. verifying an Ed448 signature).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "iotpki/c509/cbor.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::c509 {

inline constexpr int kTypeNative = 2;
inline constexpr int kTypeReencoded = 3;

// AlgorithmIdentifier: a registry value, or an OID with optional DER parameters.
struct AlgorithmId {
  int64_t code = 0;             // registry value; meaningful when `oid` is empty
  Bytes oid;                    // OID content bytes of an unregistered algorithm
  std::optional<Bytes> params;  // DER of its parameters (OID form only)

  bool operator==(const AlgorithmId&) const = default;
};

// One RDN attribute (single-valued RDNs only).
struct Attribute {
  // Registry value. In type 3, negative means the X.509 value is a PrintableString and positive
  // a UTF8String (IA5String for emailAddress and domainComponent). Type 2 uses only >= 0.
  int64_t type = 0;
  std::string text;  // the value (registered form)
  Bytes oid;         // non-empty: unregistered form, with the DER value element in value_der
  Bytes value_der;

  bool operator==(const Attribute&) const = default;
};
using Name = std::vector<Attribute>;

struct Extension {
  int64_t id = 0;  // registry value (> 0); meaningful when `oid` is empty
  bool critical = false;
  cbor::Item value;  // registered form: the C509 extensionValue
  Bytes oid;         // non-empty: generic form, with the extnValue contents in der_value
  Bytes der_value;

  bool operator==(const Extension&) const = default;
};

// The fields of a C509 certificate. A plain value: the functions below never modify their
// arguments. In a parsed certificate every field reflects the input.
struct C509Certificate {
  int type = kTypeReencoded;
  Bytes serial;  // unsigned big-endian magnitude, no leading zero bytes
  AlgorithmId signature_algorithm;
  std::optional<Name> issuer;        // nullopt: identical to the subject (self-issued)
  int64_t not_before = 0;            // POSIX seconds
  std::optional<int64_t> not_after;  // nullopt: 99991231235959Z, "no well-defined expiry"
  Name subject;
  AlgorithmId public_key_algorithm;
  // The C509 subjectPublicKey: for EC keys a SEC1 point as a byte string (type 3 uses the
  // prefixes 0xFE/0xFD for points it compressed), for RSA the modulus or [modulus, exponent].
  cbor::Item public_key;
  std::vector<Extension> extensions;
  Bytes signature;  // ECDSA: r || s; otherwise the signature bytes

  bool operator==(const C509Certificate&) const = default;
};

// --- Encoding and decoding -------------------------------------------------------------------

// DER X.509 v3 certificate -> C509 type 3 (array form).
Result<Bytes> EncodeX509(ByteView der);
// C509 type 3 (array or legacy sequence form) -> the original DER certificate.
Result<Bytes> DecodeToX509(ByteView c509);

// C509 bytes (either form, either type) -> fields. Refuses non-deterministic CBOR, unknown
// registry values and trailing bytes.
Result<C509Certificate> Parse(ByteView c509);
// Fields -> C509 bytes (array form). Applies the compact forms (single-CN name, keyUsage-only
// extensions, ...) and checks the type's rules.
Result<Bytes> Serialize(const C509Certificate& cert);
// DER certificate -> type 3 fields, and back.
Result<C509Certificate> FromX509(ByteView der);
Result<Bytes> ToX509(const C509Certificate& cert);

// --- Signatures -------------------------------------------------------------------------------

// The bytes the issuer signed: for type 2 the CBOR sequence of TBS items 0..9, for type 3 the DER
// TBSCertificate rebuilt from the fields.
Result<Bytes> SignedBytes(ByteView c509);

// Signs `tbs` natively (type 2) with the issuer's key. `tbs.type`, `tbs.signature_algorithm` and
// `tbs.signature` are ignored: the algorithm follows from the signer (ECDSA P-256/SHA-256 -> 0,
// P-384/SHA-384 -> 1, Ed25519 -> 12, RSA -> 23/24). EC subject keys given with the type-3
// prefixes 0xFE/0xFD are stored with the SEC1 prefixes 0x02/0x03.
Result<Bytes> SignNative(const C509Certificate& tbs, const crypto::Signer& issuer);

// Verifies a natively signed (type 2) certificate. false for a bad signature; an error if the
// input is malformed, not type 2, or uses an algorithm this library cannot verify.
Result<bool> VerifyNative(ByteView c509, const crypto::PublicKey& issuer);
// Verifies either type: type 3 by rebuilding the DER TBSCertificate.
Result<bool> Verify(ByteView c509, const crypto::PublicKey& issuer);

// Converts an issued X.509 certificate into a natively signed C509 with the same content:
// type 2, attribute types made non-negative (every X.509 string type becomes UTF-8 text),
// signed by `issuer`. Refuses certificates that would need a generic (OID) encoding for a
// registered extension or attribute, which native certificates may not use.
Result<Bytes> ToNative(ByteView x509_der, const crypto::Signer& issuer);

// The subject's public key (e.g. to verify certificates this one issued).
Result<crypto::PublicKey> SubjectPublicKey(const C509Certificate& cert);

// --- Presentation -----------------------------------------------------------------------------

// Multi-line human-readable dump for `iotpki c509 show`.
std::string Describe(const C509Certificate& cert);
// "CN=RFC test CA, O=..." (RFC 4514 order is not used: this is the certificate's order).
std::string NameToString(const Name& name);

// --- Building blocks for natively signed certificates ------------------------------------------

// Extension values in their C509 form.
Extension KeyUsageExtension(uint32_t bits, bool critical);  // bit k = 2^k, digitalSignature = 1
Extension BasicConstraintsExtension(bool ca, std::optional<uint32_t> path_len, bool critical);
Extension SubjectKeyIdExtension(ByteView key_id);
Extension AuthorityKeyIdExtension(ByteView key_id);
Extension ExtKeyUsageExtension(const std::vector<int64_t>& purposes);  // registry values
// The C509 subjectPublicKey and algorithm for a key (type 2 form: SEC1 compressed points).
Result<AlgorithmId> PublicKeyAlgorithmFor(const crypto::PublicKey& key);
Result<cbor::Item> PublicKeyItemFor(const crypto::PublicKey& key);

}  // namespace iotpki::c509
