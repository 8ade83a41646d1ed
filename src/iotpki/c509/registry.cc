#include "iotpki/c509/registry.h"

#include <openssl/obj_mac.h>

#include <algorithm>

#include "iotpki/common/der.h"

namespace iotpki::c509::registry {
namespace {

// The tables below hold well-formed hex literals only.
Bytes HexConstant(std::string_view hex) {
  auto bytes = FromHex(hex);
  return bytes ? *bytes : Bytes{};
}

struct AlgorithmRow {
  int64_t code;
  std::string_view name;
  std::string_view dotted;
  std::string_view params_hex;  // empty: parameters absent
};

std::vector<AlgorithmEntry> MakeAlgorithms(std::initializer_list<AlgorithmRow> rows) {
  std::vector<AlgorithmEntry> out;
  for (const auto& r : rows) {
    AlgorithmEntry e{r.code, r.name, der::OidContent(r.dotted), std::nullopt};
    if (!r.params_hex.empty()) e.params = HexConstant(r.params_hex);
    out.push_back(std::move(e));
  }
  return out;
}

const std::vector<AlgorithmEntry>& SignatureAlgorithms() {
  // The RSASSA-PSS parameters are the exact DER of the registry (SHA-2, MGF1 with the same hash,
  // salt length = hash length, trailer field default).
  static const auto* table = new std::vector<AlgorithmEntry>(MakeAlgorithms({
      {-256, "sha1WithRSAEncryption", "1.2.840.113549.1.1.5", "0500"},
      {-255, "ecdsa-with-SHA1", "1.2.840.10045.4.1", ""},
      {0, "ecdsa-with-SHA256", "1.2.840.10045.4.3.2", ""},
      {1, "ecdsa-with-SHA384", "1.2.840.10045.4.3.3", ""},
      {2, "ecdsa-with-SHA512", "1.2.840.10045.4.3.4", ""},
      {3, "id-ecdsa-with-shake128", "1.3.6.1.5.5.7.6.32", ""},
      {4, "id-ecdsa-with-shake256", "1.3.6.1.5.5.7.6.33", ""},
      {5, "id-alg-unsigned", "1.3.6.1.5.5.7.6.36", ""},
      {8, "sm2-with-sm3", "1.2.156.10197.1.501", ""},
      {12, "Ed25519", "1.3.101.112", ""},
      {13, "Ed448", "1.3.101.113", ""},
      {14, "sa-ecdhPop-sha256-hmac-sha256", "1.3.6.1.5.5.7.6.26", ""},
      {15, "sa-ecdhPop-sha384-hmac-sha384", "1.3.6.1.5.5.7.6.27", ""},
      {16, "sa-ecdhPop-sha512-hmac-sha512", "1.3.6.1.5.5.7.6.28", ""},
      {23, "sha256WithRSAEncryption", "1.2.840.113549.1.1.11", "0500"},
      {24, "sha384WithRSAEncryption", "1.2.840.113549.1.1.12", "0500"},
      {25, "sha512WithRSAEncryption", "1.2.840.113549.1.1.13", "0500"},
      {26, "RSASSA-PSS-SHA256", "1.2.840.113549.1.1.10",
       "3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d0609608648016503"
       "0402010500a203020120"},
      {27, "RSASSA-PSS-SHA384", "1.2.840.113549.1.1.10",
       "3034a00f300d06096086480165030402020500a11c301a06092a864886f70d010108300d0609608648016503"
       "0402020500a203020130"},
      {28, "RSASSA-PSS-SHA512", "1.2.840.113549.1.1.10",
       "3034a00f300d06096086480165030402030500a11c301a06092a864886f70d010108300d0609608648016503"
       "0402030500a203020140"},
      {29, "RSASSA-PSS-SHAKE128", "1.3.6.1.5.5.7.6.30", ""},
      {30, "RSASSA-PSS-SHAKE256", "1.3.6.1.5.5.7.6.31", ""},
  }));
  return *table;
}

const std::vector<AlgorithmEntry>& PublicKeyAlgorithms() {
  static const auto* table = new std::vector<AlgorithmEntry>(MakeAlgorithms({
      {0, "rsaEncryption", "1.2.840.113549.1.1.1", "0500"},
      {1, "P-256", "1.2.840.10045.2.1", "06082a8648ce3d030107"},
      {2, "P-384", "1.2.840.10045.2.1", "06052b81040022"},
      {3, "P-521", "1.2.840.10045.2.1", "06052b81040023"},
      {6, "sm2p256v1", "1.2.840.10045.2.1", "06082a811ccf5501822d"},
      {8, "X25519", "1.3.101.110", ""},
      {9, "X448", "1.3.101.111", ""},
      {12, "Ed25519", "1.3.101.112", ""},
      {13, "Ed448", "1.3.101.113", ""},
      {24, "brainpoolP256r1", "1.2.840.10045.2.1", "06092b2403030208010107"},
      {25, "brainpoolP384r1", "1.2.840.10045.2.1", "06092b240303020801010b"},
      {26, "brainpoolP512r1", "1.2.840.10045.2.1", "06092b240303020801010d"},
      {27, "FRP256v1", "1.2.840.10045.2.1", "060a2a817a01815f65820001"},
  }));
  return *table;
}

const AlgorithmEntry* FindByCode(const std::vector<AlgorithmEntry>& table, int64_t code) {
  for (const auto& e : table) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

const AlgorithmEntry* FindByDer(const std::vector<AlgorithmEntry>& table, ByteView oid,
                                std::optional<ByteView> params) {
  for (const auto& e : table) {
    if (!std::equal(e.oid.begin(), e.oid.end(), oid.begin(), oid.end())) continue;
    if (e.params.has_value() != params.has_value()) continue;
    if (params && !std::equal(e.params->begin(), e.params->end(), params->begin(), params->end())) {
      continue;
    }
    return &e;
  }
  return nullptr;
}

}  // namespace

OidTable::OidTable(std::initializer_list<Row> rows) {
  for (const auto& r : rows) entries_.push_back({r.code, r.name, der::OidContent(r.dotted)});
}

const OidEntry* OidTable::ByCode(int64_t code) const {
  for (const auto& e : entries_) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

const OidEntry* OidTable::ByOid(ByteView oid) const {
  for (const auto& e : entries_) {
    if (std::equal(e.oid.begin(), e.oid.end(), oid.begin(), oid.end())) return &e;
  }
  return nullptr;
}

const OidTable& Attributes() {
  static const auto* table = new OidTable({
      {0, "emailAddress", "1.2.840.113549.1.9.1"},
      {1, "commonName", "2.5.4.3"},
      {2, "surname", "2.5.4.4"},
      {3, "serialNumber", "2.5.4.5"},
      {4, "countryName", "2.5.4.6"},
      {5, "localityName", "2.5.4.7"},
      {6, "stateOrProvinceName", "2.5.4.8"},
      {7, "streetAddress", "2.5.4.9"},
      {8, "organizationName", "2.5.4.10"},
      {9, "organizationalUnitName", "2.5.4.11"},
      {10, "title", "2.5.4.12"},
      {11, "businessCategory", "2.5.4.15"},
      {12, "postalCode", "2.5.4.17"},
      {13, "givenName", "2.5.4.42"},
      {14, "initials", "2.5.4.43"},
      {15, "generationQualifier", "2.5.4.44"},
      {16, "dnQualifier", "2.5.4.46"},
      {17, "pseudonym", "2.5.4.65"},
      {18, "organizationIdentifier", "2.5.4.97"},
      {19, "jurisdictionLocalityName", "1.3.6.1.4.1.311.60.2.1.1"},
      {20, "jurisdictionStateOrProvinceName", "1.3.6.1.4.1.311.60.2.1.2"},
      {21, "jurisdictionCountryName", "1.3.6.1.4.1.311.60.2.1.3"},
      {22, "domainComponent", "0.9.2342.19200300.100.1.25"},
      {25, "name", "2.5.4.41"},
      {26, "telephoneNumber", "2.5.4.20"},
      {27, "dmdName", "2.5.4.54"},
      {28, "uid", "0.9.2342.19200300.100.1.1"},
      {29, "unstructuredName", "1.2.840.113549.1.9.2"},
      {30, "unstructuredAddress", "1.2.840.113549.1.9.8"},
  });
  return *table;
}

const OidTable& Extensions() {
  // 24 (subjectDirectoryAttributes) was removed in -21 and 37 (precertificate signing) after
  // -18; neither is listed, so such extensions take the generic OID form.
  static const auto* table = new OidTable({
      {1, "subjectKeyIdentifier", "2.5.29.14"},
      {2, "keyUsage", "2.5.29.15"},
      {3, "subjectAltName", "2.5.29.17"},
      {4, "basicConstraints", "2.5.29.19"},
      {5, "cRLDistributionPoints", "2.5.29.31"},
      {6, "certificatePolicies", "2.5.29.32"},
      {7, "authorityKeyIdentifier", "2.5.29.35"},
      {8, "extKeyUsage", "2.5.29.37"},
      {9, "authorityInfoAccess", "1.3.6.1.5.5.7.1.1"},
      {25, "issuerAltName", "2.5.29.18"},
      {26, "nameConstraints", "2.5.29.30"},
      {27, "policyMappings", "2.5.29.33"},
      {28, "policyConstraints", "2.5.29.36"},
      {29, "freshestCRL", "2.5.29.46"},
      {30, "inhibitAnyPolicy", "2.5.29.54"},
      {31, "subjectInfoAccess", "1.3.6.1.5.5.7.1.11"},
      {32, "id-pe-ipAddrBlocks", "1.3.6.1.5.5.7.1.7"},
      {33, "id-pe-autonomousSysIds", "1.3.6.1.5.5.7.1.8"},
      {34, "id-pe-ipAddrBlocks-v2", "1.3.6.1.5.5.7.1.28"},
      {35, "id-pe-autonomousSysIds-v2", "1.3.6.1.5.5.7.1.29"},
      {36, "id-pkix-ocsp-nocheck", "1.3.6.1.5.5.7.48.1.5"},
      {38, "id-pe-tlsfeature", "1.3.6.1.5.5.7.1.24"},
  });
  return *table;
}

const OidTable& CertificatePolicies() {
  static const auto* table = new OidTable({
      {0, "anyPolicy", "2.5.29.32.0"},
      {1, "domain-validated", "2.23.140.1.2.1"},
      {2, "organization-validated", "2.23.140.1.2.2"},
      {3, "individual-validated", "2.23.140.1.2.3"},
      {4, "ev-guidelines", "2.23.140.1.1"},
      {7, "id-cp-ipAddr-asNumber", "1.3.6.1.5.5.7.14.2"},
      {8, "id-cp-ipAddr-asNumber-v2", "1.3.6.1.5.5.7.14.3"},
      {24, "id-rspRole-ci", "2.23.146.1.2.1.0"},
      {25, "id-rspRole-euicc-v2", "2.23.146.1.2.1.1"},
      {26, "id-rspRole-euicc", "2.23.146.1.2.1.0.0.0.0.0"},
      {27, "id-rspRole-eum-v2", "2.23.146.1.2.1.2"},
      {28, "id-rspRole-eum", "2.23.146.1.2.1.0.0.0"},
      {29, "id-rspRole-dp-tls-v2", "2.23.146.1.2.1.3"},
      {30, "id-rspRole-dp-tls", "2.23.146.1.2.1.0.0.1.0"},
      {31, "id-rspRole-dp-auth-v2", "2.23.146.1.2.1.4"},
      {32, "id-rspRole-dp-auth", "2.23.146.1.2.1.0.0.1.1"},
      {33, "id-rspRole-dp-pb-v2", "2.23.146.1.2.1.5"},
      {34, "id-rspRole-dp-pb", "2.23.146.1.2.1.0.0.1.2"},
      {35, "id-rspRole-ds-tls-v2", "2.23.146.1.2.1.6"},
      {36, "id-rspRole-ds-tls", "2.23.146.1.2.1.0.0.2.0"},
      {37, "id-rspRole-ds-auth-v2", "2.23.146.1.2.1.7"},
      {38, "id-rspRole-ds-auth", "2.23.146.1.2.1.0.0.2.1"},
  });
  return *table;
}

const OidTable& PolicyQualifiers() {
  static const auto* table = new OidTable({
      {1, "cps", "1.3.6.1.5.5.7.2.1"},
      {2, "unotice", "1.3.6.1.5.5.7.2.2"},
  });
  return *table;
}

const OidTable& InformationAccess() {
  static const auto* table = new OidTable({
      {1, "ocsp", "1.3.6.1.5.5.7.48.1"},
      {2, "caIssuers", "1.3.6.1.5.5.7.48.2"},
      {3, "timeStamping", "1.3.6.1.5.5.7.48.3"},
      {5, "caRepository", "1.3.6.1.5.5.7.48.5"},
      {10, "rpkiManifest", "1.3.6.1.5.5.7.48.10"},
      {11, "signedObject", "1.3.6.1.5.5.7.48.11"},
      {13, "rpkiNotify", "1.3.6.1.5.5.7.48.13"},
  });
  return *table;
}

const OidTable& ExtendedKeyUsages() {
  static const auto* table = new OidTable({
      {0, "anyExtendedKeyUsage", "2.5.29.37.0"},
      {1, "serverAuth", "1.3.6.1.5.5.7.3.1"},
      {2, "clientAuth", "1.3.6.1.5.5.7.3.2"},
      {3, "codeSigning", "1.3.6.1.5.5.7.3.3"},
      {4, "emailProtection", "1.3.6.1.5.5.7.3.4"},
      {8, "timeStamping", "1.3.6.1.5.5.7.3.8"},
      {9, "OCSPSigning", "1.3.6.1.5.5.7.3.9"},
      {10, "pkinit-KPClientAuth", "1.3.6.1.5.2.3.4"},
      {11, "pkinit-KPKdc", "1.3.6.1.5.2.3.5"},
      {12, "secureShellClient", "1.3.6.1.5.5.7.3.21"},
      {13, "secureShellServer", "1.3.6.1.5.5.7.3.22"},
      {14, "bundleSecurity", "1.3.6.1.5.5.7.3.35"},
      {15, "cmcCA", "1.3.6.1.5.5.7.3.27"},
      {16, "cmcRA", "1.3.6.1.5.5.7.3.28"},
      {17, "cmcArchive", "1.3.6.1.5.5.7.3.29"},
      {18, "cmKGA", "1.3.6.1.5.5.7.3.32"},
      {20, "wisun-fan-device", "1.3.6.1.4.1.45605.1"},
  });
  return *table;
}

const AlgorithmEntry* SignatureAlgorithmByCode(int64_t code) {
  return FindByCode(SignatureAlgorithms(), code);
}
const AlgorithmEntry* SignatureAlgorithmByDer(ByteView oid, std::optional<ByteView> params) {
  return FindByDer(SignatureAlgorithms(), oid, params);
}
const AlgorithmEntry* PublicKeyAlgorithmByCode(int64_t code) {
  return FindByCode(PublicKeyAlgorithms(), code);
}
const AlgorithmEntry* PublicKeyAlgorithmByDer(ByteView oid, std::optional<ByteView> params) {
  return FindByDer(PublicKeyAlgorithms(), oid, params);
}

bool IsEcdsaSignature(int64_t code) {
  // ECDSA with SHA-1, SHA-2 and SHAKE, and SM2 (the registry points both at section 3.2.2).
  return code == -255 || (code >= 0 && code <= 4) || code == 8;
}

std::optional<EcCurve> EcCurveForPublicKey(int64_t code) {
  switch (code) {
    case 1:
      return EcCurve{NID_X9_62_prime256v1, 32};
    case 2:
      return EcCurve{NID_secp384r1, 48};
    case 3:
      return EcCurve{NID_secp521r1, 66};
    case 6:
      return EcCurve{NID_sm2, 32};
    case 24:
      return EcCurve{NID_brainpoolP256r1, 32};
    case 25:
      return EcCurve{NID_brainpoolP384r1, 48};
    case 26:
      return EcCurve{NID_brainpoolP512r1, 64};
    case 27:
      return EcCurve{0, 32};  // FRP256v1: OpenSSL has no such curve.
    default:
      return std::nullopt;
  }
}

std::string_view AttributeShortName(int64_t code) {
  switch (code) {
    case 1:
      return "CN";
    case 2:
      return "SN";
    case 4:
      return "C";
    case 5:
      return "L";
    case 6:
      return "ST";
    case 7:
      return "street";
    case 8:
      return "O";
    case 9:
      return "OU";
    case 13:
      return "GN";
    case 22:
      return "DC";
    case 28:
      return "UID";
    default: {
      const OidEntry* e = Attributes().ByCode(code);
      return e ? e->name : std::string_view("?");
    }
  }
}

}  // namespace iotpki::c509::registry
