#include "iotpki/enroll/est.h"

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"

namespace iotpki::enroll {

Result<Bytes> CertsOnlyPkcs7(std::span<const x509::Certificate> certs) {
  auto p7 = ossl::Own(PKCS7_new());
  if (!p7 || PKCS7_set_type(p7.get(), NID_pkcs7_signed) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot build a PKCS#7 structure"));
  }
  // Degenerate SignedData: the encapsulated content is "data" with its content absent.
  p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
  for (const auto& cert : certs) {
    if (PKCS7_add_certificate(p7.get(), cert.handle()) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "cannot add a certificate to PKCS#7"));
    }
  }
  Bytes der = ossl::ToDer(p7.get(), i2d_PKCS7);
  if (der.empty()) return Fail(ossl::Drain(Code::kInternal, "cannot encode PKCS#7"));
  return der;
}

std::string EstBase64(ByteView der) {
  std::string b64 = Base64Encode(der);
  std::string out;
  out.reserve(b64.size() + b64.size() / 32 + 2);
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.append(b64, i, 64);
    out += "\n";
  }
  return out;
}

Bytes CsrAttributes() {
  static const Bytes kAttrs = [] {
    Bytes ec_key = der::Sequence({der::Oid("1.2.840.10045.2.1"),
                                  der::Constructed(der::kSet, {der::Oid("1.2.840.10045.3.1.7")})});
    return der::Sequence({der::Oid("1.2.840.10045.4.3.2"), ec_key});
  }();
  return kAttrs;
}

Result<x509::Csr> ParseEstCsr(std::string_view body) {
  auto der = Base64Decode(body);
  if (!der || der->empty()) {
    return Fail(Code::kInvalidArgument,
                "the request body is not base64 (RFC 7030 wants base64 DER)");
  }
  auto csr = x509::Csr::FromDer(*der);
  if (!csr) return Fail(std::move(csr).error());
  return csr;
}

}  // namespace iotpki::enroll
