#include "iotpki/crypto/signer.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>

#include <mutex>
#include <vector>

#include "iotpki/common/der.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/key_store.h"
#include "iotpki/crypto/ossl.h"

namespace iotpki::crypto {
namespace {

// PBKDF2-HMAC-SHA256 iterations for keys at rest: slow enough to hurt guessing, fast enough
// (tens of ms) for a CLI that loads a key per invocation.
constexpr int kPbkdf2Iterations = 100000;

const char* CurveGroup(KeyType t) {
  switch (t) {
    case KeyType::kP256:
      return "P-256";
    case KeyType::kP384:
      return "P-384";
    default:
      return nullptr;
  }
}

// PKCS#8 PrivateKeyInfo of a P-256 or P-384 key, written with the DER writer: byte for byte what
// EVP_PKEY2PKCS8 + i2d_PKCS8_PRIV_KEY_INFO write (version 0, the SubjectPublicKeyInfo's
// AlgorithmIdentifier, and an RFC 5915 ECPrivateKey with the scalar padded to the order's size,
// no [0] parameters, [1] the public point), without OpenSSL 3.0's encoder lookup, which costs
// more than an ECDSA signature. Empty on failure; the caller falls back to OpenSSL.
Bytes EcPkcs8(EVP_PKEY* key, KeyType type, const Bytes& spki, ByteView point) {
  size_t size = type == KeyType::kP256 ? 32 : 48;
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &raw) != 1) {
    ossl::ClearErrors();
    return {};
  }
  ossl::SecretBignum d(raw);
  Bytes scalar(size);
  if (BN_bn2binpad(d.get(), scalar.data(), static_cast<int>(size)) != static_cast<int>(size)) {
    OPENSSL_cleanse(scalar.data(), scalar.size());
    return {};
  }
  der::Reader outer(spki);
  auto seq = outer.Expect(der::kSequence);
  if (!seq) return {};
  der::Reader fields(seq->contents);
  auto algorithm = fields.Expect(der::kSequence);
  if (!algorithm) return {};
  Bytes scalar_der = der::OctetString(scalar);
  Bytes ec = der::Sequence({der::SmallInteger(1), scalar_der,
                            der::Constructed(der::ContextConstructed(1), {der::BitString(point)})});
  Bytes ec_der = der::OctetString(ec);
  Bytes out = der::Sequence({der::SmallInteger(0), algorithm->whole, ec_der});
  for (Bytes* secret : {&scalar, &scalar_der, &ec, &ec_der}) {
    OPENSSL_cleanse(secret->data(), secret->size());
  }
  return out;
}

}  // namespace

struct PrivateKey::SignContexts {
  std::mutex mu;
  std::vector<ossl::UniquePtr<EVP_PKEY_CTX>> idle;
};

Result<PrivateKey> PrivateKey::FromHandle(std::shared_ptr<EVP_PKEY> key) {
  PrivateKey pk;
  // The public half shares the key's handle. For EC keys its SPKI is written from the point:
  // an i2d_PUBKEY/d2i_PUBKEY round trip through OpenSSL 3.0's encoders and decoders costs
  // about ten times the key generation itself.
  Bytes spki;
  char group[32] = {0};
  if (EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_EC) {
    size_t group_len = 0;
    uint8_t point[1 + 2 * 48];
    size_t point_len = 0;
    if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &group_len) == 1 &&
        EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point,
                                        &point_len) == 1 &&
        point_len > 0 && point[0] == 0x04) {
      auto curve = ParseCurve(group);
      if (curve) spki = EncodeEcSpki(*curve, ByteView(point, point_len));
    }
    ossl::ClearErrors();
  }
  // The group's name too, when the point gave the SPKI (the name was read and understood).
  IOTPKI_TRY(pk.public_, PublicKey::FromHandle(key, spki, spki.empty() ? "" : group));
  if (!spki.empty()) pk.sign_contexts_ = std::make_shared<SignContexts>();
  pk.key_ = std::move(key);
  return pk;
}

Result<PrivateKey> PrivateKey::Generate(KeyType type) {
  EVP_PKEY* raw = nullptr;
  if (type == KeyType::kEd25519) {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else if (const char* group = CurveGroup(type)) {
    // One prepared context per thread and curve: EVP_PKEY_Q_keygen sets a context up for every
    // key, which costs as much as generating it.
    thread_local ossl::UniquePtr<EVP_PKEY_CTX> contexts[2];
    auto& ctx = contexts[type == KeyType::kP384 ? 1 : 0];
    if (!ctx) {
      ctx = ossl::Own(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group), 0),
          OSSL_PARAM_construct_end(),
      };
      if (ctx && (EVP_PKEY_keygen_init(ctx.get()) != 1 ||
                  EVP_PKEY_CTX_set_params(ctx.get(), params) != 1)) {
        ctx.reset();
      }
    }
    if (ctx && EVP_PKEY_generate(ctx.get(), &raw) != 1) raw = nullptr;
  } else {
    return Fail(Code::kInvalidArgument, "key generation supports P-256, P-384 and Ed25519 only");
  }
  if (raw == nullptr) return Fail(ossl::Drain(Code::kInternal, "key generation failed"));
  return FromHandle(ossl::Share(raw));
}

Result<PrivateKey> PrivateKey::FromDer(ByteView pkcs8_der) {
  const unsigned char* p = pkcs8_der.data();
  auto p8 = ossl::Own(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(pkcs8_der.size())));
  if (!p8) return Fail(ossl::Drain(Code::kInvalidArgument, "not a PKCS#8 private key"));
  auto key = ossl::Share(EVP_PKCS82PKEY(p8.get()));
  if (!key) return Fail(ossl::Drain(Code::kInvalidArgument, "not a usable private key"));
  return FromHandle(std::move(key));
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem, std::string_view passphrase) {
  if (pem.find("-----BEGIN PRIVATE KEY-----") != std::string_view::npos) {
    IOTPKI_TRY(Bytes der, ossl::PemDecode(pem, "PRIVATE KEY"));
    return FromDer(der);
  }
  auto der = ossl::PemDecode(pem, "ENCRYPTED PRIVATE KEY");
  if (!der) {
    return Fail(Code::kDataLoss, "key file is corrupted (no valid ENCRYPTED PRIVATE KEY block)");
  }
  const unsigned char* p = der->data();
  auto sig = ossl::Own(d2i_X509_SIG(nullptr, &p, static_cast<long>(der->size())));
  if (!sig || p != der->data() + der->size()) {
    return Fail(ossl::Drain(Code::kDataLoss, "key file is corrupted (bad PKCS#8 structure)"));
  }
  auto p8 =
      ossl::Own(PKCS8_decrypt(sig.get(), passphrase.data(), static_cast<int>(passphrase.size())));
  if (!p8) {
    return Fail(ossl::Drain(Code::kUnauthenticated,
                            "wrong passphrase (or the encrypted key is corrupted)"));
  }
  auto key = ossl::Share(EVP_PKCS82PKEY(p8.get()));
  if (!key) return Fail(ossl::Drain(Code::kDataLoss, "key file is corrupted"));
  return FromHandle(std::move(key));
}

Result<PrivateKey> PrivateKey::FromScalar(KeyType curve, ByteView scalar) {
  int nid = curve == KeyType::kP256   ? NID_X9_62_prime256v1
            : curve == KeyType::kP384 ? NID_secp384r1
                                      : NID_undef;
  if (nid == NID_undef) return Fail(Code::kInvalidArgument, "scalars need P-256 or P-384");
  auto group = ossl::Own(EC_GROUP_new_by_curve_name(nid));
  auto priv = ossl::Own(BN_bin2bn(scalar.data(), static_cast<int>(scalar.size()), nullptr));
  auto point = ossl::Own(group ? EC_POINT_new(group.get()) : nullptr);
  if (!group || !priv || !point ||
      EC_POINT_mul(group.get(), point.get(), priv.get(), nullptr, nullptr, nullptr) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "invalid private scalar"));
  }
  Bytes pub(133);
  size_t pub_len = EC_POINT_point2oct(group.get(), point.get(), POINT_CONVERSION_UNCOMPRESSED,
                                      pub.data(), pub.size(), nullptr);
  pub.resize(pub_len);
  auto bld = ossl::Own(OSSL_PARAM_BLD_new());
  if (!bld ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid), 0) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get()) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub.data(),
                                        pub.size())) {
    return Fail(ossl::Drain(Code::kInternal, "cannot build key parameters"));
  }
  auto params = ossl::Own(OSSL_PARAM_BLD_to_param(bld.get()));
  auto ctx = ossl::Own(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_KEYPAIR, params.get()) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "invalid private scalar"));
  }
  return FromHandle(ossl::Share(raw));
}

Result<std::string> PrivateKey::ToEncryptedPem(std::string_view passphrase) const {
  if (passphrase.empty()) {
    return Fail(Code::kInvalidArgument, "refusing to write a private key without a passphrase");
  }
  auto p8 = ossl::Own(EVP_PKEY2PKCS8(key_.get()));
  if (!p8) return Fail(ossl::Drain(Code::kInternal, "cannot encode private key"));
  auto sig = ossl::Own(PKCS8_encrypt_ex(-1, EVP_aes_256_cbc(), passphrase.data(),
                                        static_cast<int>(passphrase.size()), nullptr, 0,
                                        kPbkdf2Iterations, p8.get(), nullptr, nullptr));
  if (!sig) return Fail(ossl::Drain(Code::kInternal, "cannot encrypt private key"));
  Bytes der = ossl::ToDer(sig.get(), i2d_X509_SIG);
  return ossl::PemEncode("ENCRYPTED PRIVATE KEY", der);
}

Result<Bytes> PrivateKey::ToDer() const {
  if (public_.type() == KeyType::kP256 || public_.type() == KeyType::kP384) {
    Bytes der = EcPkcs8(key_.get(), public_.type(), public_.ToDer(), public_.RawKey());
    if (!der.empty()) return der;
  }
  auto p8 = ossl::Own(EVP_PKEY2PKCS8(key_.get()));
  if (!p8) return Fail(ossl::Drain(Code::kInternal, "cannot encode private key"));
  return ossl::ToDer(p8.get(), i2d_PKCS8_PRIV_KEY_INFO);
}

Result<Bytes> PrivateKey::Sign(ByteView data) const {
  if (sign_contexts_) {
    // ECDSA: the digest, then a context of the key's that no other thread is using.
    uint8_t hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len = 0;
    const EVP_MD* md = digest() == DigestAlgorithm::kSha384 ? ossl::Sha384Md() : ossl::Sha256Md();
    if (EVP_Digest(data.data(), data.size(), hash, &hash_len, md, nullptr) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "signing failed"));
    }
    ossl::UniquePtr<EVP_PKEY_CTX> ctx;
    {
      std::lock_guard lock(sign_contexts_->mu);
      if (!sign_contexts_->idle.empty()) {
        ctx = std::move(sign_contexts_->idle.back());
        sign_contexts_->idle.pop_back();
      }
    }
    if (!ctx) {
      ctx = ossl::Own(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
      if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) {
        return Fail(ossl::Drain(Code::kInternal, "signing failed"));
      }
    }
    // The largest signature's size, kept in the key (asking EVP_PKEY_sign for it encodes a
    // dummy signature).
    int max_len = EVP_PKEY_get_size(key_.get());
    if (max_len <= 0) return Fail(ossl::Drain(Code::kInternal, "signing failed"));
    size_t len = static_cast<size_t>(max_len);
    Bytes sig(len);
    if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, hash, hash_len) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "signing failed"));
    }
    sig.resize(len);
    std::lock_guard lock(sign_contexts_->mu);
    sign_contexts_->idle.push_back(std::move(ctx));
    return sig;
  }
  auto ctx = ossl::Own(EVP_MD_CTX_new());
  const EVP_MD* md = public_.type() == KeyType::kEd25519    ? nullptr
                     : digest() == DigestAlgorithm::kSha384 ? ossl::Sha384Md()
                                                            : ossl::Sha256Md();
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, data.data(), data.size()) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "signing failed"));
  }
  Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, data.data(), data.size()) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "signing failed"));
  }
  sig.resize(len);
  return sig;
}

Result<void> SaveKeyFile(const std::filesystem::path& path, const PrivateKey& key,
                         std::string_view passphrase) {
  IOTPKI_TRY(std::string pem, key.ToEncryptedPem(passphrase));
  return WriteFileAtomic(path, pem, 0600);
}

Result<PrivateKey> LoadKeyFile(const std::filesystem::path& path, std::string_view passphrase) {
  auto pem = ReadTextFile(path, 1 << 20);
  if (!pem) return Fail(std::move(pem).error().Context("reading key"));
  auto key = PrivateKey::FromPem(*pem, passphrase);
  if (!key) return Fail(std::move(key).error().Context(path.string()));
  key->set_uri("file:" + path.string());
  return key;
}

Result<std::unique_ptr<Signer>> OpenSigner(std::string_view uri, std::string_view passphrase,
                                           const std::filesystem::path& base_dir) {
  IOTPKI_TRY(auto store, KeyStoreFor(uri, {.passphrase = passphrase, .base_dir = base_dir}));
  return store->Open(uri);
}

EVP_PKEY* OpenSslHandle(const Signer& signer) {
  const auto* key = dynamic_cast<const OpenSslKey*>(&signer);
  return key == nullptr ? nullptr : key->handle();
}

}  // namespace iotpki::crypto
