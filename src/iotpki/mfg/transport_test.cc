#include "iotpki/mfg/transport.h"

#include <gtest/gtest.h>

#include "iotpki/crypto/primitives.h"

namespace iotpki::mfg {
namespace {

constexpr char kPass[] = "station transport passphrase";

TEST(TransportKeyTest, EncryptedKeysAreStandardPkcs8) {
  Bytes salt = crypto::RandomBytes(16);
  auto tk = TransportKey::Derive(kPass, salt, 10000);
  ASSERT_TRUE(tk) << tk.error().ToString();
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key);
  auto pem = tk->Encrypt(*key);
  ASSERT_TRUE(pem) << pem.error().ToString();
  EXPECT_EQ(pem->rfind("-----BEGIN ENCRYPTED PRIVATE KEY-----\n", 0), 0u);
  // OpenSSL's own PKCS#8 decryption, with the passphrase alone, reads what the batch key wrote.
  auto by_openssl = crypto::PrivateKey::FromPem(*pem, kPass);
  ASSERT_TRUE(by_openssl) << by_openssl.error().ToString();
  EXPECT_EQ(by_openssl->public_key(), key->public_key());
  auto back = tk->Decrypt(*pem);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->public_key(), key->public_key());
  // Each file has its own IV.
  EXPECT_NE(*tk->Encrypt(*key), *pem);
}

TEST(TransportKeyTest, OtherPassphraseOrSaltIsDataLoss) {
  Bytes salt = crypto::RandomBytes(16);
  auto tk = TransportKey::Derive(kPass, salt, 10000);
  auto other = TransportKey::Derive("another passphrase!", salt, 10000);
  auto other_salt = TransportKey::Derive(kPass, crypto::RandomBytes(16), 10000);
  ASSERT_TRUE(tk && other && other_salt);
  EXPECT_NE(tk->CheckValue(), other->CheckValue());
  auto pem = tk->Encrypt(*crypto::PrivateKey::Generate());
  ASSERT_TRUE(pem);
  auto wrong = other->Decrypt(*pem);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Code::kDataLoss);
  EXPECT_FALSE(other_salt->Decrypt(*pem));
  EXPECT_FALSE(
      tk->Decrypt("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED "
                  "PRIVATE KEY-----\n"));
  EXPECT_FALSE(tk->Decrypt("garbage"));
  EXPECT_FALSE(crypto::PrivateKey::FromPem(*pem, "another passphrase!"));
}

TEST(TransportKeyTest, WeakParametersAreRefused) {
  EXPECT_FALSE(TransportKey::Derive("short", crypto::RandomBytes(16), 100000));
  EXPECT_FALSE(TransportKey::Derive(kPass, crypto::RandomBytes(8), 100000));
  EXPECT_FALSE(TransportKey::Derive(kPass, crypto::RandomBytes(16), 1000));
}

}  // namespace
}  // namespace iotpki::mfg
