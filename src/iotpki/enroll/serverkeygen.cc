// EST serverkeygen (RFC 7030 section 4.4), for devices without a good random source: the server
// generates the working key, issues the LDevID for it under the same rules as simpleenroll, and
// returns the key, signed by this server and sealed to the device's IDevID (RFC 7030 4.4.2: an
// AsymmetricKeyPackage in a SignedData in an EnvelopedData, x509/cms.h), with the certificate. The
// server keeps no copy: the key lives in this request's memory only, is never logged, and its
// PKCS#8 encoding is wiped once sealed.
#include <chrono>
#include <optional>
#include <span>

#include "iotpki/crypto/secret.h"
#include "iotpki/enroll/errors.h"
#include "iotpki/enroll/est.h"
#include "iotpki/enroll/service.h"
#include "iotpki/x509/cms.h"

namespace iotpki::enroll {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

Result<void> EnrollService::AuthorizeServerKeygen(const Client& client,
                                                  const x509::Csr& csr) const {
  // RFC 7030 4.4.1: the request is a CSR as for simpleenroll, whose key the server ignores. Its
  // signature must still hold, so a corrupted request is refused rather than half-read.
  if (!csr.VerifySignature()) {
    return Fail(Code::kInvalidArgument, "the CSR's signature does not verify");
  }
  // The key goes back sealed to the IDevID's key by ECDH on P-256 (x509::SealToCertificate).
  if (client.cert.public_key().type() != crypto::KeyType::kP256) {
    return Fail(Code::kFailedPrecondition,
                "serverkeygen seals the key to the IDevID's P-256 key, and this IDevID holds a " +
                    client.cert.public_key().Describe() +
                    " key; generate a key on the device and use simpleenroll");
  }
  return CheckCsrSubject(csr, client.device_id, client.cert.serial_number());
}

void EnrollService::SetKeyPackageSigner(const crypto::Signer* key,
                                        std::vector<x509::Certificate> chain) {
  key_package_signer_ = key;
  key_package_chain_ = std::move(chain);
}

server::Response EnrollService::ServerKeygen(const server::Request& request) {
  double started = Now();
  if (!HasMediaType(request.content_type, kPkcs10)) {
    return UnsupportedMediaType(kPkcs10, ErrorFormat::kEst, request);
  }
  auto answer = [&]() -> Result<server::Response> {
    IOTPKI_CHECK(CheckLabel(request));
    if (key_package_signer_ == nullptr) {
      return Fail(Code::kUnavailable, "serverkeygen is not available on this server");
    }
    IOTPKI_TRY(x509::Csr request_csr, ParseEstCsr(request.body));
    IOTPKI_TRY(Client client, Authenticate(request, ClientCa::kManufacturing));
    IOTPKI_CHECK(AuthorizeServerKeygen(client, request_csr));
    IOTPKI_TRY(store::WriteBatch reentry, CheckReentry(client.device_id));

    IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(crypto::KeyType::kP256));
    // The CA's one sign path takes a CSR: the server's own, signed with the new key, naming the
    // device as the IDevID does (the CA checks the identity against the device's record anyway).
    x509::NameFields subject{.organization = client.cert.organization(),
                             .common_name = client.device_id,
                             .serial_number = client.cert.serial_number()};
    IOTPKI_TRY(x509::Csr csr, x509::MakeCsr(key, subject, request_csr.subject_alt_names()));

    // Sealed and encoded between the signature and the commit: a key that cannot be handed over
    // leaves no issued certificate behind.
    std::optional<server::Response> response;
    auto seal = [&](const x509::Certificate& leaf) -> Result<void> {
      IOTPKI_TRY(Bytes pkcs8, key.ToDer());
      crypto::Secret plain(std::move(pkcs8));
      IOTPKI_TRY(Bytes sealed, x509::SealKeyPackage(plain.bytes(), *key_package_signer_,
                                                    key_package_chain_, client.cert));
      IOTPKI_TRY(Bytes p7, CertsOnlyPkcs7(std::span(&leaf, 1)));
      response = server::Response{
          .status = 200, .content_type = kServerKeygenType, .body = ServerKeygenBody(sealed, p7)};
      return {};
    };
    IOTPKI_CHECK(IssueLdevid(
        {.csr = csr, .device_id = client.device_id, .key_origin = store::KeyOrigin::kGenerated},
        seal, reentry));
    return std::move(*response);
  }();
  return RenderEst(request, "est_serverkeygen", std::move(answer), started);
}

}  // namespace iotpki::enroll
