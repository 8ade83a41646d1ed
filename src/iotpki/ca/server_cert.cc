// Authority::IssueServerCertificate and IssueOcspResponderCertificate: the certificates
// `iotpki serve` makes for itself; LoadOrIssueCommandIdentity (service_identity.h).
#include <nlohmann/json.hpp>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/service_identity.h"
#include "iotpki/common/file.h"
#include "iotpki/common/log.h"

namespace iotpki::ca {

namespace {

// Records a certificate the server made for itself (profile kServer) and its `cert.issue` audit
// row in one commit: durable first, only then may the certificate be used.
Result<void> RecordServiceCertificate(store::Store& store, const x509::Certificate& cert, CaName ca,
                                      const std::string& actor, nlohmann::json details) {
  store::CertificateRecord r;
  r.serial = cert.serial_hex();
  r.profile = store::CertProfile::kServer;
  r.issuer = std::string(CaNameText(ca));
  r.subject = cert.subject();
  r.not_before = cert.not_before();
  r.not_after = cert.not_after();
  r.key_fingerprint = ToHex(cert.public_key().Fingerprint());
  r.der = cert.ToDer();
  store::WriteBatch batch;
  batch.InsertCertificate(std::move(r));
  batch.AppendAudit({.actor = actor,
                     .action = "cert.issue",
                     .subject = cert.serial_hex(),
                     .details = details.dump()});
  IOTPKI_CHECK(store.Commit(batch));
  return {};
}

}  // namespace

Result<x509::Certificate> Authority::IssueServerCertificate(
    const crypto::PublicKey& key, const std::string& common_name,
    const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses,
    const std::string& actor) {
  if (operational_key_ == nullptr) {
    return Fail(Code::kFailedPrecondition, "the operational CA key is not unlocked");
  }
  IOTPKI_CHECK(x509::ValidateCommonName(common_name));
  IOTPKI_CHECK(x509::CheckKeyAllowed(policy_, x509::ProfileKind::kTlsServer, key));
  auto tmpl = x509::NewTemplate(x509::ProfileKind::kTlsServer, key, clock_.NowUnix(), policy_);
  tmpl.subject = {.organization = config_.organization, .common_name = common_name};
  tmpl.dns_names = dns_names;
  tmpl.ip_addresses = ip_addresses;
  IOTPKI_TRY(x509::Certificate cert, x509::Issue(tmpl, &*operational_, *operational_key_, policy_));

  nlohmann::json names = dns_names;
  for (const auto& ip : ip_addresses) names.push_back(ip);
  IOTPKI_CHECK(
      RecordServiceCertificate(*store_, cert, CaName::kOperational, actor,
                               {{"profile", x509::ProfileName(x509::ProfileKind::kTlsServer)},
                                {"names", names},
                                {"not_after", cert.not_after()},
                                {"sha256", cert.fingerprint_sha256()}}));
  return cert;
}

Result<x509::Certificate> Authority::IssueOcspResponderCertificate(CaName ca,
                                                                   const crypto::PublicKey& key,
                                                                   const std::string& actor) {
  const crypto::Signer* issuer_key = this->issuer_key(ca);
  if (issuer_key == nullptr) {
    return Fail(Code::kFailedPrecondition,
                "the " + std::string(CaNameText(ca)) + " CA key is not unlocked");
  }
  IOTPKI_CHECK(x509::CheckKeyAllowed(policy_, x509::ProfileKind::kOcspResponder, key));
  auto tmpl = x509::NewTemplate(x509::ProfileKind::kOcspResponder, key, clock_.NowUnix(), policy_);
  std::string cn = ca == CaName::kManufacturing ? "Manufacturing CA OCSP responder"
                                                : "Operational CA OCSP responder";
  tmpl.subject = {.organization = config_.organization, .common_name = cn};
  const x509::Certificate& issuer = certificate(ca);
  IOTPKI_TRY(x509::Certificate cert, x509::Issue(tmpl, &issuer, *issuer_key, policy_));

  IOTPKI_CHECK(
      RecordServiceCertificate(*store_, cert, ca, actor,
                               {{"profile", x509::ProfileName(x509::ProfileKind::kOcspResponder)},
                                {"issuer", CaNameText(ca)},
                                {"not_after", cert.not_after()},
                                {"sha256", cert.fingerprint_sha256()}}));
  return cert;
}

Result<x509::Certificate> Authority::IssueCommandCertificate(const crypto::PublicKey& key,
                                                             const std::string& common_name,
                                                             const std::string& actor) {
  const crypto::Signer* issuer_key = this->issuer_key(CaName::kOperational);
  if (issuer_key == nullptr) {
    return Fail(Code::kFailedPrecondition, "the operational CA key is not unlocked");
  }
  IOTPKI_CHECK(x509::CheckKeyAllowed(policy_, x509::ProfileKind::kCommandSigner, key));
  auto tmpl = x509::NewTemplate(x509::ProfileKind::kCommandSigner, key, clock_.NowUnix(), policy_);
  tmpl.subject = {.organization = config_.organization, .common_name = common_name};
  const x509::Certificate& issuer = certificate(CaName::kOperational);
  IOTPKI_TRY(x509::Certificate cert, x509::Issue(tmpl, &issuer, *issuer_key, policy_));

  IOTPKI_CHECK(
      RecordServiceCertificate(*store_, cert, CaName::kOperational, actor,
                               {{"profile", x509::ProfileName(x509::ProfileKind::kCommandSigner)},
                                {"issuer", CaNameText(CaName::kOperational)},
                                {"not_after", cert.not_after()},
                                {"sha256", cert.fingerprint_sha256()}}));
  return cert;
}

bool InFirstHalfOfLife(const x509::Certificate& cert, int64_t now) {
  return now < cert.not_before() + (cert.not_after() - cert.not_before()) / 2;
}

Result<CommandIdentity> LoadOrIssueCommandIdentity(Authority& authority,
                                                   std::string_view passphrase) {
  std::filesystem::path cert_path = authority.dir() / "certs" / "command.pem";
  std::filesystem::path key_path = authority.dir() / "keys" / "command.key";
  const x509::Certificate& ops = authority.certificate(CaName::kOperational);
  int64_t now = authority.clock().NowUnix();
  if (std::filesystem::exists(cert_path) && std::filesystem::exists(key_path)) {
    IOTPKI_TRY(std::string pem, ReadTextFile(cert_path));
    IOTPKI_TRY(auto chain, x509::Certificate::ChainFromPem(pem));
    if (!chain.empty() && chain[0].IsSignedBy(ops.public_key()) &&
        InFirstHalfOfLife(chain[0], now)) {
      IOTPKI_TRY(crypto::PrivateKey key, crypto::LoadKeyFile(key_path, passphrase));
      if (key.public_key() == chain[0].public_key()) {
        return CommandIdentity{chain[0], std::make_shared<crypto::PrivateKey>(std::move(key)),
                               cert_path, key_path};
      }
    }
  }
  IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(crypto::KeyType::kP256));
  IOTPKI_TRY(x509::Certificate cert,
             authority.IssueCommandCertificate(key.public_key(), "iotpki-server", "serve"));
  IOTPKI_CHECK(crypto::SaveKeyFile(key_path, key, passphrase));
  IOTPKI_CHECK(WriteFileAtomic(cert_path, cert.ToPem() + ops.ToPem()));
  log::Info("serve.command_certificate",
            {{"serial", cert.serial_hex()}, {"not_after", cert.not_after()}});
  return CommandIdentity{cert, std::make_shared<crypto::PrivateKey>(std::move(key)), cert_path,
                         key_path, true};
}

}  // namespace iotpki::ca
