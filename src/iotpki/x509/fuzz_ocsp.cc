// libFuzzer target: the OCSP request parser (ParseOcspRequest), which reads what any client on
// the network sends to POST /ocsp. Beyond "no crash, no sanitizer report", it aborts when an
// accepted request breaks a bound the responder relies on.
#include <cstdint>
#include <cstdlib>

#include "iotpki/x509/ocsp.h"

namespace x509 = iotpki::x509;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto request = x509::ParseOcspRequest(iotpki::ByteView(data, size));
  // The DER reader's fast path must agree with OpenSSL's decoder: same verdict, same fields.
  auto reference = x509::ParseOcspRequestWithOpenSsl(iotpki::ByteView(data, size));
  if (request.has_value() != reference.has_value()) std::abort();
  if (!request) return 0;
  if (request->nonce != reference->nonce ||
      request->cert_ids.size() != reference->cert_ids.size()) {
    std::abort();
  }
  for (size_t i = 0; i < request->cert_ids.size(); ++i) {
    const auto &a = request->cert_ids[i], &b = reference->cert_ids[i];
    if (a.hash != b.hash || a.issuer_name_hash != b.issuer_name_hash ||
        a.issuer_key_hash != b.issuer_key_hash || a.serial != b.serial || a.der != b.der) {
      std::abort();
    }
  }
  if (request->cert_ids.empty() || request->cert_ids.size() > x509::kMaxOcspCertIds) std::abort();
  for (const auto& id : request->cert_ids) {
    if (id.serial.empty() || id.serial.size() > 20 || id.der.empty()) std::abort();
    if (id.issuer_name_hash.size() != id.issuer_key_hash.size()) std::abort();
  }
  if (request->nonce &&
      (request->nonce->empty() || request->nonce->size() > x509::kMaxOcspNonceBytes)) {
    std::abort();
  }
  return 0;
}
