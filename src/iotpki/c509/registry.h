// Internal to the c509 layer: the IANA "CBOR Encoded X.509 (C509)" registries that this
// implementation knows (draft-ietf-cose-cbor-encoded-cert, section 8), keyed both ways.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"

namespace iotpki::c509::registry {

// An OID-valued registry entry.
struct OidEntry {
  int64_t code;
  std::string_view name;
  Bytes oid;  // OID content bytes (no tag, no length)
};

// A small immutable table of OID-valued entries.
class OidTable {
 public:
  struct Row {
    int64_t code;
    std::string_view name;
    std::string_view dotted;
  };
  explicit OidTable(std::initializer_list<Row> rows);
  const OidEntry* ByCode(int64_t code) const;
  const OidEntry* ByOid(ByteView oid) const;

 private:
  std::vector<OidEntry> entries_;
};

const OidTable& Attributes();           // 8.6 RDN attributes
const OidTable& Extensions();           // 8.8
const OidTable& CertificatePolicies();  // 8.9
const OidTable& PolicyQualifiers();     // 8.10
const OidTable& InformationAccess();    // 8.11
const OidTable& ExtendedKeyUsages();    // 8.12

// Signature (8.14) and public-key (8.15) algorithms: an int stands for one exact DER
// AlgorithmIdentifier, parameters included.
struct AlgorithmEntry {
  int64_t code;
  std::string_view name;
  Bytes oid;                    // OID content
  std::optional<Bytes> params;  // DER of the parameters, if present
};
const AlgorithmEntry* SignatureAlgorithmByCode(int64_t code);
const AlgorithmEntry* SignatureAlgorithmByDer(ByteView oid, std::optional<ByteView> params);
const AlgorithmEntry* PublicKeyAlgorithmByCode(int64_t code);
const AlgorithmEntry* PublicKeyAlgorithmByDer(ByteView oid, std::optional<ByteView> params);

// Signature algorithm codes whose issuerSignatureValue is r || s (section 3.2.2).
bool IsEcdsaSignature(int64_t code);

// Public-key codes that are id-ecPublicKey on a named Weierstrass curve: the OpenSSL NID of the
// curve (0 if OpenSSL does not know it) and the field size in bytes.
struct EcCurve {
  int nid;
  size_t field_bytes;
};
std::optional<EcCurve> EcCurveForPublicKey(int64_t code);

// Attribute codes whose values are always IA5String (non-negative ints only).
inline bool IsIa5Attribute(int64_t code) { return code == 0 || code == 22; }

// Short names for the human-readable view ("CN", "O", ...); the registry name otherwise.
std::string_view AttributeShortName(int64_t code);

}  // namespace iotpki::c509::registry
