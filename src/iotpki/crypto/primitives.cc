#include "iotpki/crypto/primitives.h"

#include <openssl/core_names.h>
#include <openssl/rand.h>

#include "iotpki/crypto/ossl.h"

namespace iotpki::crypto {
namespace {

Bytes Digest(const EVP_MD* md, ByteView data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr);
  out.resize(len);
  return out;
}

}  // namespace

Bytes Sha256(ByteView data) { return Digest(ossl::Sha256Md(), data); }
Bytes Sha384(ByteView data) { return Digest(ossl::Sha384Md(), data); }
Bytes Sha1(ByteView data) { return Digest(ossl::Sha1Md(), data); }

Bytes HmacSha256(ByteView key, ByteView data) {
  Bytes out(32);
  size_t len = 0;
  // An empty key is legal for HMAC; OpenSSL wants a non-null pointer for it.
  static const uint8_t kEmpty = 0;
  EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.empty() ? &kEmpty : key.data(),
            key.size(), data.data(), data.size(), out.data(), out.size(), &len);
  out.resize(len);
  return out;
}

bool VerifyHmacSha256(ByteView key, ByteView data, ByteView mac) {
  return ConstantTimeEqual(HmacSha256(key, data), mac);
}

Result<Secret> Pbkdf2Sha256(std::string_view passphrase, ByteView salt, int iterations,
                            size_t length) {
  Bytes out(length);
  if (PKCS5_PBKDF2_HMAC(passphrase.data(), static_cast<int>(passphrase.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(out.size()), out.data()) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return Fail(ossl::Drain(Code::kInternal, "PBKDF2 failed"));
  }
  return Secret(std::move(out));
}

Result<Bytes> Aes256Cbc(bool encrypt, ByteView key, ByteView iv, ByteView in) {
  if (key.size() != 32 || iv.size() != 16) {
    return Fail(Code::kInternal, "AES-256-CBC needs a 32-byte key and a 16-byte IV");
  }
  auto ctx = ossl::Own(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, key.data(), iv.data(),
                                encrypt ? 1 : 0) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "cannot set up AES-256-CBC"));
  }
  Bytes out(in.size() + 16);
  int n1 = 0, n2 = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &n1, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + n1, &n2) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    if (!encrypt) {
      ossl::ClearErrors();
      return Fail(Code::kUnauthenticated, "decryption failed (wrong key or corrupted data)");
    }
    return Fail(ossl::Drain(Code::kInternal, "AES-256-CBC failed"));
  }
  out.resize(static_cast<size_t>(n1 + n2));
  return out;
}

Result<Bytes> HkdfSha256(ByteView ikm, ByteView salt, ByteView info, size_t length) {
  if (length == 0 || length > 255 * 32) {
    return Fail(Code::kInvalidArgument, "HKDF output length must be 1..8160 bytes");
  }
  auto kdf = ossl::Own(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  auto ctx = ossl::Own(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  if (!ctx) return Fail(ossl::Drain(Code::kInternal, "HKDF unavailable"));
  static const uint8_t kEmpty = 0;
  auto ptr = [](ByteView v) { return const_cast<uint8_t*>(v.empty() ? &kEmpty : v.data()); };
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ptr(ikm), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ptr(salt), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ptr(info), info.size()),
      OSSL_PARAM_construct_end(),
  };
  Bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "HKDF failed"));
  }
  return out;
}

Result<Bytes> Ecdh(const PrivateKey& own, const PublicKey& peer) {
  if (own.public_key().type() != peer.type() ||
      (peer.type() != KeyType::kP256 && peer.type() != KeyType::kP384)) {
    return Fail(Code::kInvalidArgument, "ECDH needs two keys on the same curve (P-256 or P-384)");
  }
  auto ctx = ossl::Own(EVP_PKEY_CTX_new_from_pkey(nullptr, own.handle(), nullptr));
  size_t len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "ECDH failed"));
  }
  Bytes secret(len);
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "ECDH failed"));
  }
  secret.resize(len);
  return secret;
}

Result<Bytes> DeriveSessionKey(const PrivateKey& own, const PublicKey& peer, ByteView salt,
                               ByteView context) {
  IOTPKI_TRY(Bytes shared, Ecdh(own, peer));
  Bytes info = ToBytes("iotpki/session/v1");
  info.insert(info.end(), context.begin(), context.end());
  auto key = HkdfSha256(shared, salt, info, 32);
  OPENSSL_cleanse(shared.data(), shared.size());
  return key;
}

Bytes RandomBytes(size_t n) {
  Bytes out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    // The DRBG failing is unrecoverable: issuing with predictable serials or keys is worse.
    ossl::ClearErrors();
    std::abort();
  }
  return out;
}

}  // namespace iotpki::crypto
