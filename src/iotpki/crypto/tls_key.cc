// The TLS face of a signer without an OpenSSL key of its own (signer.h, TlsKeyOf).
//
// OpenSSL 3.0 has no provider for a PKCS#11 token on Debian 12, and the tpm2-openssl provider's
// own EVP_PKEY cannot serve TLS (docs/hardware-keys.md): in the default library context it
// exports its public half and fails with "missing private key", and in the provider's context
// the TPM would verify the peer's signatures too. What works for both is a legacy EC_KEY with an
// EC_KEY_METHOD whose sign functions call the signer: OpenSSL treats such a key as foreign and
// calls the method for the handshake signature. EC_KEY_METHOD is deprecated API in OpenSSL 3.0
// and remains the only way to do this without writing a provider; this file is the one place
// that uses it.
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::crypto {

Result<Bytes> Signer::SignDigest(ByteView /*hash*/) const {
  return Fail(Code::kUnimplemented, "the key at " + uri() + " signs whole messages only");
}

namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int SignerIndex() {
  static const int index = EC_KEY_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

ECDSA_SIG* FaceSignSig(const unsigned char* dgst, int dgst_len, const BIGNUM* /*kinv*/,
                       const BIGNUM* /*r*/, EC_KEY* eckey) {
  const auto* signer = static_cast<const Signer*>(EC_KEY_get_ex_data(eckey, SignerIndex()));
  if (signer == nullptr || dgst_len <= 0) return nullptr;
  auto der = signer->SignDigest(ByteView(dgst, static_cast<size_t>(dgst_len)));
  if (!der) {
    // The reason reaches the TLS error the caller drains (no secret in it: a URI and a cause).
    ERR_raise_data(ERR_LIB_EC, ERR_R_EC_LIB, "%s", der.error().message().c_str());
    return nullptr;
  }
  const unsigned char* p = der->data();
  return d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der->size()));
}

int FaceSign(int /*type*/, const unsigned char* dgst, int dlen, unsigned char* sig,
             unsigned int* siglen, const BIGNUM* kinv, const BIGNUM* r, EC_KEY* eckey) {
  auto s = ossl::Own(FaceSignSig(dgst, dlen, kinv, r, eckey));
  if (s == nullptr) return 0;
  unsigned char* out = sig;
  int len = i2d_ECDSA_SIG(s.get(), &out);
  if (len <= 0) return 0;
  *siglen = static_cast<unsigned int>(len);
  return 1;
}

// Everything but signing (verification, key checks) stays OpenSSL's own.
const EC_KEY_METHOD* FaceMethod() {
  static EC_KEY_METHOD* method = [] {
    EC_KEY_METHOD* m = EC_KEY_METHOD_new(EC_KEY_get_default_method());
    int (*sign_setup)(EC_KEY*, BN_CTX*, BIGNUM**, BIGNUM**) = nullptr;
    EC_KEY_METHOD_get_sign(m, nullptr, &sign_setup, nullptr);
    EC_KEY_METHOD_set_sign(m, FaceSign, sign_setup, FaceSignSig);
    return m;
  }();
  return method;
}

Result<ossl::UniquePtr<EVP_PKEY>> MakeFace(const Signer& signer) {
  const PublicKey& pub = signer.public_key();
  if (pub.type() != KeyType::kP256 && pub.type() != KeyType::kP384) {
    return Fail(Code::kInvalidArgument,
                "a TLS key signed outside OpenSSL must be P-256 or P-384 (" + signer.uri() + ")");
  }
  int nid = pub.type() == KeyType::kP384 ? NID_secp384r1 : NID_X9_62_prime256v1;
  EC_KEY* ec = EC_KEY_new_by_curve_name(nid);
  auto pkey = ossl::Own(EVP_PKEY_new());
  Bytes point = pub.Sec1Point(false);
  const unsigned char* p = point.data();
  bool ok = ec != nullptr && pkey != nullptr && EC_KEY_set_method(ec, FaceMethod()) == 1 &&
            o2i_ECPublicKey(&ec, &p, static_cast<long>(point.size())) != nullptr &&
            EC_KEY_set_ex_data(ec, SignerIndex(), const_cast<Signer*>(&signer)) == 1 &&
            EVP_PKEY_assign_EC_KEY(pkey.get(), ec) == 1;
  if (!ok) {
    if (ec != nullptr && (pkey == nullptr || EVP_PKEY_get0(pkey.get()) == nullptr)) EC_KEY_free(ec);
    return Fail(ossl::Drain(Code::kInternal, "cannot make the TLS face of " + signer.uri()));
  }
  return pkey;
}
#pragma GCC diagnostic pop

}  // namespace

Result<std::shared_ptr<EVP_PKEY>> TlsKeyOf(const Signer& signer) {
  if (EVP_PKEY* own = OpenSslHandle(signer); own != nullptr) {
    if (EVP_PKEY_up_ref(own) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "cannot share an OpenSSL key"));
    }
    return std::shared_ptr<EVP_PKEY>(own, EVP_PKEY_free);
  }
  IOTPKI_TRY(auto face, MakeFace(signer));
  return std::shared_ptr<EVP_PKEY>(face.release(), EVP_PKEY_free);
}

}  // namespace iotpki::crypto
