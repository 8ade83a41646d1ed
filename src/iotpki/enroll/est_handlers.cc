// The EST handlers (RFC 7030): each a straight line.
#include "iotpki/enroll/errors.h"
#include "iotpki/enroll/est.h"
#include "iotpki/enroll/service.h"

namespace iotpki::enroll {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

server::Response EnrollService::CaCerts(const server::Request& request) {
  // No client authentication (RFC 7030 section 4.1.1): a device fetches the trust anchors here.
  if (auto label = CheckLabel(request); !label) {
    return ErrorResponse(label.error(), ErrorFormat::kEst, request);
  }
  return {.status = 200,
          .content_type = kPkcs7Mime,
          .body = cacerts_body_,
          .headers = {{"Content-Transfer-Encoding", "base64"}}};
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
  auto issued = [&]() -> Result<x509::Certificate> {
    IOTPKI_CHECK(CheckLabel(request));
    IOTPKI_TRY(x509::Csr csr, ParseEstCsr(request.body));
    IOTPKI_TRY(Client client, Authenticate(request, ClientCa::kManufacturing));
    IOTPKI_CHECK(AuthorizeEnroll(client, csr));
    // The CA checks the device's state (manufactured, or active for a retry), the CSR's
    // signature and that its key is new to the fleet.
    return IssueLdevid({.csr = csr, .device_id = client.device_id});
  }();
  return RenderEst(request, "est_simpleenroll", issued, started);
}

server::Response EnrollService::SimpleReenroll(const server::Request& request) {
  double started = Now();
  if (!HasMediaType(request.content_type, kPkcs10)) {
    return UnsupportedMediaType(kPkcs10, ErrorFormat::kEst, request);
  }
  auto issued = [&]() -> Result<x509::Certificate> {
    IOTPKI_CHECK(CheckLabel(request));
    IOTPKI_TRY(x509::Csr csr, ParseEstCsr(request.body));
    IOTPKI_TRY(Client client, Authenticate(request, ClientCa::kOperational));
    IOTPKI_CHECK(AuthorizeReenroll(client, csr));
    // Same key: renew; new key: rekey. A working certificate that certifies the IDevID's key
    // (JSON bootstrap without TLS client authentication) may be renewed with that key.
    bool renew = csr.public_key() == client.cert.public_key();
    return IssueLdevid({.csr = csr, .device_id = client.device_id, .allow_birth_key = renew});
  }();
  return RenderEst(request, "est_simplereenroll", issued, started);
}

}  // namespace iotpki::enroll
