#include "iotpki/x509/cms.h"

#include <gtest/gtest.h>
#include <openssl/err.h>

#include <algorithm>

#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using testing::Must;
using testing::NewKey;

struct Device {
  testing::Pki pki;
  crypto::PrivateKey key = NewKey();
  Certificate idevid = Must(Issue(pki.DeviceTemplate(ProfileKind::kIDevID, key.public_key()),
                                  &pki.mfg, pki.mfg_key, pki.policy),
                            "issue idevid");
};

TEST(CmsTest, SealedContentOpensOnlyWithTheRecipientKey) {
  Device d;
  Bytes content = {'s', 'e', 'c', 'r', 'e', 't', 0, 1, 2};
  Bytes sealed = Must(SealToCertificate(content, d.idevid));
  // The plaintext does not appear in the envelope.
  EXPECT_EQ(std::search(sealed.begin(), sealed.end(), content.begin(), content.end()),
            sealed.end());
  auto opened = OpenSealed(sealed, d.key, d.idevid);
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ(Bytes(opened->bytes().begin(), opened->bytes().end()), content);

  // Another device's key and certificate cannot open it.
  Device other;
  auto wrong = OpenSealed(sealed, other.key, other.idevid);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Code::kDataLoss);
  // The right certificate with the wrong key neither.
  EXPECT_FALSE(OpenSealed(sealed, other.key, d.idevid));
}

TEST(CmsTest, EachSealIsFresh) {
  // Ephemeral-static ECDH: a new ephemeral key (and content key) per envelope.
  Device d;
  Bytes content(100, 7);
  EXPECT_NE(Must(SealToCertificate(content, d.idevid)), Must(SealToCertificate(content, d.idevid)));
}

TEST(CmsTest, UsesTheSha256KdfAndAesKeyWrap) {
  Device d;
  Bytes sealed = Must(SealToCertificate(Bytes(32, 1), d.idevid));
  auto has_oid = [&](std::initializer_list<uint8_t> oid) {
    Bytes needle(oid);
    return std::search(sealed.begin(), sealed.end(), needle.begin(), needle.end()) != sealed.end();
  };
  // dhSinglePass-stdDH-sha256kdf-scheme 1.3.132.1.11.1, id-aes256-wrap 2.16.840.1.101.3.4.1.45.
  EXPECT_TRUE(has_oid({0x06, 0x06, 0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01}));
  EXPECT_TRUE(has_oid({0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2d}));
  // Not the SHA-1 KDF OpenSSL picks by default (1.3.133.16.840.63.0.2).
  EXPECT_FALSE(has_oid({0x06, 0x09, 0x2b, 0x81, 0x05, 0x10, 0x86, 0x48, 0x3f, 0x00, 0x02}));
}

TEST(CmsTest, RefusesARecipientThatIsNotP256) {
  testing::Pki pki(crypto::KeyType::kP384);  // a P-384 root: a certificate with another key
  auto sealed = SealToCertificate(Bytes(8, 1), pki.root);
  ASSERT_FALSE(sealed);
  EXPECT_EQ(sealed.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(sealed.error().message().find("P-256"), std::string::npos);
}

TEST(CmsTest, RefusesWhatIsNotAnEnvelope) {
  Device d;
  Bytes sealed = Must(SealToCertificate(Bytes(16, 3), d.idevid));
  EXPECT_EQ(OpenSealed(Bytes{}, d.key, d.idevid).error().code(), Code::kDataLoss);
  EXPECT_EQ(OpenSealed(Bytes{0x30, 0x03, 0x02, 0x01, 0x00}, d.key, d.idevid).error().code(),
            Code::kDataLoss);
  Bytes truncated(sealed.begin(), sealed.end() - 5);
  EXPECT_EQ(OpenSealed(truncated, d.key, d.idevid).error().code(), Code::kDataLoss);
  Bytes trailing = sealed;
  trailing.push_back(0);
  EXPECT_EQ(OpenSealed(trailing, d.key, d.idevid).error().code(), Code::kDataLoss);
  EXPECT_EQ(ERR_peek_error(), 0u);  // the queue is drained
}

// RFC 7030 4.4.2 with RFC 5958 section 4: the key in an AsymmetricKeyPackage, signed by the
// server that generated it, then sealed to the device.
class KeyPackageTest : public ::testing::Test {
 protected:
  Device d;
  crypto::PrivateKey server_key = NewKey();
  Certificate server = Must(d.pki.IssueFor(d.pki.ServerTemplate(server_key.public_key())));
  crypto::PrivateKey device_key = NewKey();
  Bytes pkcs8 = Must(device_key.ToDer());
  std::vector<Certificate> chain{server, d.pki.ops};
};

TEST_F(KeyPackageTest, OpensToTheKeyAndNamesItsSigner) {
  Bytes sealed = Must(SealKeyPackage(pkcs8, server_key, chain, d.idevid));
  EXPECT_EQ(std::search(sealed.begin(), sealed.end(), pkcs8.begin(), pkcs8.end()), sealed.end());
  auto opened = OpenKeyPackage(sealed, d.key, d.idevid);
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ(Bytes(opened->pkcs8.bytes().begin(), opened->pkcs8.bytes().end()), pkcs8);
  EXPECT_EQ(opened->signer.ToDer(), server.ToDer());
  ASSERT_EQ(opened->certificates.size(), 2u);
  // The envelope's content type is id-signedData (1.2.840.113549.1.7.2) and the SignedData's
  // id-ct-KP-aKeyPackage (2.16.840.1.101.2.1.2.78.5): the first is readable outside the
  // encryption.
  Bytes signed_data_oid = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};
  EXPECT_NE(
      std::search(sealed.begin(), sealed.end(), signed_data_oid.begin(), signed_data_oid.end()),
      sealed.end());
  // Another device cannot open it.
  Device other;
  EXPECT_EQ(OpenKeyPackage(sealed, other.key, other.idevid).error().code(), Code::kDataLoss);
}

TEST_F(KeyPackageTest, ABareEnvelopeOrABadSignerIsRefused) {
  // What serverkeygen answered before: the PKCS#8 key sealed directly, no signature.
  Bytes bare = Must(SealToCertificate(pkcs8, d.idevid));
  auto unsigned_key = OpenKeyPackage(bare, d.key, d.idevid);
  ASSERT_FALSE(unsigned_key);
  EXPECT_EQ(unsigned_key.error().code(), Code::kDataLoss);
  EXPECT_NE(unsigned_key.error().message().find("SignedData"), std::string::npos);
  // The signer's certificate must be the signing key's.
  std::vector<Certificate> wrong{d.pki.ops};
  EXPECT_EQ(SealKeyPackage(pkcs8, server_key, wrong, d.idevid).error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(SealKeyPackage(pkcs8, server_key, {}, d.idevid).error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace iotpki::x509
