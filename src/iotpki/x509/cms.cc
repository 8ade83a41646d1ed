#include "iotpki/x509/cms.h"

#include <openssl/cms.h>

#include "iotpki/crypto/ossl.h"

namespace iotpki::x509 {

Result<Bytes> SealToCertificate(ByteView content, const Certificate& recipient) {
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
  if (CMS_final(cms.get(), in.get(), nullptr, CMS_BINARY) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot seal the CMS envelope"));
  }
  Bytes der = ossl::ToDer(cms.get(), i2d_CMS_ContentInfo);
  if (der.empty()) return Fail(ossl::Drain(Code::kInternal, "cannot encode the CMS envelope"));
  return der;
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
