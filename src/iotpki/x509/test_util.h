// Test helpers for the x509 layer: an in-memory hierarchy and OpenSSL-side mutations of
// certificates (a second, independent builder for bad fixtures). Tests only.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

#include "iotpki/common/error.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/builder.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/internal.h"
#include "iotpki/x509/profile.h"

namespace iotpki::x509::testing {

inline constexpr int64_t kNow = 1767225600;  // 2026-01-01T00:00:00Z

// Unwraps a Result in fixtures; gtest reports the exception with the error's text.
template <class T>
T Must(Result<T> result, std::string_view what = "") {
  if (!result) throw std::runtime_error(std::string(what) + ": " + result.error().ToString());
  return std::move(*result);
}

inline crypto::PrivateKey NewKey(crypto::KeyType type = crypto::KeyType::kP256) {
  return Must(crypto::PrivateKey::Generate(type), "generate key");
}

inline DeviceIdentity Identity(std::string serial = "SN-000123",
                               std::string organization = "Acme Devices") {
  DeviceIdentity id;
  id.device_id = ComputeDeviceId(serial, Bytes(32, 0xab));
  id.serial = std::move(serial);
  id.organization = std::move(organization);
  return id;
}

inline Certificate MakeRoot(const crypto::PrivateKey& key, const Policy& policy,
                            std::string cn = "Acme Root CA") {
  CertificateTemplate t = NewTemplate(ProfileKind::kRoot, key.public_key(), kNow, policy);
  t.subject = {.organization = "Acme Devices", .common_name = std::move(cn)};
  return Must(Issue(t, nullptr, key, policy), "issue root");
}

inline Certificate MakeIssuingCa(const Certificate& root, const crypto::PrivateKey& root_key,
                                 const crypto::PublicKey& key, const Policy& policy,
                                 std::string cn) {
  CertificateTemplate t = NewTemplate(ProfileKind::kIssuingCa, key, kNow, policy);
  t.subject = {.organization = "Acme Devices", .common_name = std::move(cn)};
  return Must(Issue(t, &root, root_key, policy), "issue issuing CA");
}

// Root -> manufacturing CA and root -> operational CA, all in memory.
struct Pki {
  explicit Pki(crypto::KeyType root_curve = crypto::KeyType::kP256)
      : root_key(NewKey(root_curve)) {}

  Policy policy;
  crypto::PrivateKey root_key;
  crypto::PrivateKey mfg_key = NewKey();
  crypto::PrivateKey ops_key = NewKey();
  Certificate root = MakeRoot(root_key, policy);
  Certificate mfg =
      MakeIssuingCa(root, root_key, mfg_key.public_key(), policy, "Acme Manufacturing CA");
  Certificate ops =
      MakeIssuingCa(root, root_key, ops_key.public_key(), policy, "Acme Operational CA");

  CertificateTemplate DeviceTemplate(ProfileKind kind, const crypto::PublicKey& key,
                                     DeviceIdentity id = Identity()) const {
    CertificateTemplate t = NewTemplate(kind, key, kNow, policy);
    t.device = std::move(id);
    return t;
  }
  CertificateTemplate ServerTemplate(const crypto::PublicKey& key) const {
    CertificateTemplate t = NewTemplate(ProfileKind::kTlsServer, key, kNow, policy);
    t.subject = {.organization = "Acme Devices", .common_name = "pki.example.com"};
    t.dns_names = {"pki.example.com"};
    t.ip_addresses = {"192.0.2.10", "2001:db8::10"};
    return t;
  }
  const Certificate& IssuerFor(ProfileKind kind) const {
    return kind == ProfileKind::kIDevID ? mfg : ops;
  }
  const crypto::PrivateKey& IssuerKeyFor(ProfileKind kind) const {
    return kind == ProfileKind::kIDevID ? mfg_key : ops_key;
  }
  Result<Certificate> IssueFor(const CertificateTemplate& t) const {
    return Issue(t, &IssuerFor(t.kind), IssuerKeyFor(t.kind), policy);
  }
};

// Copies `cert`, lets `edit` change the OpenSSL object, re-signs it with `key` and parses the
// result back: how the lint and verify tests make certificates our builder refuses to make.
inline Certificate Mutate(const Certificate& cert, const crypto::PrivateKey& key,
                          const std::function<void(X509*)>& edit, const EVP_MD* md = EVP_sha256()) {
  auto copy = ossl::Own(X509_dup(cert.handle()));
  if (!copy) throw std::runtime_error("X509_dup failed");
  edit(copy.get());
  if (X509_sign(copy.get(), key.handle(), md) <= 0) throw std::runtime_error("X509_sign failed");
  return Must(Certificate::FromDer(ossl::ToDer(copy.get(), i2d_X509)), "parse mutated cert");
}

// Replaces (or adds) the extension `nid` with one made by OpenSSL from its config text, e.g.
// ReplaceExtension(x, NID_key_usage, "critical,digitalSignature,keyEncipherment").
inline void ReplaceExtension(X509* x, int nid, const char* value) {
  int idx = X509_get_ext_by_NID(x, nid, -1);
  if (idx >= 0) ossl::Own(X509_delete_ext(x, idx));
  if (value == nullptr) return;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, nullptr, x, nullptr, nullptr, 0);
  auto ext = ossl::Own(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext) throw std::runtime_error("bad extension text");
  X509_add_ext(x, ext.get(), -1);
}

// A CSR signed by `key` with `spki` as its SubjectPublicKeyInfo (any encoding of any key) and
// `attributes` (encoded Attribute SEQUENCEs, concatenated) in its [0] field: the requests
// MakeCsr never makes, for tests of what the parsers and the CA refuse.
inline Bytes RawCsrDer(const crypto::Signer& key, ByteView spki, const NameFields& subject,
                       ByteView attributes = {}) {
  Bytes info = der::Sequence({der::SmallInteger(0), internal::EncodeName(subject), spki,
                              der::Tlv(der::ContextConstructed(0), attributes)});
  Bytes algorithm = Must(internal::SignatureAlgorithm(key), "signature algorithm");
  return Must(internal::SignAndAssemble(info, algorithm, key), "sign CSR");
}

// An extensionRequest attribute holding `extensions` (encoded Extension SEQUENCEs).
inline Bytes ExtensionRequest(std::initializer_list<ByteView> extensions) {
  return der::Sequence(
      {der::Oid(internal::kOidExtensionRequest),
       der::Constructed(der::kSet, {der::Constructed(der::kSequence, extensions)})});
}

inline Bytes FlipByte(const Bytes& der, size_t from_end) {
  Bytes out = der;
  out[out.size() - from_end] ^= 0x01;
  return out;
}

}  // namespace iotpki::x509::testing
