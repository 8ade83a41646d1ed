#include "iotpki/x509/certificate.h"

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

struct Certificate::Impl {
  ossl::UniquePtr<X509> x509;
  Bytes der;
  // Views into `der`, which never moves once the Impl is built.
  ByteView tbs;
  ByteView subject_der;
  ByteView issuer_der;
  ByteView signature;
  Bytes serial;
  std::string subject;
  std::string issuer;
  std::string common_name;
  std::string serial_number;
  std::string organization;
  int64_t not_before = 0;
  int64_t not_after = 0;
  std::optional<crypto::PublicKey> public_key;
  bool is_ca = false;
  std::optional<int> path_len;
  std::optional<uint16_t> key_usage;
  std::vector<std::string> extended_key_usage;
  Bytes subject_key_id;
  Bytes authority_key_id;
  SubjectAltNames san;
  std::vector<Extension> extensions;
  std::string signature_algorithm;
};

namespace {

Error NotACertificate(std::string detail) {
  return Error(Code::kInvalidArgument, "not an X.509 certificate", std::move(detail));
}

// Reads the parts of the TBSCertificate that must be byte-exact (names, serial) with the strict
// reader: OpenSSL would hand back a re-encoding for some of them.
Result<void> ReadTbs(Certificate::Impl& impl) {
  der::Reader r(impl.tbs);
  IOTPKI_TRY(der::Element tbs, r.Expect(der::kSequence));
  der::Reader f(tbs.contents);
  IOTPKI_CHECK(f.Optional(der::ContextConstructed(0)));
  IOTPKI_TRY(der::Element serial, f.Expect(der::kInteger));
  if (serial.contents.empty() || (serial.contents[0] & 0x80)) {
    return Fail(Code::kInvalidArgument, "certificate serial number is negative");
  }
  impl.serial = internal::IntegerMagnitude(serial.contents);
  IOTPKI_CHECK(f.Expect(der::kSequence));  // signature
  IOTPKI_TRY(der::Element issuer, f.Expect(der::kSequence));
  IOTPKI_CHECK(f.Expect(der::kSequence));  // validity
  IOTPKI_TRY(der::Element subject, f.Expect(der::kSequence));
  impl.issuer_der = issuer.whole;
  impl.subject_der = subject.whole;
  return {};
}

void ReadExtensions(Certificate::Impl& impl) {
  X509* x = impl.x509.get();
  for (int i = 0; i < X509_get_ext_count(x); ++i) {
    X509_EXTENSION* ext = X509_get_ext(x, i);
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
    const uint8_t* p = ASN1_STRING_get0_data(data);
    impl.extensions.push_back({internal::ObjectToOid(X509_EXTENSION_get_object(ext)),
                               X509_EXTENSION_get_critical(ext) > 0,
                               Bytes(p, p + ASN1_STRING_length(data))});
  }
  // X509_get_ext_d2i returns null for an absent, duplicated or undecodable extension; the lints
  // and chain verification judge those cases, the accessors just report "absent".
  if (auto bc = ossl::Own(static_cast<BASIC_CONSTRAINTS*>(
          X509_get_ext_d2i(x, NID_basic_constraints, nullptr, nullptr)))) {
    impl.is_ca = bc->ca != 0;
    if (impl.is_ca && bc->pathlen != nullptr) {
      long v = ASN1_INTEGER_get(bc->pathlen);
      if (v >= 0 && v <= 255) impl.path_len = static_cast<int>(v);
    }
  }
  if (auto ku = ossl::Own(
          static_cast<ASN1_BIT_STRING*>(X509_get_ext_d2i(x, NID_key_usage, nullptr, nullptr)))) {
    uint16_t bits = 0;
    for (int i = 0; i < 9; ++i) {
      if (ASN1_BIT_STRING_get_bit(ku.get(), i)) bits |= static_cast<uint16_t>(1u << i);
    }
    impl.key_usage = bits;
  }
  if (auto eku = ossl::Own(static_cast<EXTENDED_KEY_USAGE*>(
          X509_get_ext_d2i(x, NID_ext_key_usage, nullptr, nullptr)))) {
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
      std::string oid = internal::ObjectToOid(sk_ASN1_OBJECT_value(eku.get(), i));
      if (oid == internal::kOidClientAuth) oid = "clientAuth";
      if (oid == internal::kOidServerAuth) oid = "serverAuth";
      impl.extended_key_usage.push_back(std::move(oid));
    }
  }
  if (auto ski = ossl::Own(static_cast<ASN1_OCTET_STRING*>(
          X509_get_ext_d2i(x, NID_subject_key_identifier, nullptr, nullptr)))) {
    const uint8_t* p = ASN1_STRING_get0_data(ski.get());
    impl.subject_key_id.assign(p, p + ASN1_STRING_length(ski.get()));
  }
  if (auto aki = ossl::Own(static_cast<AUTHORITY_KEYID*>(
          X509_get_ext_d2i(x, NID_authority_key_identifier, nullptr, nullptr)))) {
    if (aki->keyid != nullptr) {
      const uint8_t* p = ASN1_STRING_get0_data(aki->keyid);
      impl.authority_key_id.assign(p, p + ASN1_STRING_length(aki->keyid));
    }
  }
  if (auto san = ossl::Own(static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)))) {
    impl.san = internal::DecodeGeneralNames(san.get());
  }
  ossl::ClearErrors();
}

}  // namespace

Result<Certificate> Certificate::FromDer(ByteView der) {
  auto impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  auto parts = internal::SplitSigned(impl->der);
  if (!parts) return Fail(NotACertificate(parts.error().message()));
  impl->tbs = parts->tbs.whole;
  impl->signature = parts->signature;

  const unsigned char* p = impl->der.data();
  impl->x509 = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(impl->der.size())));
  if (!impl->x509 || p != impl->der.data() + impl->der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not an X.509 certificate"));
  }
  X509* x = impl->x509.get();
  if (auto tbs = ReadTbs(*impl); !tbs) return Fail(NotACertificate(tbs.error().message()));

  const X509_NAME* subject = X509_get_subject_name(x);
  const X509_NAME* issuer = X509_get_issuer_name(x);
  impl->subject = internal::NameToText(subject);
  impl->issuer = internal::NameToText(issuer);
  impl->common_name = internal::NameAttribute(subject, NID_commonName);
  impl->serial_number = internal::NameAttribute(subject, NID_serialNumber);
  impl->organization = internal::NameAttribute(subject, NID_organizationName);

  auto not_before = internal::TimeToUnix(X509_get0_notBefore(x));
  auto not_after = internal::TimeToUnix(X509_get0_notAfter(x));
  if (!not_before || !not_after) {
    return Fail(
        NotACertificate("validity: " + (!not_before ? not_before : not_after).error().message()));
  }
  impl->not_before = *not_before;
  impl->not_after = *not_after;

  Bytes spki = ossl::ToDer(X509_get_X509_PUBKEY(x), i2d_X509_PUBKEY);
  // The key d2i decoded already is shared, not decoded a second time.
  auto key = crypto::PublicKey::FromParsed(X509_get0_pubkey(x), spki);
  if (!key) {
    return Fail(Code::kInvalidArgument, "certificate public key is not supported",
                key.error().ToString());
  }
  impl->public_key = std::move(*key);

  const X509_ALGOR* alg = nullptr;
  X509_get0_signature(nullptr, &alg, x);
  const ASN1_OBJECT* alg_oid = nullptr;
  X509_ALGOR_get0(&alg_oid, nullptr, nullptr, alg);
  impl->signature_algorithm = internal::ObjectToOid(alg_oid);

  ReadExtensions(*impl);
  return Certificate(std::move(impl));
}

Result<Certificate> Certificate::FromPem(std::string_view pem) {
  IOTPKI_TRY(Bytes der, ossl::PemDecode(pem, "CERTIFICATE"));
  return FromDer(der);
}

Result<std::vector<Certificate>> Certificate::ChainFromPem(std::string_view pem) {
  static constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  std::vector<Certificate> out;
  size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != std::string_view::npos) {
    auto cert = FromPem(pem.substr(pos));
    if (!cert) {
      return Fail(std::move(cert).error().Context("certificate " + std::to_string(out.size() + 1)));
    }
    out.push_back(std::move(*cert));
    pos += kBegin.size();
  }
  if (out.empty()) return Fail(Code::kInvalidArgument, "no CERTIFICATE block in the PEM text");
  return out;
}

const Bytes& Certificate::ToDer() const { return impl_->der; }
std::string Certificate::ToPem() const { return ossl::PemEncode("CERTIFICATE", impl_->der); }
const Bytes& Certificate::serial() const { return impl_->serial; }
std::string Certificate::serial_hex() const { return ToHex(impl_->serial); }
std::string Certificate::subject() const { return impl_->subject; }
std::string Certificate::issuer() const { return impl_->issuer; }
ByteView Certificate::subject_der() const { return impl_->subject_der; }
ByteView Certificate::issuer_der() const { return impl_->issuer_der; }
std::string Certificate::common_name() const { return impl_->common_name; }
std::string Certificate::serial_number() const { return impl_->serial_number; }
std::string Certificate::organization() const { return impl_->organization; }
int64_t Certificate::not_before() const { return impl_->not_before; }
int64_t Certificate::not_after() const { return impl_->not_after; }
const crypto::PublicKey& Certificate::public_key() const { return *impl_->public_key; }
bool Certificate::is_ca() const { return impl_->is_ca; }
std::optional<int> Certificate::path_len() const { return impl_->path_len; }
std::optional<uint16_t> Certificate::key_usage() const { return impl_->key_usage; }
std::vector<std::string> Certificate::extended_key_usage() const {
  return impl_->extended_key_usage;
}
const Bytes& Certificate::subject_key_id() const { return impl_->subject_key_id; }
const Bytes& Certificate::authority_key_id() const { return impl_->authority_key_id; }
const SubjectAltNames& Certificate::subject_alt_names() const { return impl_->san; }

std::optional<HardwareModuleName> Certificate::hardware_module_name() const {
  if (impl_->san.hardware_module_names.empty()) return std::nullopt;
  return impl_->san.hardware_module_names.front();
}

const std::vector<Extension>& Certificate::extensions() const { return impl_->extensions; }

const Extension* Certificate::FindExtension(std::string_view oid) const {
  for (const auto& ext : impl_->extensions) {
    if (ext.oid == oid) return &ext;
  }
  return nullptr;
}

const std::string& Certificate::signature_algorithm() const { return impl_->signature_algorithm; }
ByteView Certificate::tbs_der() const { return impl_->tbs; }
ByteView Certificate::signature() const { return impl_->signature; }
std::string Certificate::fingerprint_sha256() const { return ToHex(crypto::Sha256(impl_->der)); }

bool Certificate::IsSignedBy(const crypto::PublicKey& key) const {
  bool ok = X509_verify(impl_->x509.get(), key.get()) == 1;
  ossl::ClearErrors();
  return ok;
}

X509* Certificate::handle() const { return impl_->x509.get(); }

}  // namespace iotpki::x509
