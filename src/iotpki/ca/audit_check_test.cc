#include "iotpki/ca/audit_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "iotpki/ca/authority.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/sql/sql_store.h"

namespace iotpki::ca {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
constexpr char kPass[] = "unit-test-passphrase";

class AuditCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("iotpki-audit-check-" + std::to_string(::getpid()) + "-" +
                                         ToHex(crypto::RandomBytes(4)));
    dir_ = base_ / "ca";
    ASSERT_TRUE(InitCa(dir_, {.organization = "Acme"}, kPass, clock_));
    auto a = Authority::Open(dir_, clock_);
    ASSERT_TRUE(a) << a.error().ToString();
    authority_ = std::move(*a);
    ASSERT_TRUE(authority_->Unlock(CaName::kManufacturing, kPass));
    for (const char* serial : {"SN-1", "SN-2"}) {
      auto key = crypto::PrivateKey::Generate();
      auto csr = x509::MakeCsr(*key, {.common_name = "device"});
      auto cert = authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                     .csr = *csr,
                                     .serial = serial,
                                     .hardware_fingerprint = {1, 2, 3}});
      ASSERT_TRUE(cert) << cert.error().ToString();
      serials_.push_back(cert->serial_hex());
    }
  }
  void TearDown() override {
    authority_.reset();
    fs::remove_all(base_);
  }

  store::Store& store() { return authority_->store(); }
  void Sql(const std::string& sql) {
    auto r = dynamic_cast<store::sql::SqlStore&>(store()).ExecForTest(sql);
    ASSERT_TRUE(r) << r.error().ToString();
  }
  // A revocation as the revocation command records it (audit_check.h's contract).
  void Revoke(const std::string& serial) {
    store::WriteBatch b;
    b.RevokeCertificate(serial, store::RevocationReason::kKeyCompromise);
    b.AppendAudit({.actor = "test",
                   .action = "cert.revoke",
                   .subject = serial,
                   .details = R"({"reason":"keyCompromise","revoked_at":)" +
                              std::to_string(clock_.NowUnix()) + "}"});
    ASSERT_TRUE(store().Commit(b));
  }

  FakeClock clock_{1790000000};
  fs::path base_, dir_;
  std::unique_ptr<Authority> authority_;
  std::vector<std::string> serials_;
};

TEST_F(AuditCheckTest, AnUntouchedStoreIsConsistent) {
  Revoke(serials_[0]);
  auto v = CrossCheckCertificates(store(), 2);  // small pages exercise the paging
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_TRUE(v->consistent) << ::testing::PrintToString(v->problems);
  EXPECT_EQ(v->certificates, 5);  // three CAs, two IDevIDs
  EXPECT_EQ(v->accounted, 5);
  EXPECT_EQ(v->revoked, 1);
  EXPECT_EQ(v->revocation_rows, 1);
}

TEST_F(AuditCheckTest, AnUnrevokedCertificateIsReported) {
  Revoke(serials_[0]);
  Sql("UPDATE certificates SET status = 'valid', revoked_at = NULL, revocation_reason = NULL "
      "WHERE serial = '" +
      serials_[0] + "'");
  auto v = CrossCheckCertificates(store(), 2);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->consistent);
  ASSERT_FALSE(v->problems.empty());
  EXPECT_THAT(v->problems[0], HasSubstr(serials_[0]));
  EXPECT_THAT(v->problems[0], HasSubstr("says valid"));
}

TEST_F(AuditCheckTest, ARevocationWithoutItsRowAndAChangedReasonAreReported) {
  Revoke(serials_[0]);
  Sql("UPDATE certificates SET revocation_reason = 'superseded' WHERE serial = '" + serials_[0] +
      "'");
  Sql("UPDATE certificates SET status = 'revoked', revoked_at = 1, "
      "revocation_reason = 'keyCompromise' WHERE serial = '" +
      serials_[1] + "'");
  auto v = CrossCheckCertificates(store());
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->consistent);
  ASSERT_EQ(v->problems.size(), 2u) << ::testing::PrintToString(v->problems);
  EXPECT_THAT(v->problems[0], HasSubstr("reason or time"));
  EXPECT_THAT(v->problems[1], HasSubstr("2 certificates are revoked; the audit log revoked 1"));
}

TEST_F(AuditCheckTest, ARemovedCertificateIsReported) {
  Sql("DELETE FROM certificates WHERE serial = '" + serials_[1] + "'");
  auto v = CrossCheckCertificates(store());
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->consistent);
  ASSERT_EQ(v->problems.size(), 2u) << ::testing::PrintToString(v->problems);
  EXPECT_THAT(v->problems[0], HasSubstr(serials_[1] + " is not in the certificates table"));
  EXPECT_THAT(v->problems[1], HasSubstr("holds 4 certificates; the audit log issued 5"));
}

TEST_F(AuditCheckTest, CheckpointsAreSignedAndPinTheChain) {
  auto key = crypto::OpenSigner(authority_->config().audit_key, kPass, dir_);
  ASSERT_TRUE(key) << key.error().ToString();
  auto anchor = WriteCheckpoint(store(), **key, "test");
  ASSERT_TRUE(anchor) << anchor.error().ToString();
  auto head = store::ReadAuditHead(store());
  ASSERT_TRUE(head && *head);
  EXPECT_EQ((*head)->action, "audit.checkpoint");
  EXPECT_EQ((*head)->seq, anchor->seq + 1);

  auto good = VerifyCheckpoints(store(), (*key)->public_key());
  ASSERT_TRUE(good);
  EXPECT_TRUE(good->valid) << good->problem;
  EXPECT_EQ(good->checkpoints, 1);
  EXPECT_EQ(good->last_checkpoint_seq, anchor->seq);

  // Another key (an attacker's) does not verify it.
  auto other = crypto::PrivateKey::Generate();
  auto foreign = VerifyCheckpoints(store(), other->public_key());
  ASSERT_TRUE(foreign);
  EXPECT_FALSE(foreign->valid);
  EXPECT_THAT(foreign->problem, HasSubstr("signature"));

  // The signed row's hash rewritten (as a recomputed chain would): the checkpoint says so.
  Sql("UPDATE audit_log SET hash = zeroblob(32) WHERE seq = " + std::to_string(anchor->seq));
  auto rewritten = VerifyCheckpoints(store(), (*key)->public_key());
  ASSERT_TRUE(rewritten);
  EXPECT_FALSE(rewritten->valid);
  EXPECT_THAT(rewritten->problem,
              HasSubstr("row " + std::to_string(anchor->seq) + " no longer has the signed hash"));
}

}  // namespace
}  // namespace iotpki::ca
