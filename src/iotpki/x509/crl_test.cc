#include "iotpki/x509/crl.h"

#include <gtest/gtest.h>

#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using testing::kNow;
using testing::Must;
using testing::NewKey;
using testing::Pki;

constexpr int64_t kDay = kSecondsPerDay;

class CrlTest : public ::testing::Test {
 protected:
  Pki pki;
  std::vector<RevokedEntry> entries = {
      {Bytes{0x01, 0x02, 0x03}, kNow - 3600, RevocationReason::kKeyCompromise},
      {Bytes{0x7f, 0xff}, kNow - 60, RevocationReason::kUnspecified},
      {Bytes{0xff, 0x00}, kNow - 10, RevocationReason::kSuperseded},
  };
};

TEST_F(CrlTest, BuildAndReadBack) {
  auto crl = BuildCrl(pki.ops, pki.ops_key, entries, kNow, kNow + 7 * kDay, 42);
  ASSERT_TRUE(crl) << crl.error().ToString();
  EXPECT_EQ(crl->issuer(), pki.ops.subject());
  ByteView issuer = crl->issuer_der();
  EXPECT_TRUE(std::equal(issuer.begin(), issuer.end(), pki.ops.subject_der().begin(),
                         pki.ops.subject_der().end()));
  EXPECT_EQ(crl->this_update(), kNow);
  EXPECT_EQ(crl->next_update(), kNow + 7 * kDay);
  EXPECT_EQ(crl->crl_number(), 42);
  EXPECT_EQ(crl->authority_key_id(), pki.ops.subject_key_id());
  EXPECT_EQ(crl->revoked(), entries);
  EXPECT_TRUE(crl->IsRevoked(Bytes{0x01, 0x02, 0x03}));
  EXPECT_TRUE(crl->IsRevoked(Bytes{0x00, 0x01, 0x02, 0x03}));
  EXPECT_TRUE(crl->IsRevoked(Bytes{0xff, 0x00}));
  EXPECT_FALSE(crl->IsRevoked(Bytes{0x01, 0x02}));
  EXPECT_TRUE(crl->IsSignedBy(pki.ops.public_key()));
  EXPECT_FALSE(crl->IsSignedBy(pki.mfg.public_key()));

  // OpenSSL's own lookup agrees on the encoding of serials and reasons.
  auto serial = ossl::Own(ASN1_INTEGER_new());
  ASN1_INTEGER_set(serial.get(), 0xff00);
  X509_REVOKED* revoked = nullptr;
  ASSERT_EQ(X509_CRL_get0_by_serial(crl->handle(), &revoked, serial.get()), 1);
  auto reason = ossl::Own(static_cast<ASN1_STRING*>(
      X509_REVOKED_get_ext_d2i(revoked, NID_crl_reason, nullptr, nullptr)));
  ASSERT_TRUE(reason);
  EXPECT_EQ(ASN1_ENUMERATED_get(reason.get()), 4);
  // Reading back after OpenSSL sorted its copy keeps our order.
  EXPECT_EQ(Must(Crl::FromDer(crl->ToDer())).revoked(), entries);

  auto pem = Crl::FromPem(crl->ToPem());
  ASSERT_TRUE(pem);
  EXPECT_EQ(pem->ToDer(), crl->ToDer());
}

TEST_F(CrlTest, EmptyCrl) {
  auto crl = BuildCrl(pki.mfg, pki.mfg_key, {}, kNow, kNow + kDay, 1);
  ASSERT_TRUE(crl) << crl.error().ToString();
  EXPECT_TRUE(crl->revoked().empty());
  EXPECT_FALSE(crl->IsRevoked(Bytes{0x01}));
  EXPECT_EQ(crl->crl_number(), 1);
}

TEST_F(CrlTest, RefusesBadRequests) {
  auto wrong_key = BuildCrl(pki.ops, pki.mfg_key, entries, kNow, kNow + kDay, 1);
  ASSERT_FALSE(wrong_key);
  EXPECT_EQ(wrong_key.error().code(), Code::kFailedPrecondition);

  auto device_key = NewKey();
  auto leaf = Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key())));
  auto not_ca = BuildCrl(leaf, device_key, entries, kNow, kNow + kDay, 1);
  ASSERT_FALSE(not_ca);
  EXPECT_EQ(not_ca.error().code(), Code::kFailedPrecondition);

  auto twice = entries;
  twice.push_back({Bytes{0x00, 0x7f, 0xff}, kNow, RevocationReason::kUnspecified});
  auto dup = BuildCrl(pki.ops, pki.ops_key, twice, kNow, kNow + kDay, 1);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Code::kInvalidArgument);

  EXPECT_FALSE(BuildCrl(pki.ops, pki.ops_key, entries, kNow, kNow, 1));
  EXPECT_FALSE(BuildCrl(pki.ops, pki.ops_key, entries, kNow, kNow + kDay, -1));
}

TEST_F(CrlTest, RefusesGarbage) {
  auto crl = Must(BuildCrl(pki.ops, pki.ops_key, entries, kNow, kNow + kDay, 7));
  const Bytes& der = crl.ToDer();
  for (const Bytes& bad : {Bytes{}, ToBytes("not a crl"), Bytes(der.begin(), der.end() - 1)}) {
    auto parsed = Crl::FromDer(bad);
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().message(), "not an X.509 CRL");
  }
  EXPECT_FALSE(Crl::FromDer(pki.ops.ToDer()));
}

}  // namespace
}  // namespace iotpki::x509
