#include "iotpki/x509/csr.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

struct Csr::Impl {
  // OpenSSL's parse: made by FromDer for CSRs the fast path does not read, otherwise on first
  // use by handle().
  mutable std::once_flag req_once;
  mutable ossl::UniquePtr<X509_REQ> req;
  Bytes der;
  // Fast path only: what VerifySignature checks without OpenSSL's parse.
  ByteView tbs;
  ByteView signature;
  crypto::DigestAlgorithm digest = crypto::DigestAlgorithm::kSha256;
  std::optional<crypto::PublicKey> public_key;
  std::string subject;
  std::string common_name;
  std::string serial_number;
  std::string organization;
  SubjectAltNames san;
};

namespace {

// CSRs as devices and `openssl req` make them (EC key, ECDSA signature, a subject of plain
// attributes, at most an extensionRequest) are read with the strict DER reader: OpenSSL 3.0's
// d2i_X509_REQ decodes the key through its decoder framework, which costs more than verifying
// the CSR's signature. Anything else returns false and is parsed by OpenSSL.
bool ReadFast(Csr::Impl& impl, const internal::SignedParts& parts) {
  auto alg = internal::AlgorithmFast(parts.algorithm.contents);
  if (!alg) return false;
  if (*alg == internal::kOidEcdsaSha256) {
    impl.digest = crypto::DigestAlgorithm::kSha256;
  } else if (*alg == internal::kOidEcdsaSha384) {
    impl.digest = crypto::DigestAlgorithm::kSha384;
  } else {
    return false;
  }
  der::Reader f(parts.tbs.contents);
  auto version = f.Expect(der::kInteger);
  if (!version || version->contents.size() != 1 || version->contents[0] != 0) return false;
  auto subject = f.Expect(der::kSequence);
  std::vector<NameAttribute> attributes;
  if (!subject || !internal::ReadNameFast(subject->whole, impl.subject, &attributes)) return false;
  NameFields names = internal::FirstNameFields(attributes);
  impl.common_name = std::move(names.common_name);
  impl.serial_number = std::move(names.serial_number);
  impl.organization = std::move(names.organization);
  auto spki = f.Expect(der::kSequence);
  if (!spki) return false;
  auto key = crypto::PublicKey::FromDer(spki->whole);
  if (!key || (key->type() != crypto::KeyType::kP256 && key->type() != crypto::KeyType::kP384)) {
    return false;
  }
  impl.public_key = std::move(*key);
  auto attrs = f.Expect(der::ContextConstructed(0));
  if (!attrs || !f.empty()) return false;
  der::Reader ar(attrs->contents);
  bool seen_extensions = false;
  while (!ar.empty()) {
    auto attr = ar.Expect(der::kSequence);
    if (!attr) return false;
    der::Reader a(attr->contents);
    auto oid = a.Expect(der::kOid);
    auto values = a.Expect(der::kSet);
    if (!oid || !values || !a.empty()) return false;
    // Other attributes (challengePassword, ...) go to OpenSSL.
    if (der::OidToText(oid->contents) != internal::kOidExtensionRequest || seen_extensions) {
      return false;
    }
    seen_extensions = true;
    der::Reader v(values->contents);
    auto list = v.Expect(der::kSequence);
    if (!list || !v.empty()) return false;
    der::Reader items(list->contents);
    bool seen_san = false;
    while (!items.empty()) {
      auto item = items.Expect(der::kSequence);
      if (!item) return false;
      der::Reader x(item->contents);
      auto ext_oid = x.Expect(der::kOid);
      if (!ext_oid) return false;
      if (x.PeekTag() == der::kBoolean) {
        auto b = x.Next();
        if (!b || b->contents.size() != 1 || b->contents[0] != 0xff) return false;
      }
      auto value = x.Expect(der::kOctetString);
      if (!value || !x.empty()) return false;
      std::string dotted = der::OidToText(ext_oid->contents);
      if (dotted.empty()) return false;  // malformed OID encoding: OpenSSL decides
      if (dotted != internal::kOidSubjectAltName) continue;
      if (seen_san) return false;
      seen_san = true;
      auto san = internal::GeneralNamesFast(value->contents);
      if (!san) return false;
      impl.san = std::move(*san);
    }
  }
  impl.tbs = parts.tbs.whole;
  impl.signature = parts.signature;
  return true;
}

// Requested extensions are never copied into a certificate (the profile decides every
// extension), so their contents need no more than this; but a request that is malformed is
// refused rather than half read. Both parsers go through this check.
constexpr size_t kMaxAttributesBytes = 4096;

Error MalformedRequest(const std::string& reason) {
  return Error(Code::kInvalidArgument, "malformed CSR: " + reason);
}

// The attributes of a CSR's CertificationRequestInfo: at most kMaxAttributesBytes, at most one
// extensionRequest, and no extension in it twice (RFC 5280 4.2). Framing the strict DER reader
// cannot follow is left to OpenSSL's parse (which checks again for repeated extensions).
Result<void> CheckAttributes(ByteView info) {
  der::Reader f(info);
  if (!f.Expect(der::kInteger) || !f.Expect(der::kSequence) || !f.Expect(der::kSequence)) {
    return {};
  }
  auto attrs = f.Expect(der::ContextConstructed(0));
  if (!attrs) return {};
  if (attrs->contents.size() > kMaxAttributesBytes) {
    return Fail(MalformedRequest("attributes (the extensionRequest included) too large: " +
                                 std::to_string(attrs->contents.size()) + " bytes, at most " +
                                 std::to_string(kMaxAttributesBytes)));
  }
  der::Reader ar(attrs->contents);
  bool seen_request = false;
  while (!ar.empty()) {
    auto attr = ar.Expect(der::kSequence);
    if (!attr) return {};
    der::Reader a(attr->contents);
    auto oid = a.Expect(der::kOid);
    if (!oid) return {};
    if (der::OidToText(oid->contents) != internal::kOidExtensionRequest) continue;
    if (seen_request) return Fail(MalformedRequest("more than one extensionRequest attribute"));
    seen_request = true;
    auto values = a.Expect(der::kSet);
    if (!values) return {};
    der::Reader v(values->contents);
    std::vector<Bytes> seen;
    while (!v.empty()) {
      auto list = v.Expect(der::kSequence);
      if (!list) return {};
      der::Reader items(list->contents);
      while (!items.empty()) {
        auto item = items.Expect(der::kSequence);
        if (!item) return {};
        der::Reader x(item->contents);
        auto ext_oid = x.Expect(der::kOid);
        if (!ext_oid) return {};
        Bytes id(ext_oid->contents.begin(), ext_oid->contents.end());
        if (std::find(seen.begin(), seen.end(), id) != seen.end()) {
          return Fail(MalformedRequest("extension " + der::OidToText(id) +
                                       " requested twice (RFC 5280 4.2)"));
        }
        seen.push_back(std::move(id));
      }
    }
  }
  return {};
}

// OpenSSL's view of the same rule, for requests the strict reader could not walk.
Result<void> CheckExtensions(const STACK_OF(X509_EXTENSION) * exts) {
  int n = sk_X509_EXTENSION_num(exts);
  for (int i = 0; i < n; ++i) {
    const ASN1_OBJECT* a = X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, i));
    for (int j = 0; j < i; ++j) {
      if (OBJ_cmp(a, X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, j))) == 0) {
        return Fail(MalformedRequest("extension " + internal::ObjectToOid(a) +
                                     " requested twice (RFC 5280 4.2)"));
      }
    }
  }
  return {};
}

}  // namespace

Result<Csr> Csr::FromDer(ByteView der) {
  auto impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  auto parts = internal::SplitSigned(impl->der);
  if (!parts) return Fail(Code::kInvalidArgument, "not a PKCS#10 CSR", parts.error().message());
  IOTPKI_CHECK(CheckAttributes(parts->tbs.contents));
  if (internal::g_fast_parse.load(std::memory_order_relaxed) && ReadFast(*impl, *parts)) {
    return Csr(std::move(impl));
  }
  impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  const unsigned char* p = impl->der.data();
  impl->req = ossl::Own(d2i_X509_REQ(nullptr, &p, static_cast<long>(impl->der.size())));
  if (!impl->req || p != impl->der.data() + impl->der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a PKCS#10 CSR"));
  }
  X509_REQ* req = impl->req.get();
  if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
    ossl::ClearErrors();
    return Fail(Code::kInvalidArgument, "not a PKCS#10 CSR", "unsupported version");
  }
  Bytes spki = ossl::ToDer(X509_REQ_get_X509_PUBKEY(req), i2d_X509_PUBKEY);
  // The key d2i decoded already is shared, not decoded a second time.
  auto key = crypto::PublicKey::FromParsed(X509_REQ_get0_pubkey(req), spki);
  if (!key) {
    // X509_REQ_get0_pubkey queues the decoder's complaint about a key it cannot read.
    ossl::ClearErrors();
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
    if (auto ok = CheckExtensions(exts.get()); !ok) {
      ossl::ClearErrors();
      return Fail(std::move(ok).error());
    }
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
  if (!impl_->tbs.empty()) {
    return impl_->public_key->Verify(impl_->tbs, impl_->signature, impl_->digest);
  }
  X509_REQ* req = handle();
  bool ok = req != nullptr && X509_REQ_verify(req, impl_->public_key->get()) == 1;
  ossl::ClearErrors();
  return ok;
}

const crypto::PublicKey& Csr::public_key() const { return *impl_->public_key; }
std::string Csr::subject() const { return impl_->subject; }
std::string Csr::common_name() const { return impl_->common_name; }
std::string Csr::serial_number() const { return impl_->serial_number; }
std::string Csr::organization() const { return impl_->organization; }
const SubjectAltNames& Csr::subject_alt_names() const { return impl_->san; }
X509_REQ* Csr::handle() const {
  std::call_once(impl_->req_once, [this] {
    if (impl_->req) return;
    const unsigned char* p = impl_->der.data();
    impl_->req = ossl::Own(d2i_X509_REQ(nullptr, &p, static_cast<long>(impl_->der.size())));
    ossl::ClearErrors();
  });
  return impl_->req.get();
}

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
