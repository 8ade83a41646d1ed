#include "iotpki/x509/csr.h"

#include <optional>

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

struct Csr::Impl {
  ossl::UniquePtr<X509_REQ> req;
  Bytes der;
  std::optional<crypto::PublicKey> public_key;
  std::string subject;
  std::string common_name;
  std::string serial_number;
  std::string organization;
  SubjectAltNames san;
};

Result<Csr> Csr::FromDer(ByteView der) {
  auto impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  if (auto parts = internal::SplitSigned(impl->der); !parts) {
    return Fail(Code::kInvalidArgument, "not a PKCS#10 CSR", parts.error().message());
  }
  const unsigned char* p = impl->der.data();
  impl->req = ossl::Own(d2i_X509_REQ(nullptr, &p, static_cast<long>(impl->der.size())));
  if (!impl->req || p != impl->der.data() + impl->der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a PKCS#10 CSR"));
  }
  X509_REQ* req = impl->req.get();
  if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
    return Fail(Code::kInvalidArgument, "not a PKCS#10 CSR", "unsupported version");
  }
  Bytes spki = ossl::ToDer(X509_REQ_get_X509_PUBKEY(req), i2d_X509_PUBKEY);
  // The key d2i decoded already is shared, not decoded a second time.
  auto key = crypto::PublicKey::FromParsed(X509_REQ_get0_pubkey(req), spki);
  if (!key) {
    return Fail(Code::kInvalidArgument, "CSR public key is not supported", key.error().ToString());
  }
  impl->public_key = std::move(*key);

  const X509_NAME* subject = X509_REQ_get_subject_name(req);
  impl->subject = internal::NameToText(subject);
  impl->common_name = internal::NameAttribute(subject, NID_commonName);
  impl->serial_number = internal::NameAttribute(subject, NID_serialNumber);
  impl->organization = internal::NameAttribute(subject, NID_organizationName);

  // X509_REQ_get_extensions returns an empty stack or null when there is no extensionRequest.
  auto exts = ossl::Own(X509_REQ_get_extensions(req));
  if (exts) {
    int crit = -1;
    auto names = ossl::Own(static_cast<GENERAL_NAMES*>(
        X509V3_get_d2i(exts.get(), NID_subject_alt_name, &crit, nullptr)));
    if (!names && crit != -1) {
      return Fail(Code::kInvalidArgument, "CSR subjectAltName is malformed or repeated");
    }
    impl->san = internal::DecodeGeneralNames(names.get());
  }
  ossl::ClearErrors();
  return Csr(std::move(impl));
}

Result<Csr> Csr::FromPem(std::string_view pem) {
  auto der = ossl::PemDecode(pem, "CERTIFICATE REQUEST");
  if (!der) der = ossl::PemDecode(pem, "NEW CERTIFICATE REQUEST");
  if (!der)
    return Fail(Code::kInvalidArgument, "not a PKCS#10 CSR", "no CERTIFICATE REQUEST block");
  return FromDer(*der);
}

const Bytes& Csr::ToDer() const { return impl_->der; }
std::string Csr::ToPem() const { return ossl::PemEncode("CERTIFICATE REQUEST", impl_->der); }

bool Csr::VerifySignature() const {
  bool ok = X509_REQ_verify(impl_->req.get(), impl_->public_key->get()) == 1;
  ossl::ClearErrors();
  return ok;
}

const crypto::PublicKey& Csr::public_key() const { return *impl_->public_key; }
std::string Csr::subject() const { return impl_->subject; }
std::string Csr::common_name() const { return impl_->common_name; }
std::string Csr::serial_number() const { return impl_->serial_number; }
std::string Csr::organization() const { return impl_->organization; }
const SubjectAltNames& Csr::subject_alt_names() const { return impl_->san; }
X509_REQ* Csr::handle() const { return impl_->req.get(); }

Result<Csr> MakeCsr(const crypto::Signer& key, const NameFields& subject,
                    const SubjectAltNames& san) {
  Bytes attributes;
  if (!san.empty()) {
    IOTPKI_TRY(Bytes names, internal::EncodeGeneralNames(san));
    Bytes extensions =
        der::Sequence({internal::EncodeExtension(internal::kOidSubjectAltName, false, names)});
    attributes = der::Sequence(
        {der::Oid(internal::kOidExtensionRequest), der::Constructed(der::kSet, {extensions})});
  }
  Bytes info =
      der::Sequence({der::SmallInteger(0), internal::EncodeName(subject), key.public_key().ToDer(),
                     der::Tlv(der::ContextConstructed(0), attributes)});
  IOTPKI_TRY(Bytes algorithm, internal::SignatureAlgorithm(key));
  IOTPKI_TRY(Bytes der, internal::SignAndAssemble(info, algorithm, key));
  return Csr::FromDer(der);
}

}  // namespace iotpki::x509
