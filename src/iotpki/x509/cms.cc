#include "iotpki/x509/cms.h"

#include <openssl/cms.h>

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

namespace {

constexpr char kOidKeyPackage[] = "2.16.840.1.101.2.1.2.78.5";  // id-ct-KP-aKeyPackage
constexpr char kOidSignedData[] = "1.2.840.113549.1.7.2";

// id-ct-KP-aKeyPackage as an OpenSSL object, made once and kept for the process: OpenSSL has no
// NID for it, and CMS_set1_eContentType copies what it is given.
const ASN1_OBJECT* KeyPackageType() {
  static const ASN1_OBJECT* const type = OBJ_txt2obj(kOidKeyPackage, 1);
  return type;
}

// The EnvelopedData of SealToCertificate; `content_type`, if not null, replaces id-data.
Result<Bytes> Seal(ByteView content, const Certificate& recipient, const ASN1_OBJECT* content_type);

}  // namespace

Result<Bytes> SealToCertificate(ByteView content, const Certificate& recipient) {
  return Seal(content, recipient, nullptr);
}

namespace {

Result<Bytes> Seal(ByteView content, const Certificate& recipient,
                   const ASN1_OBJECT* content_type) {
  if (recipient.public_key().type() != crypto::KeyType::kP256) {
    return Fail(Code::kFailedPrecondition,
                "a key can be sealed only to a P-256 certificate; this one holds " +
                    recipient.public_key().Describe());
  }
  auto in = ossl::Own(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
  auto cms = ossl::Own(CMS_encrypt(nullptr, nullptr, EVP_aes_256_cbc(), CMS_BINARY | CMS_PARTIAL));
  if (!in || !cms) return Fail(ossl::Drain(Code::kInternal, "cannot start the CMS envelope"));
  // CMS_KEY_PARAM leaves the recipient's key-agreement context open, so the KDF digest can be
  // set: OpenSSL's default for ECDH recipients is the SHA-1 X9.63 KDF.
  CMS_RecipientInfo* ri =
      CMS_add1_recipient_cert(cms.get(), recipient.handle(), CMS_BINARY | CMS_KEY_PARAM);
  if (ri == nullptr || CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_AGREE) {
    return Fail(ossl::Drain(Code::kInternal, "cannot add the CMS recipient"));
  }
  EVP_PKEY_CTX* pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
  if (pctx == nullptr || EVP_PKEY_CTX_set_ecdh_kdf_md(pctx, EVP_sha256()) <= 0) {
    return Fail(ossl::Drain(Code::kInternal, "cannot set the CMS key-agreement KDF"));
  }
  if (content_type != nullptr) {
    if (CMS_set1_eContentType(cms.get(), content_type) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "cannot set the CMS envelope's content type"));
    }
  }
  if (CMS_final(cms.get(), in.get(), nullptr, CMS_BINARY) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot seal the CMS envelope"));
  }
  Bytes der = ossl::ToDer(cms.get(), i2d_CMS_ContentInfo);
  if (der.empty()) return Fail(ossl::Drain(Code::kInternal, "cannot encode the CMS envelope"));
  return der;
}

// ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }.
Bytes WrapContentInfo(std::string_view oid, ByteView content) {
  return der::Sequence({der::Oid(oid), der::Constructed(der::ContextConstructed(0), {content})});
}

}  // namespace

Result<Bytes> SealKeyPackage(ByteView pkcs8, const crypto::Signer& signer,
                             std::span<const Certificate> signer_chain,
                             const Certificate& recipient) {
  EVP_PKEY* pkey = crypto::OpenSslHandle(signer);
  if (pkey == nullptr) {
    return Fail(Code::kFailedPrecondition, "the key package's signer is not reachable by OpenSSL");
  }
  if (signer_chain.empty() || !(signer_chain[0].public_key() == signer.public_key())) {
    return Fail(Code::kInvalidArgument, "the key package's signer certificate is not the signer's");
  }
  // AsymmetricKeyPackage ::= SEQUENCE SIZE (1..MAX) OF OneAsymmetricKey.
  crypto::Secret package(der::Tlv(der::kSequence, pkcs8));
  auto in =
      ossl::Own(BIO_new_mem_buf(package.bytes().data(), static_cast<int>(package.bytes().size())));
  auto extra = ossl::Own(sk_X509_new_null());
  if (!in || !extra) return Fail(ossl::Drain(Code::kInternal, "out of memory"));
  for (size_t i = 1; i < signer_chain.size(); ++i) {
    // Borrowed: the stack is freed without its elements; CMS_sign takes its own references.
    if (sk_X509_push(extra.get(), signer_chain[i].handle()) <= 0) {
      return Fail(ossl::Drain(Code::kInternal, "out of memory"));
    }
  }
  auto cms = ossl::Own(CMS_sign(signer_chain[0].handle(), pkey, extra.get(), nullptr,
                                CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP));
  if (!cms || KeyPackageType() == nullptr ||
      CMS_set1_eContentType(cms.get(), KeyPackageType()) != 1 ||
      CMS_final(cms.get(), in.get(), nullptr, CMS_BINARY) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot sign the key package"));
  }
  crypto::Secret info(ossl::ToDer(cms.get(), i2d_CMS_ContentInfo));
  // The SignedData itself: the content of its ContentInfo.
  der::Reader outer(info.bytes());
  IOTPKI_TRY(der::Element seq, outer.Expect(der::kSequence));
  der::Reader fields(seq.contents);
  IOTPKI_CHECK(fields.Expect(der::kOid));
  IOTPKI_TRY(der::Element explicit_content, fields.Expect(der::ContextConstructed(0)));
  return Seal(explicit_content.contents, recipient, OBJ_nid2obj(NID_pkcs7_signed));
}

Result<OpenedKeyPackage> OpenKeyPackage(ByteView enveloped_der, const crypto::Signer& key,
                                        const Certificate& recipient) {
  {
    const unsigned char* p = enveloped_der.data();
    auto envelope =
        ossl::Own(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(enveloped_der.size())));
    const ASN1_OBJECT* inner = envelope ? CMS_get0_eContentType(envelope.get()) : nullptr;
    ossl::ClearErrors();
    if (inner != nullptr && OBJ_obj2nid(inner) != NID_pkcs7_signed &&
        OBJ_obj2nid(CMS_get0_type(envelope.get())) == NID_pkcs7_enveloped) {
      return Fail(Code::kDataLoss,
                  "the envelope holds no SignedData (RFC 7030 4.4.2 signs the key, then seals it)");
    }
  }
  IOTPKI_TRY(crypto::Secret signed_data, OpenSealed(enveloped_der, key, recipient));
  crypto::Secret info(WrapContentInfo(kOidSignedData, signed_data.bytes()));
  const unsigned char* p = info.bytes().data();
  auto cms = ossl::Own(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(info.bytes().size())));
  if (!cms || OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_signed) {
    ossl::ClearErrors();
    return Fail(Code::kDataLoss, "the sealed content is not a CMS SignedData");
  }
  const ASN1_OBJECT* type = CMS_get0_eContentType(cms.get());
  if (type == nullptr || internal::ObjectToOid(type) != kOidKeyPackage) {
    ossl::ClearErrors();
    return Fail(Code::kDataLoss, "the SignedData does not hold an asymmetric key package");
  }
  auto out = ossl::Own(BIO_new(BIO_s_secmem()));
  if (!out) out = ossl::Own(BIO_new(BIO_s_mem()));
  if (!out) return Fail(ossl::Drain(Code::kInternal, "out of memory"));
  // The signer's chain is the caller's to judge; here only the signature over the package.
  if (CMS_verify(cms.get(), nullptr, nullptr, nullptr, out.get(),
                 CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
    return Fail(ossl::Drain(Code::kDataLoss, "the key package's signature does not verify"));
  }
  auto signers = ossl::Own(CMS_get0_signers(cms.get()));
  if (!signers || sk_X509_num(signers.get()) != 1) {
    ossl::ClearErrors();
    return Fail(Code::kDataLoss, "the key package has not exactly one signer");
  }
  IOTPKI_TRY(Certificate signer,
             Certificate::FromDer(ossl::ToDer(sk_X509_value(signers.get(), 0), i2d_X509)));
  std::vector<Certificate> certificates;
  STACK_OF(X509)* all = CMS_get1_certs(cms.get());
  for (int i = 0; all != nullptr && i < sk_X509_num(all); ++i) {
    if (auto c = Certificate::FromDer(ossl::ToDer(sk_X509_value(all, i), i2d_X509))) {
      certificates.push_back(std::move(*c));
    }
  }
  sk_X509_pop_free(all, X509_free);
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  if (len < 0) return Fail(Code::kInternal, "cannot read the key package");
  crypto::Secret package = crypto::Secret::CopyOf(
      ByteView(reinterpret_cast<const unsigned char*>(data), static_cast<size_t>(len)));
  OPENSSL_cleanse(data, static_cast<size_t>(len));
  der::Reader r(package.bytes());
  auto seq = r.Expect(der::kSequence);
  if (!seq || !r.empty()) return Fail(Code::kDataLoss, "the key package is not a SEQUENCE");
  der::Reader keys(seq->contents);
  auto one = keys.Expect(der::kSequence);
  if (!one || !keys.empty()) {
    return Fail(Code::kDataLoss, "the key package does not hold exactly one key");
  }
  return OpenedKeyPackage{crypto::Secret::CopyOf(one->whole), std::move(signer),
                          std::move(certificates)};
}

Result<crypto::Secret> OpenSealed(ByteView enveloped_der, const crypto::Signer& key,
                                  const Certificate& recipient) {
  const unsigned char* p = enveloped_der.data();
  auto cms = ossl::Own(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(enveloped_der.size())));
  if (!cms || p != enveloped_der.data() + enveloped_der.size()) {
    ossl::ClearErrors();
    return Fail(Code::kDataLoss, "not a CMS structure");
  }
  if (OBJ_obj2nid(CMS_get0_type(cms.get())) != NID_pkcs7_enveloped) {
    return Fail(Code::kDataLoss, "not a CMS EnvelopedData");
  }
  // CMS_decrypt needs an OpenSSL key (crypto::OpenSslKey); a token key has none.
  EVP_PKEY* pkey = crypto::OpenSslHandle(key);
  if (pkey == nullptr) {
    return Fail(Code::kFailedPrecondition, "the recipient key is not reachable by OpenSSL");
  }
  auto out = ossl::Own(BIO_new(BIO_s_secmem()));
  if (!out) out = ossl::Own(BIO_new(BIO_s_mem()));
  if (!out) return Fail(ossl::Drain(Code::kInternal, "out of memory"));
  if (CMS_decrypt(cms.get(), pkey, recipient.handle(), nullptr, out.get(), CMS_BINARY) != 1) {
    return Fail(ossl::Drain(Code::kDataLoss,
                            "the CMS envelope does not open with this key and certificate"));
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  if (len < 0) return Fail(Code::kInternal, "cannot read the opened envelope");
  crypto::Secret plain = crypto::Secret::CopyOf(
      ByteView(reinterpret_cast<const unsigned char*>(data), static_cast<size_t>(len)));
  OPENSSL_cleanse(data, static_cast<size_t>(len));
  return plain;
}

}  // namespace iotpki::x509
