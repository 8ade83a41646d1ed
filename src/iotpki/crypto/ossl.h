// Internal to the library: OpenSSL handles owned by one UniquePtr alias, and the one place where
// OpenSSL's error queue is drained. Headers that do not need OpenSSL types must not include this.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ocsp.h>
#include <openssl/param_build.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki::ossl {

template <class T>
struct Deleter;

#define IOTPKI_OSSL_DELETER(type, free_fn)         \
  template <>                                      \
  struct Deleter<type> {                           \
    void operator()(type* p) const { free_fn(p); } \
  }

IOTPKI_OSSL_DELETER(BIO, BIO_free_all);
IOTPKI_OSSL_DELETER(BIGNUM, BN_free);
IOTPKI_OSSL_DELETER(BN_CTX, BN_CTX_free);
IOTPKI_OSSL_DELETER(EC_GROUP, EC_GROUP_free);
IOTPKI_OSSL_DELETER(EC_POINT, EC_POINT_free);
IOTPKI_OSSL_DELETER(ECDSA_SIG, ECDSA_SIG_free);
IOTPKI_OSSL_DELETER(EVP_PKEY, EVP_PKEY_free);
IOTPKI_OSSL_DELETER(EVP_PKEY_CTX, EVP_PKEY_CTX_free);
IOTPKI_OSSL_DELETER(EVP_MD_CTX, EVP_MD_CTX_free);
IOTPKI_OSSL_DELETER(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free);
IOTPKI_OSSL_DELETER(EVP_MAC, EVP_MAC_free);
IOTPKI_OSSL_DELETER(EVP_MAC_CTX, EVP_MAC_CTX_free);
IOTPKI_OSSL_DELETER(EVP_KDF, EVP_KDF_free);
IOTPKI_OSSL_DELETER(EVP_KDF_CTX, EVP_KDF_CTX_free);
IOTPKI_OSSL_DELETER(X509, X509_free);
IOTPKI_OSSL_DELETER(X509_REQ, X509_REQ_free);
IOTPKI_OSSL_DELETER(X509_CRL, X509_CRL_free);
IOTPKI_OSSL_DELETER(X509_STORE, X509_STORE_free);
IOTPKI_OSSL_DELETER(X509_STORE_CTX, X509_STORE_CTX_free);
IOTPKI_OSSL_DELETER(X509_NAME, X509_NAME_free);
IOTPKI_OSSL_DELETER(X509_EXTENSION, X509_EXTENSION_free);
IOTPKI_OSSL_DELETER(STACK_OF(X509), sk_X509_free);
IOTPKI_OSSL_DELETER(GENERAL_NAMES, GENERAL_NAMES_free);
IOTPKI_OSSL_DELETER(BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free);
// ASN1_INTEGER, ASN1_TIME, ASN1_OCTET_STRING and ASN1_BIT_STRING are all ASN1_STRING.
IOTPKI_OSSL_DELETER(ASN1_STRING, ASN1_STRING_free);
IOTPKI_OSSL_DELETER(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free);
IOTPKI_OSSL_DELETER(AUTHORITY_KEYID, AUTHORITY_KEYID_free);
IOTPKI_OSSL_DELETER(PKCS7, PKCS7_free);
IOTPKI_OSSL_DELETER(CMS_ContentInfo, CMS_ContentInfo_free);
IOTPKI_OSSL_DELETER(OCSP_REQUEST, OCSP_REQUEST_free);
IOTPKI_OSSL_DELETER(OCSP_RESPONSE, OCSP_RESPONSE_free);
IOTPKI_OSSL_DELETER(OCSP_BASICRESP, OCSP_BASICRESP_free);
IOTPKI_OSSL_DELETER(OCSP_CERTID, OCSP_CERTID_free);
IOTPKI_OSSL_DELETER(SSL_CTX, SSL_CTX_free);
IOTPKI_OSSL_DELETER(SSL, SSL_free);
IOTPKI_OSSL_DELETER(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free);
IOTPKI_OSSL_DELETER(OSSL_PARAM, OSSL_PARAM_free);
IOTPKI_OSSL_DELETER(PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free);
IOTPKI_OSSL_DELETER(X509_SIG, X509_SIG_free);
// Buffers OpenSSL allocates for the caller (ASN1_STRING_to_UTF8, i2d with a null buffer).
IOTPKI_OSSL_DELETER(unsigned char, OPENSSL_free);

// Stacks that own their elements.
template <>
struct Deleter<STACK_OF(X509_EXTENSION)> {
  void operator()(STACK_OF(X509_EXTENSION) * p) const {
    sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free);
  }
};

#undef IOTPKI_OSSL_DELETER

template <class T>
using UniquePtr = std::unique_ptr<T, Deleter<T>>;

template <class T>
UniquePtr<T> Own(T* p) {
  return UniquePtr<T>(p);
}

// The one idiom for a handle shared by several values (an EVP_PKEY held by a key and its copies):
// a shared_ptr made from the UniquePtr, which carries the same deleter. Null for null.
template <class T>
std::shared_ptr<T> Share(T* p) {
  return std::shared_ptr<T>(Own(p));
}

// A BIGNUM that holds a secret (a private scalar): cleared before it is freed.
struct ClearingBnDeleter {
  void operator()(BIGNUM* p) const { BN_clear_free(p); }
};
using SecretBignum = std::unique_ptr<BIGNUM, ClearingBnDeleter>;

// Turns whatever is on OpenSSL's error queue into an Error and empties the queue. `message` is
// what the client sees; the queue's text goes into the detail only.
Error Drain(Code code, std::string_view message);

// Empties the queue without reporting (after an expected failure such as a probe parse).
void ClearErrors();

// Digest implementations fetched from the default provider once per process: OpenSSL 3 looks
// EVP_sha256() and its kind up in the provider again on every use.
const EVP_MD* Sha256Md();
const EVP_MD* Sha384Md();
const EVP_MD* Sha1Md();

// DER of an OpenSSL object via its i2d function.
template <class T, class F>
Bytes ToDer(const T* obj, F i2d) {
  int len = i2d(obj, nullptr);
  if (len <= 0) return {};
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  i2d(obj, &p);
  return out;
}

// PEM armour helpers, for the value types' ToPem/FromPem.
std::string PemEncode(std::string_view label, ByteView der);
// Returns the DER of the first PEM block with `label`; InvalidArgument if there is none.
Result<Bytes> PemDecode(std::string_view pem, std::string_view label);

}  // namespace iotpki::ossl
