#include "iotpki/crypto/key.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::crypto {
namespace {

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("iotpki-key-test-" + std::to_string(::getpid()) + "-" + ToHex(RandomBytes(4)));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST(Keys, GenerateSignVerify) {
  for (KeyType t : {KeyType::kP256, KeyType::kP384, KeyType::kEd25519}) {
    auto key = PrivateKey::Generate(t);
    ASSERT_TRUE(key);
    EXPECT_EQ(key->public_key().type(), t);
    auto sig = key->Sign(AsBytes("hello"));
    ASSERT_TRUE(sig);
    EXPECT_TRUE(key->public_key().Verify(AsBytes("hello"), *sig, key->digest()));
    EXPECT_FALSE(key->public_key().Verify(AsBytes("hellO"), *sig, key->digest()));
  }
}

// Threads share an EC key's signing contexts (and copies of the key share them too): every
// signature still verifies, over its own message, and with OpenSSL's own verification of the
// digest the signature names (a signature over the wrong hash would fail here).
TEST(Keys, ConcurrentSignaturesFromOneKeyAndItsCopies) {
  for (KeyType t : {KeyType::kP256, KeyType::kP384}) {
    auto key = PrivateKey::Generate(t);
    ASSERT_TRUE(key);
    PrivateKey copy = *key;
    std::vector<std::vector<Bytes>> sigs(4);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < sigs.size(); ++i) {
      threads.emplace_back([&, i] {
        const PrivateKey& k = i % 2 == 0 ? *key : copy;
        for (int n = 0; n < 25; ++n) {
          auto sig = k.Sign(AsBytes("message " + std::to_string(i) + "/" + std::to_string(n)));
          sigs[i].push_back(sig ? *sig : Bytes());
        }
      });
    }
    for (auto& th : threads) th.join();
    for (size_t i = 0; i < sigs.size(); ++i) {
      ASSERT_EQ(sigs[i].size(), 25u);
      for (int n = 0; n < 25; ++n) {
        std::string msg = "message " + std::to_string(i) + "/" + std::to_string(n);
        EXPECT_TRUE(key->public_key().Verify(AsBytes(msg), sigs[i][n], key->digest())) << msg;
        EXPECT_FALSE(key->public_key().Verify(AsBytes(msg + "."), sigs[i][n], key->digest()));
      }
    }
    // The digest named by the key's type is the one signed: verify it with EVP directly.
    auto ctx = EVP_MD_CTX_new();
    ASSERT_NE(ctx, nullptr);
    auto sig = key->Sign(AsBytes("evp"));
    ASSERT_TRUE(sig);
    EXPECT_EQ(EVP_DigestVerifyInit(ctx, nullptr, t == KeyType::kP384 ? EVP_sha384() : EVP_sha256(),
                                   nullptr, key->handle()),
              1);
    EXPECT_EQ(EVP_DigestVerify(ctx, sig->data(), sig->size(), AsBytes("evp").data(), 3), 1);
    EVP_MD_CTX_free(ctx);
  }
}

TEST(Keys, PublicKeyRoundTrips) {
  auto key = PrivateKey::Generate(KeyType::kP256);
  auto der = key->public_key().ToDer();
  EXPECT_EQ(der.size(), 91u);
  auto pub = PublicKey::FromDer(der);
  ASSERT_TRUE(pub);
  EXPECT_EQ(*pub, key->public_key());
  auto pem = PublicKey::FromPem(key->public_key().ToPem());
  ASSERT_TRUE(pem);
  EXPECT_EQ(*pem, key->public_key());
  EXPECT_EQ(key->public_key().Describe(), "P-256");
  EXPECT_EQ(key->public_key().KeyIdentifier().size(), 20u);
  EXPECT_EQ(key->public_key().RawKey().size(), 65u);
}

TEST(Keys, Sec1CompressionRoundTrip) {
  auto key = PrivateKey::Generate(KeyType::kP256);
  Bytes compressed = key->public_key().Sec1Point(true);
  ASSERT_EQ(compressed.size(), 33u);
  auto back = PublicKey::FromSec1(KeyType::kP256, compressed);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, key->public_key());
  Bytes bad = compressed;
  bad[0] = 0x05;
  EXPECT_FALSE(PublicKey::FromSec1(KeyType::kP256, bad));
}

TEST(Keys, FromScalarMatchesKnownPublicKey) {
  // The C509 draft's example issuer key (shared/vectors/c509).
  auto key = PrivateKey::FromScalar(
      KeyType::kP256, *FromHex("dc66b3415456d649429b53223df7532b942d6b0e0842c30bca4c0acf91547bb2"));
  ASSERT_TRUE(key);
  EXPECT_EQ(ToHex(key->public_key().Sec1Point(true)),
            "02ae4cdb01f614defc7121285fdc7f5c6d1d42c95647f061ba0080df678867845e");
}

// EC keys are read without OpenSSL's decoders and written without its encoders; both must
// agree byte for byte with i2d_PUBKEY, and an off-curve point must be refused.
TEST(Keys, EcSpkiMatchesOpenSsl) {
  for (KeyType t : {KeyType::kP256, KeyType::kP384}) {
    auto key = PrivateKey::Generate(t);
    ASSERT_TRUE(key);
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(key->handle(), &der);
    ASSERT_GT(len, 0);
    Bytes openssl(der, der + len);
    OPENSSL_free(der);
    EXPECT_EQ(key->public_key().ToDer(), openssl);
    EXPECT_EQ(EncodeEcSpki(t, key->public_key().Sec1Point(false)), openssl);
    auto pub = PublicKey::FromDer(openssl);
    ASSERT_TRUE(pub);
    EXPECT_EQ(pub->type(), t);
    EXPECT_EQ(pub->bits(), t == KeyType::kP256 ? 256 : 384);
    EXPECT_EQ(pub->curve(), key->public_key().curve());
    auto sig = key->Sign(AsBytes("data"));
    ASSERT_TRUE(sig);
    EXPECT_TRUE(pub->Verify(AsBytes("data"), *sig, key->digest()));
  }
  auto key = PrivateKey::Generate(KeyType::kP256);
  Bytes spki = key->public_key().ToDer();
  spki.back() ^= 0x01;  // y no longer matches x
  auto off_curve = PublicKey::FromDer(spki);
  ASSERT_FALSE(off_curve);
  EXPECT_EQ(off_curve.error().code(), Code::kInvalidArgument);
  Bytes trailing = key->public_key().ToDer();
  trailing.push_back(0);
  EXPECT_FALSE(PublicKey::FromDer(trailing));
}

// PrivateKey::ToDer writes EC keys with the DER writer: the same bytes as OpenSSL's encoder, over
// many keys (a scalar with leading zero bytes must keep its full length: 1 key in 256 has one).
TEST(Keys, EcPkcs8MatchesOpenSsl) {
  for (KeyType t : {KeyType::kP256, KeyType::kP384}) {
    for (int i = 0; i < 600; ++i) {
      auto key = PrivateKey::Generate(t);
      ASSERT_TRUE(key);
      auto p8 = std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)>(
          EVP_PKEY2PKCS8(key->handle()), PKCS8_PRIV_KEY_INFO_free);
      ASSERT_TRUE(p8);
      unsigned char* der = nullptr;
      int len = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &der);
      ASSERT_GT(len, 0);
      Bytes openssl(der, der + len);
      OPENSSL_free(der);
      auto ours = key->ToDer();
      ASSERT_TRUE(ours);
      ASSERT_EQ(*ours, openssl) << KeyTypeName(t) << " key " << i;
      auto back = PrivateKey::FromDer(*ours);
      ASSERT_TRUE(back);
      EXPECT_EQ(back->public_key(), key->public_key());
    }
  }
  // A scalar with a leading zero byte, written at full length.
  Bytes scalar(32, 0x11);
  scalar[0] = 0;
  auto key = PrivateKey::FromScalar(KeyType::kP256, scalar);
  ASSERT_TRUE(key);
  auto der = key->ToDer();
  ASSERT_TRUE(der);
  auto back = PrivateKey::FromDer(*der);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->public_key(), key->public_key());
  // version 0, AlgorithmIdentifier, then OCTET STRING { SEQUENCE { 1, OCTET STRING (32) ...
  const uint8_t scalar_header[] = {0x02, 0x01, 0x01, 0x04, 0x20};
  auto at =
      std::search(der->begin(), der->end(), std::begin(scalar_header), std::end(scalar_header));
  ASSERT_NE(at, der->end());
  EXPECT_TRUE(std::equal(scalar.begin(), scalar.end(), at + sizeof scalar_header));
}

// One key, one identity: a P-256/P-384 point sent compressed (02/03) or hybrid (06/07) is the
// same key as the uncompressed one, so it must compare equal, fingerprint the same and re-encode
// to the uncompressed SPKI, whichever parser (ours or OpenSSL's) read it.
TEST(Keys, EcPointFormsAreCanonicalizedToUncompressed) {
  for (KeyType t : {KeyType::kP256, KeyType::kP384}) {
    auto key = PrivateKey::Generate(t);
    ASSERT_TRUE(key);
    const PublicKey& pub = key->public_key();
    Bytes uncompressed = pub.Sec1Point(false);
    Bytes hybrid = uncompressed;
    hybrid[0] = static_cast<uint8_t>(0x06 | (uncompressed.back() & 1));
    for (const Bytes& point : {pub.Sec1Point(true), hybrid}) {
      Bytes spki = EncodeEcSpki(t, point);
      ASSERT_NE(spki, pub.ToDer());
      auto ours = PublicKey::FromDer(spki);
      ASSERT_TRUE(ours) << ours.error().ToString();
      EXPECT_EQ(*ours, pub) << KeyTypeName(t) << " point form " << int{point[0]};
      EXPECT_EQ(ours->ToDer(), pub.ToDer());
      EXPECT_EQ(ours->Fingerprint(), pub.Fingerprint());
      EXPECT_EQ(ours->KeyIdentifier(), pub.KeyIdentifier());
      EXPECT_EQ(ours->RawKey(), uncompressed);
      // The handle OpenSSL decodes from a certificate or CSR with this SPKI.
      const unsigned char* p = spki.data();
      auto parsed = ossl::Own(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
      ASSERT_TRUE(parsed);
      auto shared = PublicKey::FromParsed(parsed.get(), spki);
      ASSERT_TRUE(shared) << shared.error().ToString();
      EXPECT_EQ(*shared, pub);
      EXPECT_EQ(shared->ToDer(), pub.ToDer());
      EXPECT_TRUE(shared->Verify(AsBytes("data"), *key->Sign(AsBytes("data")), key->digest()));
    }
    auto from_sec1 = PublicKey::FromSec1(t, pub.Sec1Point(true));
    ASSERT_TRUE(from_sec1);
    EXPECT_EQ(from_sec1->ToDer(), pub.ToDer());
  }
  // A hybrid point whose parity byte contradicts y is not the key.
  auto key = PrivateKey::Generate(KeyType::kP256);
  Bytes bad = key->public_key().Sec1Point(false);
  bad[0] = static_cast<uint8_t>(0x06 | ((bad.back() & 1) ^ 1));
  EXPECT_FALSE(PublicKey::FromDer(EncodeEcSpki(KeyType::kP256, bad)));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(Keys, RefusesGarbage) {
  Bytes junk = {0x30, 0x03, 0x01, 0x01, 0x00};
  EXPECT_FALSE(PublicKey::FromDer(junk));
  EXPECT_FALSE(PublicKey::FromPem("not a key"));
}

TEST(Keys, RefusesAKeyWithUnusedBits) {
  for (auto type : {KeyType::kP256, KeyType::kP384, KeyType::kEd25519}) {
    // OpenSSL clears the bits declared unused; a key whose last bit is 0 survives that, so
    // OpenSSL accepts it (half of all keys, and the case that matters here).
    Bytes spki;
    do spki = PrivateKey::Generate(type)->public_key().ToDer();
    while (spki.back() & 1);
    size_t at = 2 + 2 + spki[3] + 2;  // the BIT STRING's unused-bits byte
    ASSERT_EQ(spki[at - 2], 0x03);
    ASSERT_EQ(spki[at], 0x00);
    ASSERT_TRUE(PublicKey::FromDer(spki));
    spki[at] = 1;
    auto pub = PublicKey::FromDer(spki);
    ASSERT_FALSE(pub) << KeyTypeName(type);
    EXPECT_NE(pub.error().message().find("unused bits"), std::string::npos);
    // OpenSSL itself accepts this encoding; the handle it decodes is refused all the same.
    const unsigned char* p = spki.data();
    auto parsed = ossl::Own(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
    ASSERT_TRUE(parsed) << KeyTypeName(type);
    EXPECT_FALSE(PublicKey::FromParsed(parsed.get(), spki));
  }
}

TEST(KeyFiles, EncryptedRoundTripMode0600) {
  TempDir dir;
  auto key = PrivateKey::Generate(KeyType::kP256);
  auto path = dir.path() / "k.pem";
  ASSERT_TRUE(SaveKeyFile(path, *key, "correct horse"));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto text = ReadTextFile(path);
  EXPECT_NE(text->find("ENCRYPTED PRIVATE KEY"), std::string::npos);
  auto loaded = LoadKeyFile(path, "correct horse");
  ASSERT_TRUE(loaded) << loaded.error().ToString();
  EXPECT_EQ(loaded->public_key(), key->public_key());
  EXPECT_EQ(loaded->uri(), "file:" + path.string());
}

TEST(KeyFiles, WrongPassphraseIsUnauthenticated) {
  TempDir dir;
  auto key = PrivateKey::Generate(KeyType::kP256);
  auto path = dir.path() / "k.pem";
  ASSERT_TRUE(SaveKeyFile(path, *key, "right"));
  auto loaded = LoadKeyFile(path, "wrong");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), Code::kUnauthenticated);
  EXPECT_NE(loaded.error().message().find("wrong passphrase"), std::string::npos);
}

TEST(KeyFiles, CorruptedFileIsDataLoss) {
  TempDir dir;
  auto path = dir.path() / "k.pem";
  ASSERT_TRUE(
      WriteFileAtomic(path, std::string_view("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
                                             "AAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")));
  auto loaded = LoadKeyFile(path, "x");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), Code::kDataLoss);
}

TEST(KeyFiles, EmptyPassphraseRefused) {
  auto key = PrivateKey::Generate(KeyType::kP256);
  EXPECT_FALSE(key->ToEncryptedPem(""));
}

TEST(Signers, OpenByUri) {
  TempDir dir;
  auto key = PrivateKey::Generate(KeyType::kP384);
  ASSERT_TRUE(SaveKeyFile(dir.path() / "ca.key", *key, "pw"));
  auto signer = OpenSigner("file:ca.key", "pw", dir.path());
  ASSERT_TRUE(signer) << signer.error().ToString();
  EXPECT_EQ((*signer)->public_key(), key->public_key());
  EXPECT_EQ((*signer)->digest(), DigestAlgorithm::kSha384);
  EXPECT_FALSE(OpenSigner("bogus:x", "pw"));
  // A scheme no key store is registered for (tpm2: has one now).
  auto unknown = OpenSigner("gpg:keyid=0x81000001", "pw");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace iotpki::crypto
