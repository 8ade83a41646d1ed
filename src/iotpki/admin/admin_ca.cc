#include "iotpki/admin/admin_ca.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <system_error>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/store/audit.h"
#include "iotpki/x509/builder.h"

namespace iotpki::admin {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDay = 86400;
constexpr const char* kOuOid = "2.5.4.11";
constexpr const char* kCnOid = "2.5.4.3";

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<void> AddName(X509_NAME* name, const char* field, std::string_view value) {
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "cannot encode the subject"));
  }
  return {};
}

Result<void> AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  auto ext = ossl::Own(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot add a certificate extension"));
  }
  return {};
}

struct CertSpec {
  std::string organization;
  std::string unit;  // empty: none
  std::string common_name;
  int64_t not_before = 0;
  int64_t not_after = 0;
  bool ca = false;
};

// Builds and signs one certificate with OpenSSL's X509 API. The x509/ builder only makes the
// device hierarchy's profiles, and its lints would rightly refuse a TLS client certificate.
Result<x509::Certificate> Build(const CertSpec& spec, const crypto::PublicKey& subject_key,
                                const x509::Certificate* issuer,
                                const crypto::PrivateKey& issuer_key) {
  auto cert = ossl::Own(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot make a certificate"));
  }
  Bytes serial = x509::NewSerial();
  auto bn = ossl::Own(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(spec.not_before)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(spec.not_after)) ==
          nullptr) {
    return Fail(ossl::Drain(Code::kInternal, "cannot set the serial or validity"));
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  IOTPKI_CHECK(AddName(name, "O", spec.organization));
  if (!spec.unit.empty()) IOTPKI_CHECK(AddName(name, "OU", spec.unit));
  IOTPKI_CHECK(AddName(name, "CN", spec.common_name));
  X509* issuer_x = issuer != nullptr ? issuer->handle() : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer_x)) != 1 ||
      X509_set_pubkey(cert.get(), subject_key.get()) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot set the issuer or key"));
  }
  if (spec.ca) {
    IOTPKI_CHECK(
        AddExtension(cert.get(), issuer_x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    IOTPKI_CHECK(AddExtension(cert.get(), issuer_x, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    IOTPKI_CHECK(AddExtension(cert.get(), issuer_x, NID_basic_constraints, "critical,CA:FALSE"));
    IOTPKI_CHECK(AddExtension(cert.get(), issuer_x, NID_key_usage, "critical,digitalSignature"));
    IOTPKI_CHECK(AddExtension(cert.get(), issuer_x, NID_ext_key_usage, "clientAuth"));
  }
  IOTPKI_CHECK(AddExtension(cert.get(), issuer_x, NID_subject_key_identifier, "hash"));
  if (issuer != nullptr) {
    IOTPKI_CHECK(AddExtension(cert.get(), issuer_x, NID_authority_key_identifier, "keyid:always"));
  }
  if (X509_sign(cert.get(), issuer_key.handle(), ossl::Sha256Md()) <= 0) {
    return Fail(ossl::Drain(Code::kInternal, "cannot sign the certificate"));
  }
  return x509::Certificate::FromDer(ossl::ToDer(cert.get(), i2d_X509));
}

void Audit(store::Store* store, std::string_view actor, std::string action, std::string subject,
           const nlohmann::json& details) {
  if (store == nullptr) return;
  store::WriteBatch b;
  b.AppendAudit({.actor = std::string(actor),
                 .action = std::move(action),
                 .subject = std::move(subject),
                 .details = details.dump()});
  if (auto c = store->Commit(b); !c) store::ReportAuditWriteFailure("admin", c.error());
}

}  // namespace

std::string_view RoleName(Role role) { return role == Role::kOperator ? "operator" : "read-only"; }

Result<Role> ParseRole(std::string_view name) {
  if (name == "operator") return Role::kOperator;
  if (name == "read-only") return Role::kReadOnly;
  return Fail(Code::kInvalidArgument,
              "role must be read-only or operator, not '" + std::string(name) + "'");
}

fs::path AdminCaCertPath(const fs::path& dir) { return dir / "certs" / "admin-ca.pem"; }
fs::path AdminCaKeyPath(const fs::path& dir) { return dir / "keys" / "admin-ca.key"; }

Result<x509::Certificate> InitAdminCa(const fs::path& dir, std::string_view organization,
                                      std::string_view passphrase, const Clock& clock,
                                      store::Store* store, std::string_view actor) {
  if (fs::exists(AdminCaCertPath(dir)) || fs::exists(AdminCaKeyPath(dir))) {
    return Fail(Code::kAlreadyExists, "an admin CA exists already in " + dir.string() +
                                          " (certs/admin-ca.pem); issue operators with "
                                          "`iotpki admin issue`");
  }
  if (!fs::is_directory(dir / "certs") || !fs::is_directory(dir / "keys")) {
    return Fail(Code::kFailedPrecondition,
                dir.string() + " is not a CA directory (create one with `iotpki ca init`)");
  }
  IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(crypto::KeyType::kP256));
  int64_t now = clock.NowUnix();
  IOTPKI_TRY(x509::Certificate cert, Build({.organization = std::string(organization),
                                            .common_name = std::string(organization) + " Admin CA",
                                            .not_before = now - 300,
                                            .not_after = now + 3650 * kDay,
                                            .ca = true},
                                           key.public_key(), nullptr, key));
  // The key first: a certificate without its key would make a second init refuse for nothing.
  IOTPKI_CHECK(crypto::SaveKeyFile(AdminCaKeyPath(dir), key, passphrase));
  IOTPKI_CHECK(WriteFileAtomic(AdminCaCertPath(dir), cert.ToPem()));
  Audit(store, actor, "admin.init", cert.serial_hex(),
        {{"subject", cert.subject()}, {"fingerprint", cert.fingerprint_sha256()}});
  return cert;
}

Result<x509::Certificate> LoadAdminCa(const fs::path& dir) {
  fs::path path = AdminCaCertPath(dir);
  if (!fs::exists(path)) {
    return Fail(Code::kFailedPrecondition, "no admin CA in " + dir.string() +
                                               ": create it with `iotpki admin init --dir " +
                                               dir.string() + "`");
  }
  IOTPKI_TRY(std::string pem, ReadTextFile(path, 1 << 16));
  return x509::Certificate::FromPem(pem);
}

Result<IssuedOperator> IssueOperator(const fs::path& dir, std::string_view ca_passphrase,
                                     const IssueOperatorRequest& request, const Clock& clock,
                                     store::Store* store, std::string_view actor) {
  if (!ValidName(request.name)) {
    return Fail(Code::kInvalidArgument,
                "--name must be 1 to 64 of A-Z a-z 0-9 . _ @ -, not '" + request.name + "'");
  }
  if (request.days < 1 || request.days > 825) {
    return Fail(Code::kInvalidArgument, "--days must be 1 to 825");
  }
  if (request.key_passphrase.size() < 8) {
    return Fail(Code::kInvalidArgument,
                "the operator's key passphrase must have at least 8 characters");
  }
  const fs::path cert_path = request.out_dir / (request.name + ".pem");
  const fs::path key_path = request.out_dir / (request.name + ".key");
  const fs::path p12_path = request.out_dir / (request.name + ".p12");
  for (const fs::path& p : {cert_path, key_path, p12_path}) {
    if (fs::exists(p)) {
      return Fail(Code::kAlreadyExists,
                  p.string() + " exists already: choose another --out-dir or --name");
    }
  }
  IOTPKI_TRY(x509::Certificate ca_cert, LoadAdminCa(dir));
  IOTPKI_TRY(crypto::PrivateKey ca_key, crypto::LoadKeyFile(AdminCaKeyPath(dir), ca_passphrase));
  if (!(ca_key.public_key() == ca_cert.public_key())) {
    return Fail(Code::kFailedPrecondition, "keys/admin-ca.key does not match certs/admin-ca.pem");
  }
  std::string organization = ca_cert.organization().empty() ? "iotpki" : ca_cert.organization();
  IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(crypto::KeyType::kP256));
  int64_t now = clock.NowUnix();
  int64_t not_after = std::min(now + request.days * kDay, ca_cert.not_after());
  IOTPKI_TRY(x509::Certificate cert, Build({.organization = organization,
                                            .unit = std::string(RoleName(request.role)),
                                            .common_name = request.name,
                                            .not_before = now - 300,
                                            .not_after = not_after},
                                           key.public_key(), &ca_cert, ca_key));

  // PKCS#12 for browsers: OpenSSL 3's defaults (AES-256-CBC, PBKDF2, HMAC-SHA256), which
  // Chromium and Firefox import.
  auto chain = ossl::Own(sk_X509_new_null());
  if (!chain || sk_X509_push(chain.get(), ca_cert.handle()) <= 0) {
    return Fail(ossl::Drain(Code::kInternal, "cannot build the PKCS#12 chain"));
  }
  std::string p12_pass(request.key_passphrase);
  std::string friendly = "iotpki operator " + request.name;
  std::unique_ptr<PKCS12, decltype(&PKCS12_free)> bundle(
      PKCS12_create(p12_pass.c_str(), friendly.c_str(), key.handle(), cert.handle(), chain.get(), 0,
                    0, 0, 0, 0),
      PKCS12_free);
  if (!bundle) return Fail(ossl::Drain(Code::kInternal, "cannot build the PKCS#12 file"));
  Bytes p12 = ossl::ToDer(bundle.get(), i2d_PKCS12);

  // Recorded (with its audit row) before its files exist, so that every certificate an operator
  // can hold is one `iotpki admin revoke` can revoke.
  if (store != nullptr) {
    store::WriteBatch b;
    b.InsertOperatorCertificate({.serial = cert.serial_hex(),
                                 .name = request.name,
                                 .role = std::string(RoleName(request.role)),
                                 .not_after = cert.not_after()});
    b.AppendAudit({.actor = std::string(actor),
                   .action = "admin.issue",
                   .subject = cert.serial_hex(),
                   .details = nlohmann::json{{"name", request.name},
                                             {"role", RoleName(request.role)},
                                             {"not_after", cert.not_after()},
                                             {"fingerprint", cert.fingerprint_sha256()}}
                                  .dump()});
    if (auto c = store->Commit(b); !c) {
      return Fail(std::move(c).error().Context("recording the operator certificate"));
    }
  }

  std::error_code ec;
  fs::create_directories(request.out_dir, ec);
  if (ec) {
    return Fail(Code::kFailedPrecondition,
                "cannot create " + request.out_dir.string() + ": " + ec.message());
  }
  IOTPKI_CHECK(crypto::SaveKeyFile(key_path, key, request.key_passphrase));
  IOTPKI_CHECK(WriteFileAtomic(p12_path, p12, 0600));
  IOTPKI_CHECK(WriteFileAtomic(cert_path, cert.ToPem() + ca_cert.ToPem()));
  return IssuedOperator{std::move(cert), cert_path, key_path, p12_path};
}

Result<std::vector<store::OperatorCertificate>> RevokeOperator(store::Store& store,
                                                               std::string_view name,
                                                               std::string_view serial,
                                                               std::string_view actor) {
  if (name.empty() == serial.empty()) {
    return Fail(Code::kInvalidArgument, "name one operator (--name) or one certificate (--serial)");
  }
  std::vector<store::OperatorCertificate> targets;
  if (!serial.empty()) {
    IOTPKI_TRY(auto c, store.GetOperatorCertificate(serial));
    if (c.status == store::CertStatus::kRevoked) {
      return Fail(Code::kFailedPrecondition,
                  "operator certificate " + c.serial + " is revoked already");
    }
    targets.push_back(std::move(c));
  } else {
    IOTPKI_TRY(auto all, store.ListOperatorCertificates());
    bool known = false;
    for (auto& c : all) {
      if (c.name != name) continue;
      known = true;
      if (c.status == store::CertStatus::kValid) targets.push_back(std::move(c));
    }
    if (!known) {
      return Fail(Code::kNotFound, "no operator certificate was issued to '" + std::string(name) +
                                       "' (iotpki admin ls lists them)");
    }
    if (targets.empty()) {
      return Fail(Code::kFailedPrecondition,
                  "every certificate of operator '" + std::string(name) + "' is revoked already");
    }
  }
  store::WriteBatch b;
  for (const auto& c : targets) {
    b.RevokeOperatorCertificate(c.serial);
    b.AppendAudit({.actor = std::string(actor),
                   .action = "admin.revoke",
                   .subject = c.serial,
                   .details = nlohmann::json{{"name", c.name}, {"role", c.role}}.dump()});
  }
  IOTPKI_TRY(auto info, store.Commit(b));
  for (auto& c : targets) {
    c.status = store::CertStatus::kRevoked;
    c.revoked_at = info.time;
  }
  return targets;
}

Result<Operator> OperatorOf(const x509::Certificate& cert) {
  Operator op{.serial = cert.serial_hex(), .fingerprint = cert.fingerprint_sha256()};
  std::string unit;
  for (const auto& a : cert.subject_attributes()) {
    if (a.oid == kCnOid && op.name.empty()) op.name = a.value;
    if (a.oid == kOuOid && unit.empty()) unit = a.value;
  }
  auto role = ParseRole(unit);
  if (op.name.empty() || !role) {
    return Fail(Code::kPermissionDenied,
                "the client certificate names no operator role (OU read-only or operator)");
  }
  op.role = *role;
  return op;
}

}  // namespace iotpki::admin
