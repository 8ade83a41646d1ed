// The EST handlers (RFC 7030): each a straight line. Certificates go out as certs-only PKCS#7,
// or in C509 when the client's Accept header asks for it (est.h, NegotiateCertFormat).
#include <algorithm>
#include <array>
#include <functional>
#include <optional>

#include "iotpki/enroll/errors.h"
#include "iotpki/enroll/est.h"
#include "iotpki/enroll/service.h"

namespace iotpki::enroll {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

constexpr std::array kCaCertsFormats = {CertFormat::kPkcs7, CertFormat::kC509Cert,
                                        CertFormat::kC509Set, CertFormat::kC509Chain};
constexpr char kCaCertsTypes[] =
    "application/pkcs7-mime, application/cose-c509-cert+cbor, application/cose-c509+cbor "
    "(with or without usage=chain)";
// An enrollment answers one certificate, or the chain it starts: never an unordered set.
constexpr std::array kEnrollFormats = {CertFormat::kPkcs7, CertFormat::kC509Cert,
                                       CertFormat::kC509Chain};
constexpr char kEnrollTypes[] =
    "application/pkcs7-mime; smime-type=certs-only, application/cose-c509-cert+cbor, "
    "application/cose-c509+cbor; usage=chain";

// The answer in the first of `formats` that can carry `certs`: the PKCS#7 form from `pkcs7`, a
// C509 form encoded here. A certificate C509 cannot represent (none of our profiles makes one)
// moves on to the client's next choice; when none is left, Unimplemented with C509's reason.
Result<server::Response> FirstEncodable(std::span<const CertFormat> formats,
                                        std::span<const x509::Certificate> certs,
                                        const std::function<Result<server::Response>()>& pkcs7) {
  std::optional<Error> refused;
  for (CertFormat format : formats) {
    if (format == CertFormat::kPkcs7) return pkcs7();
    auto body = C509Body(format, certs);
    if (body) {
      return server::Response{.status = 200,
                              .content_type = std::string(C509ContentType(format)),
                              .body = std::move(*body)};
    }
    if (!refused) refused = std::move(body).error();
  }
  if (!refused) return Fail(Code::kInternal, "no certificate format to answer in");
  return Fail(Code::kUnimplemented,
              "the certificate cannot be sent as C509 (" + refused->message() +
                  "); ask for application/pkcs7-mime",
              refused->detail());
}

server::Response Pkcs7Answer(std::string_view content_type, std::string body) {
  return {.status = 200,
          .content_type = std::string(content_type),
          .body = std::move(body),
          .headers = {{"Content-Transfer-Encoding", "base64"}}};
}

}  // namespace

server::Response EnrollService::CaCerts(const server::Request& request) {
  // No client authentication (RFC 7030 section 4.1.1): a device fetches the trust anchors here.
  if (auto label = CheckLabel(request); !label) {
    return ErrorResponse(label.error(), ErrorFormat::kEst, request);
  }
  auto formats = NegotiateCertFormat(request.accept, kCaCertsFormats);
  if (!formats) return ErrorResponse(formats.error(), ErrorFormat::kEst, request);
  if (formats->empty()) return NotAcceptable(kCaCertsTypes, ErrorFormat::kEst, request);
  // The issuing CA first (the single certificate of application/cose-c509-cert+cbor), then the
  // root: the PKCS#7 answer's order.
  std::array certs = {authority_.certificate(ca::CaName::kOperational),
                      authority_.certificate(ca::CaName::kRoot)};
  auto answer = FirstEncodable(*formats, certs, [&]() -> Result<server::Response> {
    return Pkcs7Answer(kPkcs7Mime, cacerts_body_);
  });
  if (!answer) return ErrorResponse(answer.error(), ErrorFormat::kEst, request);
  return std::move(*answer);
}

server::Response EnrollService::CsrAttrs(const server::Request& request) {
  if (auto label = CheckLabel(request); !label) {
    return ErrorResponse(label.error(), ErrorFormat::kEst, request);
  }
  return {.status = 200,
          .content_type = kCsrAttrs,
          .body = EstBase64(csrattrs_der_),
          .headers = {{"Content-Transfer-Encoding", "base64"}}};
}

server::Response EnrollService::SimpleEnroll(const server::Request& request) {
  double started = Now();
  if (!HasMediaType(request.content_type, kPkcs10)) {
    return UnsupportedMediaType(kPkcs10, ErrorFormat::kEst, request);
  }
  auto answer = [&]() -> Result<server::Response> {
    IOTPKI_CHECK(CheckLabel(request));
    IOTPKI_TRY(x509::Csr csr, ParseEstCsr(request.body));
    IOTPKI_TRY(Client client, Authenticate(request, ClientCa::kManufacturing));
    IOTPKI_CHECK(AuthorizeEnroll(client, csr));
    // What the client accepts is settled before anything is issued.
    IOTPKI_TRY(auto formats, NegotiateCertFormat(request.accept, kEnrollFormats));
    if (formats.empty()) return NotAcceptable(kEnrollTypes, ErrorFormat::kEst, request);
    IOTPKI_TRY(store::WriteBatch reentry, CheckReentry(client.device_id));
    // The CA checks the device's state (manufactured, or active for a retry), the CSR's
    // signature and that its key is new to the fleet.
    return IssueAndAnswer({.csr = csr, .device_id = client.device_id}, formats, reentry);
  }();
  return RenderEst(request, "est_simpleenroll", std::move(answer), started);
}

server::Response EnrollService::SimpleReenroll(const server::Request& request) {
  double started = Now();
  if (!HasMediaType(request.content_type, kPkcs10)) {
    return UnsupportedMediaType(kPkcs10, ErrorFormat::kEst, request);
  }
  auto answer = [&]() -> Result<server::Response> {
    IOTPKI_CHECK(CheckLabel(request));
    IOTPKI_TRY(x509::Csr csr, ParseEstCsr(request.body));
    IOTPKI_TRY(Client client, Authenticate(request, ClientCa::kOperational));
    IOTPKI_CHECK(AuthorizeReenroll(client, csr));
    IOTPKI_TRY(auto formats, NegotiateCertFormat(request.accept, kEnrollFormats));
    if (formats.empty()) return NotAcceptable(kEnrollTypes, ErrorFormat::kEst, request);
    IOTPKI_TRY(Renewal renewal, BindRenewal(client));
    // Same key: renew; new key: rekey. A working certificate that certifies the IDevID's key
    // (JSON bootstrap without TLS client authentication) may be renewed with that key.
    bool renew = csr.public_key() == client.cert.public_key();
    // The first use rides in the renewal's transaction (one fsync for a rotation's re-enrollment
    // rather than two); a renewal refused or not committed still records it.
    store::WriteBatch first = renewal.first_use;
    first.Append(renewal.replaced);
    auto issued = IssueAndAnswer(
        {.csr = csr, .device_id = client.device_id, .allow_birth_key = renew}, formats, first);
    if (!issued && !renewal.first_use.empty()) {
      if (auto used = committer_.Commit(renewal.first_use); !used) {
        // The refusal stays the answer; a lost compare-and-set means another request of the
        // device recorded the use first.
        if (used.error().code() != Code::kAborted) return Fail(std::move(used).error());
      }
    }
    return issued;
  }();
  return RenderEst(request, "est_simplereenroll", std::move(answer), started);
}

Result<server::Response> EnrollService::IssueAndAnswer(ca::IssueRequest issue,
                                                       const std::vector<CertFormat>& formats,
                                                       const store::WriteBatch& first) {
  // The answer is encoded between the signature and the commit: a certificate that cannot be
  // sent in any form the client accepts is never committed, so no issuance is lost to it.
  std::optional<server::Response> answer;
  const x509::Certificate& issuing = authority_.certificate(ca::CaName::kOperational);
  auto encode = [&](const x509::Certificate& leaf) -> Result<void> {
    auto pkcs7 = [&]() -> Result<server::Response> {
      IOTPKI_TRY(Bytes p7, CertsOnlyPkcs7(std::span(&leaf, 1)));
      return Pkcs7Answer(kCertsOnly, EstBase64(p7));
    };
    std::array certs = {leaf, issuing};
    IOTPKI_TRY(answer, FirstEncodable(formats, certs, pkcs7));
    return {};
  };
  IOTPKI_CHECK(IssueLdevid(std::move(issue), encode, first));
  return std::move(*answer);
}

}  // namespace iotpki::enroll
