// X.509 certificates as immutable values.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/x509/names.h"

typedef struct x509_st X509;

namespace iotpki::x509 {

// One extension as encoded: for lints and diagnostics.
struct Extension {
  std::string oid;  // dotted
  bool critical = false;
  Bytes value;  // extnValue contents

  bool operator==(const Extension&) const = default;
};

// A parsed certificate. Cheap to copy (all copies share one immutable parse); thread-safe.
// Every field is read once, at FromDer: certificates in the shapes this project issues by the
// project's strict DER reader, anything else by OpenSSL's parser (whose d2i_X509 costs more
// than two ECDSA signatures in OpenSSL 3.0). ToDer() returns exactly the bytes that were parsed.
class Certificate {
 public:
  // InvalidArgument for anything that is not exactly one DER certificate (trailing bytes, BER,
  // negative serial, malformed times, an unusable public key).
  static Result<Certificate> FromDer(ByteView der);
  // The same, sharing `known_key` instead of decoding the certificate's key when its
  // SubjectPublicKeyInfo is byte-identical (a pre-certificate and its template's key).
  static Result<Certificate> FromDer(ByteView der, const crypto::PublicKey& known_key);
  // A certificate OpenSSL has parsed already (a TLS peer's, SSL_get0_peer_certificate): `x` is
  // shared (up-referenced) rather than parsed again, its DER taken with i2d_X509 (OpenSSL keeps
  // the encoding it parsed), and its fields read as FromDer reads them, sharing the key OpenSSL
  // decoded. `x` must not be modified afterwards. Errors as FromDer.
  static Result<Certificate> FromParsed(X509* x);
  // The first "CERTIFICATE" PEM block.
  static Result<Certificate> FromPem(std::string_view pem);
  // The certificate a pre-certificate (builder.h) becomes once signed: `der` must carry the
  // pre-certificate's TBSCertificate byte for byte. The fields are taken over, not parsed again;
  // OpenSSL parses the DER only if handle() is asked for.
  static Result<Certificate> FromSignedPrecertificate(const Certificate& precert, ByteView der);
  // Every "CERTIFICATE" block, in order; InvalidArgument if there is none or one is bad.
  static Result<std::vector<Certificate>> ChainFromPem(std::string_view pem);

  const Bytes& ToDer() const;
  std::string ToPem() const;

  // Serial number as a big-endian magnitude (no DER sign byte), and the same in lowercase hex.
  const Bytes& serial() const;
  std::string serial_hex() const;

  // RFC 4514-style text, most specific attribute first: "serialNumber=A1,CN=...,O=Acme".
  std::string subject() const;
  std::string issuer() const;
  // The Name DER, byte-exact as in the certificate (an issued certificate's issuer is copied
  // from here).
  ByteView subject_der() const;
  ByteView issuer_der() const;
  // First attribute of each kind in the subject, as UTF-8; empty if absent.
  std::string common_name() const;
  std::string serial_number() const;
  std::string organization() const;

  // Unix seconds; 99991231235959Z is 253402300799 (kNoExpiryUnix).
  int64_t not_before() const;
  int64_t not_after() const;

  const crypto::PublicKey& public_key() const;

  bool is_ca() const;
  // pathLenConstraint; nullopt when absent (or not a CA).
  std::optional<int> path_len() const;
  // key_usage:: bits; nullopt when the extension is absent.
  std::optional<uint16_t> key_usage() const;
  // "clientAuth", "serverAuth" or the dotted OID for others; empty when absent.
  std::vector<std::string> extended_key_usage() const;
  // Empty when absent.
  const Bytes& subject_key_id() const;
  const Bytes& authority_key_id() const;

  const SubjectAltNames& subject_alt_names() const;
  const std::vector<std::string>& san_uris() const { return subject_alt_names().uris; }
  const std::vector<std::string>& san_dns_names() const { return subject_alt_names().dns_names; }
  const std::vector<std::string>& san_ip_addresses() const {
    return subject_alt_names().ip_addresses;
  }
  // The first hardwareModuleName otherName, if any.
  std::optional<HardwareModuleName> hardware_module_name() const;

  // Every extension in certificate order.
  const std::vector<Extension>& extensions() const;
  const Extension* FindExtension(std::string_view oid) const;

  // Dotted OID of the outer signatureAlgorithm.
  const std::string& signature_algorithm() const;
  // The TBSCertificate and signature value, views into ToDer() (valid while this value lives).
  ByteView tbs_der() const;
  ByteView signature() const;

  // For lints: the version (1-3), the TBSCertificate's own signature AlgorithmIdentifier (OID,
  // and whether it has parameters), the time encodings, the subject's attributes in order, and
  // whether every extension this project knows decodes.
  int version() const;
  const std::string& tbs_signature_algorithm() const;
  bool tbs_signature_has_parameters() const;
  bool not_before_is_utc_time() const;
  bool not_after_is_utc_time() const;
  const std::vector<NameAttribute>& subject_attributes() const;
  bool extensions_decode() const;

  // SHA-256 over the DER, lowercase hex.
  std::string fingerprint_sha256() const;

  // True if the signature verifies under `key`; never an error.
  bool IsSignedBy(const crypto::PublicKey& key) const;

  bool operator==(const Certificate& other) const { return ToDer() == other.ToDer(); }

  // Borrowed OpenSSL handle for the library's own use; valid while this value (or a copy)
  // lives. Must not be modified. Null only if OpenSSL cannot parse a certificate made by
  // FromSignedPrecertificate.
  X509* handle() const;

  // Opaque; defined in certificate.cc.
  struct Impl;

 private:
  explicit Certificate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  static Result<Certificate> Parse(ByteView der, const crypto::PublicKey* known_key);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace iotpki::x509
