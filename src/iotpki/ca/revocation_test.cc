#include "iotpki/ca/revocation.h"

#include <gtest/gtest.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "iotpki/common/clock.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/sqlite/sqlite_store.h"

namespace iotpki::ca {
namespace {

using store::CertificateRecord;
using store::CertProfile;
using store::CertStatus;
using store::RevocationReason;

constexpr int64_t kNow = 1'760'000'000;

std::string Hex(const std::string& seed) { return ToHex(crypto::Sha256(AsBytes(seed))); }
std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string DeviceId(int n) { return Hex("device-" + std::to_string(n)); }
std::string Serial(int device, int n) {
  return Hex("cert-" + std::to_string(device) + "-" + std::to_string(n)).substr(0, 32);
}

class RevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::OpenSqliteStore(":memory:", clock_);
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
  }

  // A device of `batch` with an IDevID (cert 0) and `ldevids` working certificates (1, 2, ...).
  void AddDevice(int n, const std::string& batch, int ldevids) {
    store::WriteBatch b;
    b.InsertDevice({.device_id = DeviceId(n),
                    .serial = "SN" + std::to_string(n),
                    .model = "m",
                    .batch = batch});
    for (int i = 0; i <= ldevids; ++i) {
      CertificateRecord c;
      c.serial = Serial(n, i);
      c.device_id = DeviceId(n);
      c.profile = i == 0 ? CertProfile::kIDevId : CertProfile::kLDevId;
      c.issuer = i == 0 ? "manufacturing" : "operational";
      c.subject = "CN=" + DeviceId(n);
      c.not_before = kNow + i;
      c.not_after = i == 0 ? kNoExpiryUnix : kNow + 90 * 86400;
      c.key_fingerprint = Hex("key-" + std::to_string(n) + "-" + std::to_string(i));
      c.der = {0x30, 0x00};
      b.InsertCertificate(c);
    }
    ASSERT_TRUE(store_->Commit(b));
  }

  std::vector<store::AuditRecord> Audit(const std::string& action) {
    std::vector<store::AuditRecord> out;
    auto rows = store_->ReadAudit(1, store::kMaxPageSize);
    EXPECT_TRUE(rows);
    for (auto& r : *rows) {
      if (r.action == action) out.push_back(r);
    }
    return out;
  }

  FakeClock clock_{kNow};
  std::unique_ptr<store::Store> store_;
};

TEST_F(RevocationTest, OperatorReasonsAreTheFiveNamedOnes) {
  EXPECT_EQ(*ParseOperatorReason("keyCompromise"), RevocationReason::kKeyCompromise);
  EXPECT_EQ(*ParseOperatorReason("cessationOfOperation"), RevocationReason::kCessationOfOperation);
  auto bad = ParseOperatorReason("certificateHold");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("keyCompromise"), std::string::npos);
  EXPECT_FALSE(ParseOperatorReason("caCompromise"));
}

TEST_F(RevocationTest, SerialRevokedWithAuditRowInOneTransaction) {
  AddDevice(1, "b1", 1);
  clock_.Advance(std::chrono::seconds(100));
  auto r = RevokeSerial(*store_, clock_, Upper(Serial(1, 1)), RevocationReason::kKeyCompromise,
                        "cli:alice");
  ASSERT_TRUE(r) << r.error().ToString();
  auto cert = store_->GetCertificate(Serial(1, 1));
  EXPECT_EQ(cert->status, CertStatus::kRevoked);
  EXPECT_EQ(cert->revoked_at, kNow + 100);
  EXPECT_EQ(cert->revocation_reason, RevocationReason::kKeyCompromise);

  auto rows = Audit("cert.revoke");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].subject, Serial(1, 1));
  EXPECT_EQ(rows[0].actor, "cli:alice");
  auto details = nlohmann::json::parse(rows[0].details);
  EXPECT_EQ(details["reason"], "keyCompromise");
  EXPECT_EQ(details["revoked_at"], kNow + 100);
  EXPECT_EQ(details["actor"], "cli:alice");
  EXPECT_EQ(details["device_id"], DeviceId(1));

  // Again: refused, naming the first revocation, and nothing written.
  auto again = RevokeSerial(*store_, clock_, Serial(1, 1), RevocationReason::kSuperseded, "x");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(again.error().message().find("already revoked (keyCompromise"), std::string::npos)
      << again.error().message();
  EXPECT_EQ(Audit("cert.revoke").size(), 1u);

  EXPECT_EQ(
      RevokeSerial(*store_, clock_, "abcd", RevocationReason::kUnspecified, "x").error().code(),
      Code::kNotFound);
}

TEST_F(RevocationTest, DeviceRevokesWorkingCertificatesOrAll) {
  AddDevice(1, "b1", 2);
  auto r = RevokeDevice(*store_, clock_, DeviceId(1), /*all=*/false,
                        RevocationReason::kAffiliationChanged, "cli:bob");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->certificates.size(), 2u);
  EXPECT_EQ(store_->GetCertificate(Serial(1, 0))->status, CertStatus::kValid);  // the IDevID
  EXPECT_EQ(store_->GetCertificate(Serial(1, 2))->status, CertStatus::kRevoked);

  auto none =
      RevokeDevice(*store_, clock_, DeviceId(1), false, RevocationReason::kUnspecified, "x");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Code::kFailedPrecondition);

  auto all =
      RevokeDevice(*store_, clock_, DeviceId(1), true, RevocationReason::kKeyCompromise, "x");
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_EQ(all->certificates.size(), 1u);
  EXPECT_EQ(all->certificates[0].serial, Serial(1, 0));
  EXPECT_EQ(Audit("cert.revoke").size(), 3u);
  EXPECT_EQ(RevokeDevice(*store_, clock_, DeviceId(9), true, RevocationReason::kUnspecified, "x")
                .error()
                .code(),
            Code::kNotFound);
}

TEST_F(RevocationTest, DecommissionRevokesEverythingOnce) {
  AddDevice(1, "b1", 1);
  ASSERT_TRUE(store_->Commit(
      store::WriteBatch().RevokeCertificate(Serial(1, 1), RevocationReason::kSuperseded)));
  auto r = Decommission(*store_, clock_, DeviceId(1), "cli:carol");
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->certificates.size(), 1u);  // the IDevID; the LDevID was revoked before
  EXPECT_EQ(store_->GetDevice(DeviceId(1))->state, store::DeviceState::kDecommissioned);
  auto idevid = store_->GetCertificate(Serial(1, 0));
  EXPECT_EQ(idevid->revocation_reason, RevocationReason::kCessationOfOperation);
  EXPECT_EQ(store_->GetCertificate(Serial(1, 1))->revocation_reason, RevocationReason::kSuperseded);
  EXPECT_EQ(Audit("device.decommission").size(), 1u);
  auto again = Decommission(*store_, clock_, DeviceId(1), "x");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);
}

TEST_F(RevocationTest, BatchInGroupsDryRunAndResume) {
  for (int n = 1; n <= 5; ++n) AddDevice(n, "leaked", 1);
  AddDevice(6, "other", 1);

  std::vector<int64_t> seen;
  auto dry = RevokeBatch(*store_, clock_, "leaked", RevocationReason::kKeyCompromise, "x",
                         /*dry_run=*/true, 2,
                         [&](const BatchProgress& p) { seen.push_back(p.devices_done); });
  ASSERT_TRUE(dry) << dry.error().ToString();
  EXPECT_EQ(dry->devices_total, 5);
  EXPECT_EQ(dry->certificates_revoked, 10);
  EXPECT_EQ(seen, (std::vector<int64_t>{2, 4, 5}));
  EXPECT_TRUE(Audit("cert.revoke").empty());  // a dry run writes nothing

  // An interrupted run: device 2 was revoked by hand before; the rest in groups of 2.
  ASSERT_TRUE(
      RevokeDevice(*store_, clock_, DeviceId(2), true, RevocationReason::kKeyCompromise, "x"));
  auto run =
      RevokeBatch(*store_, clock_, "leaked", RevocationReason::kKeyCompromise, "x", false, 2);
  ASSERT_TRUE(run) << run.error().ToString();
  EXPECT_EQ(run->certificates_revoked, 8);
  EXPECT_EQ(run->certificates_skipped, 2);
  for (int n = 1; n <= 5; ++n) {
    EXPECT_EQ(store_->GetCertificate(Serial(n, 0))->status, CertStatus::kRevoked) << n;
  }
  EXPECT_EQ(store_->GetCertificate(Serial(6, 1))->status, CertStatus::kValid);
  EXPECT_EQ(Audit("cert.revoke").size(), 10u);

  auto rerun = RevokeBatch(*store_, clock_, "leaked", RevocationReason::kKeyCompromise, "x", false);
  ASSERT_TRUE(rerun);
  EXPECT_EQ(rerun->certificates_revoked, 0);
  EXPECT_EQ(rerun->certificates_skipped, 10);
  EXPECT_EQ(RevokeBatch(*store_, clock_, "nope", RevocationReason::kKeyCompromise, "x", false)
                .error()
                .code(),
            Code::kNotFound);
}

}  // namespace
}  // namespace iotpki::ca
