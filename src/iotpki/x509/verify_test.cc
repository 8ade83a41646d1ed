#include "iotpki/x509/verify.h"

#include <gtest/gtest.h>

#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using testing::FlipByte;
using testing::Identity;
using testing::kNow;
using testing::Must;
using testing::Mutate;
using testing::NewKey;
using testing::Pki;

constexpr int64_t kDay = kSecondsPerDay;

class VerifyTest : public ::testing::Test {
 protected:
  Pki pki;
  crypto::PrivateKey device_key = NewKey();
  Certificate idevid =
      Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, device_key.public_key())));
  Certificate ldevid =
      Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key())));
  std::vector<Certificate> roots = {pki.root};
  std::vector<Certificate> mfg = {pki.mfg};
  std::vector<Certificate> ops = {pki.ops};
};

TEST(VerdictName, Names) {
  EXPECT_EQ(VerdictName(Verdict::kValid), "valid");
  EXPECT_EQ(VerdictName(Verdict::kExpired), "expired");
  EXPECT_EQ(VerdictName(Verdict::kNotYetValid), "not_yet_valid");
  EXPECT_EQ(VerdictName(Verdict::kBadSignature), "bad_signature");
  EXPECT_EQ(VerdictName(Verdict::kUnknownIssuer), "unknown_issuer");
  EXPECT_EQ(VerdictName(Verdict::kRevoked), "revoked");
  EXPECT_EQ(VerdictName(Verdict::kRevocationUnknown), "revocation_unknown");
  EXPECT_EQ(VerdictName(Verdict::kInvalidChain), "invalid_chain");
}

TEST_F(VerifyTest, ValidChains) {
  // Strict mode accepts the 9999 notAfter and the hardwareModuleName otherName.
  EXPECT_EQ(VerifyChain(idevid, mfg, roots, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(pki.root, {}, roots, kNow), Verdict::kValid);
  // Intermediates may come in any order, with extras.
  std::vector<Certificate> both = {pki.ops, pki.mfg};
  EXPECT_EQ(VerifyChain(idevid, both, roots, kNow), Verdict::kValid);
}

TEST_F(VerifyTest, AnIssuingCaCanBeTheTrustAnchor) {
  EXPECT_EQ(VerifyChain(idevid, {}, mfg, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(idevid, {}, ops, kNow), Verdict::kUnknownIssuer);
}

TEST_F(VerifyTest, Expired) {
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow + 91 * kDay), Verdict::kExpired);
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow + 89 * kDay), Verdict::kValid);
}

TEST_F(VerifyTest, NotYetValid) {
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow - kDay), Verdict::kNotYetValid);
}

TEST_F(VerifyTest, BadSignature) {
  // The last bytes are inside the ECDSA s value: the certificate still parses.
  auto tampered = Must(Certificate::FromDer(FlipByte(ldevid.ToDer(), 2)));
  EXPECT_EQ(VerifyChain(tampered, ops, roots, kNow), Verdict::kBadSignature);
  // A validly-encoded signature by the wrong key under the right issuer name.
  auto forged = Mutate(ldevid, pki.mfg_key, [](X509*) {});
  EXPECT_EQ(VerifyChain(forged, ops, roots, kNow), Verdict::kBadSignature);
}

TEST_F(VerifyTest, UnknownIssuer) {
  EXPECT_EQ(VerifyChain(ldevid, {}, roots, kNow), Verdict::kUnknownIssuer);
  Pki other;
  std::vector<Certificate> other_roots = {other.root};
  EXPECT_EQ(VerifyChain(ldevid, ops, other_roots, kNow), Verdict::kUnknownIssuer);
  EXPECT_EQ(VerifyChain(ldevid, ops, {}, kNow), Verdict::kUnknownIssuer);
}

TEST_F(VerifyTest, RevokedViaCrl) {
  std::vector<RevokedEntry> entries = {{ldevid.serial(), kNow, RevocationReason::kKeyCompromise}};
  std::vector<Crl> crls = {Must(BuildCrl(pki.ops, pki.ops_key, entries, kNow, kNow + 7 * kDay, 2))};
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow + kDay, crls), Verdict::kRevoked);

  auto other = Must(pki.IssueFor(
      pki.DeviceTemplate(ProfileKind::kLDevID, NewKey().public_key(), Identity("SN-2"))));
  EXPECT_EQ(VerifyChain(other, ops, roots, kNow + kDay, crls), Verdict::kValid);
}

TEST_F(VerifyTest, RevocationUnknown) {
  // A CRL past its nextUpdate proves nothing.
  std::vector<Crl> stale = {Must(BuildCrl(pki.ops, pki.ops_key, {}, kNow, kNow + kDay, 3))};
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow + 2 * kDay, stale), Verdict::kRevocationUnknown);
  // CRLs given, but none from the leaf's issuer.
  std::vector<Crl> elsewhere = {Must(BuildCrl(pki.mfg, pki.mfg_key, {}, kNow, kNow + kDay, 1))};
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow + 60, elsewhere), Verdict::kRevocationUnknown);
}

TEST_F(VerifyTest, InvalidChain) {
  // A "certificate" issued by an end entity: the verifier refuses the non-CA issuer.
  auto victim = Must(pki.IssueFor(
      pki.DeviceTemplate(ProfileKind::kLDevID, NewKey().public_key(), Identity("SN-2"))));
  auto fake = Mutate(victim, device_key, [&](X509* x) {
    X509_set_issuer_name(x, X509_get_subject_name(ldevid.handle()));
    int idx = X509_get_ext_by_NID(x, NID_authority_key_identifier, -1);
    X509_EXTENSION_free(X509_delete_ext(x, idx));
  });
  std::vector<Certificate> chain = {ldevid, pki.ops};
  EXPECT_EQ(VerifyChain(fake, chain, roots, kNow), Verdict::kInvalidChain);
}

}  // namespace
}  // namespace iotpki::x509
