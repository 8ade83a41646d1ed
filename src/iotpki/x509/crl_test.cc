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

TEST_F(CrlTest, TheLintKnowsTheSizeBeforeSigningAndRefusesACrlPastItsBudget) {
  // 16-octet serials as the CA issues them, half with the high bit set (a leading zero octet),
  // times on both sides of 2050 (UTCTime, GeneralizedTime), reasons present and absent.
  std::vector<RevokedEntry> many;
  for (int i = 0; i < 3000; ++i) {
    Bytes serial(16, static_cast<uint8_t>(i % 251));
    serial[0] = static_cast<uint8_t>(i % 2 == 0 ? 0x01 : 0x81);
    serial[1] = static_cast<uint8_t>(i >> 8);
    serial[2] = static_cast<uint8_t>(i);
    many.push_back(
        {serial, i % 3 == 0 ? int64_t{2600000000} : kNow - i,
         i % 4 == 0 ? RevocationReason::kUnspecified : RevocationReason::kKeyCompromise});
  }
  // All 16 octets without leading zeros: by value is bytewise.
  // BytesLess, not vector's operator<: GCC 12 at -O3 warns (stringop-overread) inside the latter.
  std::sort(many.begin(), many.end(), [](const RevokedEntry& a, const RevokedEntry& b) {
    return BytesLess()(a.serial, b.serial);
  });
  int64_t this_update = int64_t{2600000000} + 60, next_update = this_update + 7 * kDay;
  auto empty = BuildCrl(pki.ops, pki.ops_key, {}, this_update, next_update, 1);
  auto full = BuildCrl(pki.ops, pki.ops_key, many, this_update, next_update, 1);
  ASSERT_TRUE(empty && full);
  int64_t list = RevokedListDerSize(many);
  EXPECT_EQ(RevokedListDerSize({}), 0);
  // Exact up to the outer length octets and the ECDSA signature's own few octets of variance.
  EXPECT_NEAR(static_cast<double>(full->ToDer().size()),
              static_cast<double>(empty->ToDer().size() + list), 6);
  EXPECT_LE(static_cast<int64_t>(full->ToDer().size()), list + kCrlEnvelopeBytes);

  int64_t bound = list + kCrlEnvelopeBytes;
  EXPECT_TRUE(LintCrlEntries(many, this_update, next_update, 0));
  EXPECT_TRUE(LintCrlEntries(many, this_update, next_update, bound));
  auto refused = LintCrlEntries(many, this_update, next_update, bound - 1);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("past its size budget of " + std::to_string(bound - 1)),
            std::string::npos)
      << refused.error().message();
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

// OpenSSL's verdict (X509_verify_cert with CRL checking, as `openssl verify -crl_check`) on
// `leaf` issued by pki.ops, with `crls` as the only CRLs.
int VerifyWithCrls(const Pki& pki, const Certificate& leaf, const std::vector<Crl>& crls) {
  auto store = ossl::Own(X509_STORE_new());
  X509_STORE_add_cert(store.get(), pki.root.handle());
  for (const auto& crl : crls) X509_STORE_add_crl(store.get(), crl.handle());
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
  X509_VERIFY_PARAM_set_time(param, kNow + 60);
  auto untrusted = ossl::Own(sk_X509_new_null());
  sk_X509_push(untrusted.get(), pki.ops.handle());
  auto ctx = ossl::Own(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.handle(), untrusted.get());
  int ok = X509_verify_cert(ctx.get());
  int error = X509_STORE_CTX_get_error(ctx.get());
  ossl::ClearErrors();
  return ok == 1 ? X509_V_OK : error;
}

TEST_F(CrlTest, APartitionCrlCoversOnlyTheCertificatesOfItsDistributionPoint) {
  const std::string jan = "https://pki.example.com/crl/operational/2026-01.crl";
  const std::string feb = "https://pki.example.com/crl/operational/2026-02.crl";
  auto leaf = [&](const std::string& cdp) {
    auto key = NewKey();
    auto t = pki.DeviceTemplate(ProfileKind::kLDevID, key.public_key());
    t.crl_url = cdp;
    return Must(Issue(t, &pki.ops, pki.ops_key, pki.policy), "issue leaf");
  };
  Certificate revoked = leaf(jan), good = leaf(jan), other = leaf(feb);
  std::vector<RevokedEntry> jan_entries = {{revoked.serial(), kNow, RevocationReason::kSuperseded}};
  Crl jan_crl = Must(BuildCrl(pki.ops, pki.ops_key, jan_entries, kNow, kNow + kDay, 5, jan));
  Crl feb_crl = Must(BuildCrl(pki.ops, pki.ops_key, {}, kNow, kNow + kDay, 5, feb));
  // The extension is there, critical, and OpenSSL reads it as valid.
  int crit = -1;
  auto* idp = static_cast<ISSUING_DIST_POINT*>(
      X509_CRL_get_ext_d2i(jan_crl.handle(), NID_issuing_distribution_point, &crit, nullptr));
  ASSERT_NE(idp, nullptr);
  EXPECT_EQ(crit, 1);
  ISSUING_DIST_POINT_free(idp);
  EXPECT_TRUE(jan_crl.IsRevoked(revoked.serial()));

  EXPECT_EQ(VerifyWithCrls(pki, revoked, {jan_crl, feb_crl}), X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyWithCrls(pki, good, {jan_crl, feb_crl}), X509_V_OK);
  EXPECT_EQ(VerifyWithCrls(pki, other, {jan_crl, feb_crl}), X509_V_OK);
  // A partition does not answer for another partition's certificates.
  EXPECT_NE(VerifyWithCrls(pki, other, {jan_crl}), X509_V_OK);
  EXPECT_NE(VerifyWithCrls(pki, revoked, {feb_crl}), X509_V_OK);
  // A whole CRL (no issuingDistributionPoint) answers for every certificate of its issuer.
  Crl whole = Must(BuildCrl(pki.ops, pki.ops_key, jan_entries, kNow, kNow + kDay, 6));
  EXPECT_EQ(VerifyWithCrls(pki, revoked, {whole}), X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyWithCrls(pki, other, {whole}), X509_V_OK);

  EXPECT_FALSE(BuildCrl(pki.ops, pki.ops_key, {}, kNow, kNow + kDay, 7, "http://a b/c.crl"));
}

TEST(IssuanceMonthTest, ReadsTheMonthFromOurSerials) {
  Pki pki;
  auto key = NewKey();
  auto t = pki.DeviceTemplate(ProfileKind::kLDevID, key.public_key());
  // The serial's time is the system clock's at issuance, not the template's.
  EXPECT_EQ(IssuanceMonth(t.serial), CurrentIssuanceMonth());
  EXPECT_EQ(CurrentIssuanceMonth().size(), 7u);
  Bytes dec31(16, 0x11);
  int64_t micros = int64_t{1767225599} * 1000000;  // 2025-12-31T23:59:59Z
  for (int i = 6; i >= 0; --i, micros >>= 8) dec31[i] = static_cast<uint8_t>(micros & 0xff);
  EXPECT_EQ(IssuanceMonth(dec31), "2025-12");
  Bytes leading_zero = dec31;
  leading_zero.insert(leading_zero.begin(), 0);
  EXPECT_EQ(IssuanceMonth(leading_zero), "2025-12");
  EXPECT_EQ(IssuanceMonth(Bytes{0x01, 0x02, 0x03}), "");  // an imported serial
  EXPECT_EQ(IssuanceMonth(Bytes(16, 0x00)), "");
  EXPECT_EQ(IssuanceMonth(Bytes(16, 0xff)), "");
}

}  // namespace
}  // namespace iotpki::x509
