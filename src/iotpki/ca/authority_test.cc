#include "iotpki/ca/authority.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "iotpki/common/log.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/sql/sql_store.h"
#include "iotpki/x509/verify.h"

namespace iotpki::ca {
namespace {

namespace fs = std::filesystem;
constexpr char kPass[] = "unit-test-passphrase";

class AuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("iotpki-ca-test-" + std::to_string(::getpid()) + "-" + ToHex(crypto::RandomBytes(4)));
    dir_ = base_ / "ca";
    ASSERT_TRUE(InitCa(dir_, {.organization = "Acme"}, kPass, clock_));
    auto a = Authority::Open(dir_, clock_);
    ASSERT_TRUE(a) << a.error().ToString();
    authority_ = std::move(*a);
    ASSERT_TRUE(authority_->Unlock(CaName::kManufacturing, kPass));
    ASSERT_TRUE(authority_->Unlock(CaName::kOperational, kPass));
  }
  void TearDown() override {
    authority_.reset();
    fs::remove_all(base_);
  }

  x509::Csr NewCsr(crypto::KeyType type = crypto::KeyType::kP256) {
    auto key = crypto::PrivateKey::Generate(type);
    auto csr = x509::MakeCsr(*key, {.common_name = "device"});
    return *csr;
  }

  IssueRequest Request(x509::ProfileKind profile, const x509::Csr& csr,
                       std::string serial = "SN-1") {
    return {.profile = profile,
            .csr = csr,
            .serial = std::move(serial),
            .hardware_fingerprint = {0xde, 0xad, 0xbe, 0xef},
            .model = "thermostat"};
  }

  int64_t AuditRows() {
    auto v = store::VerifyAuditChain(authority_->store());
    return v->rows_checked;
  }

  FakeClock clock_{1790000000};
  fs::path base_, dir_;
  std::unique_ptr<Authority> authority_;
};

TEST_F(AuthorityTest, InitWritesEncryptedKeysAndRefusesToOverwrite) {
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "keys/root.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = InitCa(dir_, {.organization = "Acme"}, kPass, clock_);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);
  EXPECT_FALSE(InitCa(base_ / "short", {}, "short", clock_));  // passphrase under 8 characters
  EXPECT_FALSE(fs::exists(base_ / "short"));
}

TEST_F(AuthorityTest, HierarchyVerifies) {
  const auto& root = authority_->certificate(CaName::kRoot);
  for (CaName n : {CaName::kManufacturing, CaName::kOperational}) {
    const auto& c = authority_->certificate(n);
    EXPECT_EQ(x509::VerifyChain(c, {}, std::span(&root, 1), clock_.NowUnix()),
              x509::Verdict::kValid);
    EXPECT_EQ(c.path_len(), 0);
  }
}

TEST_F(AuthorityTest, IssuesIDevIDThenLDevID) {
  auto idevid = authority_->Issue(Request(x509::ProfileKind::kIDevID, NewCsr()));
  ASSERT_TRUE(idevid) << idevid.error().ToString();
  std::string device_id = x509::ComputeDeviceId("SN-1", Bytes{0xde, 0xad, 0xbe, 0xef});
  EXPECT_EQ(idevid->common_name(), device_id);
  EXPECT_EQ(idevid->not_after(), kNoExpiryUnix);
  auto device = authority_->store().GetDevice(device_id);
  ASSERT_TRUE(device);
  EXPECT_EQ(device->state, store::DeviceState::kManufactured);
  EXPECT_EQ(device->model, "thermostat");
  auto record = authority_->store().GetCertificate(idevid->serial_hex());
  ASSERT_TRUE(record);
  EXPECT_EQ(record->der, idevid->ToDer());

  auto ldevid = authority_->Issue(Request(x509::ProfileKind::kLDevID, NewCsr()));
  ASSERT_TRUE(ldevid) << ldevid.error().ToString();
  EXPECT_EQ(ldevid->not_after() - ldevid->not_before(), 90 * 86400);
  EXPECT_EQ(authority_->store().GetDevice(device_id)->state, store::DeviceState::kActive);
  const auto& root = authority_->certificate(CaName::kRoot);
  const auto& ops = authority_->certificate(CaName::kOperational);
  EXPECT_EQ(x509::VerifyChain(*ldevid, std::span(&ops, 1), std::span(&root, 1), clock_.NowUnix()),
            x509::Verdict::kValid);
}

TEST_F(AuthorityTest, LDevIDByDeviceIdAndRenewalWithTheSameKey) {
  ASSERT_TRUE(authority_->Issue(Request(x509::ProfileKind::kIDevID, NewCsr())));
  std::string device_id = x509::ComputeDeviceId("SN-1", Bytes{0xde, 0xad, 0xbe, 0xef});
  x509::Csr csr = NewCsr();
  IssueRequest by_id{.profile = x509::ProfileKind::kLDevID, .csr = csr, .device_id = device_id};
  auto first = authority_->Issue(by_id);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_EQ(first->serial_number(), "SN-1");
  auto renewed = authority_->Issue(by_id);  // same key: a renewal
  ASSERT_TRUE(renewed) << renewed.error().ToString();
  EXPECT_NE(renewed->serial_hex(), first->serial_hex());
  by_id.device_id = std::string(64, '0');
  auto unknown = authority_->Issue(by_id);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
}

TEST_F(AuthorityTest, RefusalsAreAuditedAndWriteNothingElse) {
  x509::Csr csr = NewCsr();
  ASSERT_TRUE(authority_->Issue(Request(x509::ProfileKind::kIDevID, csr)));
  int64_t audit_before = AuditRows();
  store::DeviceFilter all;
  int64_t devices_before = *authority_->store().CountDevices(all);

  // Same serial again.
  auto dup_serial = authority_->Issue(Request(x509::ProfileKind::kIDevID, NewCsr()));
  ASSERT_FALSE(dup_serial);
  EXPECT_EQ(dup_serial.error().code(), Code::kAlreadyExists);
  // Same key on another device.
  auto dup_key = authority_->Issue(Request(x509::ProfileKind::kIDevID, csr, "SN-2"));
  ASSERT_FALSE(dup_key);
  EXPECT_NE(dup_key.error().message().find("key"), std::string::npos);
  // The IDevID key reused for the LDevID.
  auto same_key = authority_->Issue(Request(x509::ProfileKind::kLDevID, csr));
  ASSERT_FALSE(same_key);
  // Unknown device for an LDevID.
  auto unknown = authority_->Issue(Request(x509::ProfileKind::kLDevID, NewCsr(), "SN-404"));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
  // A P-384 key where policy allows P-256 only.
  auto p384 = authority_->Issue(
      Request(x509::ProfileKind::kIDevID, NewCsr(crypto::KeyType::kP384), "SN-3"));
  ASSERT_FALSE(p384);

  EXPECT_EQ(AuditRows(), audit_before + 5);
  EXPECT_EQ(*authority_->store().CountDevices(all), devices_before);
  auto rows = authority_->store().ReadAudit(audit_before + 1, 10);
  ASSERT_TRUE(rows);
  for (const auto& r : *rows) EXPECT_EQ(r.action, "cert.refuse");
}

// A store that refuses audit rows (a trigger stands in for a full disk): the refusal is still
// the answer, and the lost row is logged and counted, never dropped silently.
TEST_F(AuthorityTest, ARefusalWhoseAuditRowCannotBeWrittenIsLoggedAndCounted) {
  auto* sql = dynamic_cast<store::sql::SqlStore*>(&authority_->store());
  ASSERT_NE(sql, nullptr);
  ASSERT_TRUE(
      sql->ExecForTest("CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit volume full'); END"));
  std::mutex mu;
  std::vector<std::string> lines;
  log::SetSinkForTesting([&](std::string_view line) {
    std::lock_guard<std::mutex> lock(mu);
    lines.emplace_back(line);
  });
  uint64_t before = store::AuditWriteFailures();
  auto p384 = authority_->Issue(
      Request(x509::ProfileKind::kIDevID, NewCsr(crypto::KeyType::kP384), "SN-3"));
  log::SetSinkForTesting(nullptr);
  ASSERT_FALSE(p384);
  EXPECT_NE(p384.error().code(), Code::kInternal) << p384.error().ToString();
  EXPECT_EQ(store::AuditWriteFailures(), before + 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("audit.write_failed"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("cert.refuse"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("audit volume full"), std::string::npos) << lines[0];
}

TEST_F(AuthorityTest, BootstrapSecretNeedsTheMasterKey) {
  EXPECT_FALSE(authority_->BootstrapSecret(std::string(64, 'a')));
  EXPECT_FALSE(authority_->UnlockBootstrap("wrong passphrase"));
  ASSERT_TRUE(authority_->UnlockBootstrap(kPass));
  auto k1 = authority_->BootstrapSecret(std::string(64, 'a'));
  auto k2 = authority_->BootstrapSecret(std::string(64, 'b'));
  ASSERT_TRUE(k1 && k2);
  EXPECT_EQ(k1->size(), 32u);
  EXPECT_NE(*k1, *k2);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "keys/bootstrap-master.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AuthorityTest, WrongPassphraseIsUnauthenticated) {
  auto a = Authority::Open(dir_, clock_);
  ASSERT_TRUE(a);
  auto r = (*a)->Unlock(CaName::kManufacturing, "wrong passphrase");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnauthenticated);
  auto issue = (*a)->Issue(Request(x509::ProfileKind::kIDevID, NewCsr(), "SN-9"));
  ASSERT_FALSE(issue);
  EXPECT_EQ(issue.error().code(), Code::kFailedPrecondition);
}

TEST_F(AuthorityTest, IssuerKeyIsTheUnlockedKeyOfItsCertificate) {
  for (CaName name : {CaName::kManufacturing, CaName::kOperational}) {
    const crypto::Signer* key = authority_->issuer_key(name);
    ASSERT_NE(key, nullptr) << CaNameText(name);
    EXPECT_EQ(key->public_key(), authority_->certificate(name).public_key());
  }
  EXPECT_EQ(authority_->issuer_key(CaName::kRoot), nullptr);
  auto locked = Authority::Open(dir_, clock_);
  ASSERT_TRUE(locked);
  EXPECT_EQ((*locked)->issuer_key(CaName::kManufacturing), nullptr);
  EXPECT_EQ((*locked)->issuer_key(CaName::kOperational), nullptr);
}

// A CSR's key is the device's own unless the caller says where it was made.
TEST_F(AuthorityTest, CertificatesRecordWhereTheirKeyWasMade) {
  auto own = authority_->Issue(Request(x509::ProfileKind::kIDevID, NewCsr(), "SN-O1"));
  ASSERT_TRUE(own) << own.error().ToString();
  EXPECT_EQ(authority_->store().GetCertificate(own->serial_hex())->key_origin,
            store::KeyOrigin::kDevice);
  auto req = Request(x509::ProfileKind::kIDevID, NewCsr(), "SN-O2");
  req.key_origin = store::KeyOrigin::kHardware;
  auto hardware = authority_->Issue(req);
  ASSERT_TRUE(hardware) << hardware.error().ToString();
  EXPECT_EQ(authority_->store().GetCertificate(hardware->serial_hex())->key_origin,
            store::KeyOrigin::kHardware);
}

TEST_F(AuthorityTest, PrepareGeneratedSignsWithoutACsrAndKeepsTheOtherRules) {
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key);
  Authority::GeneratedKeyRequest req{.key = *key,
                                     .serial = "SN-G1",
                                     .hardware_fingerprint = {0x01, 0x02},
                                     .model = "cam",
                                     .batch = "b1"};
  auto prepared = authority_->PrepareGenerated(req);
  ASSERT_TRUE(prepared) << prepared.error().error.ToString();
  EXPECT_EQ(prepared->certificate.public_key(), key->public_key());
  EXPECT_EQ(prepared->device_id, x509::ComputeDeviceId("SN-G1", Bytes{0x01, 0x02}));
  // Nothing is written until the caller commits.
  EXPECT_FALSE(authority_->store().GetDeviceBySerial("SN-G1"));
  ASSERT_TRUE(authority_->store().Commit(prepared->batch));
  EXPECT_EQ(authority_->store().GetDeviceBySerial("SN-G1")->batch, "b1");
  // The key was made here, not on the device: the record says so (compliance report).
  EXPECT_EQ(authority_->store().GetCertificate(prepared->certificate.serial_hex())->key_origin,
            store::KeyOrigin::kGenerated);

  // The same key for another device, and the same serial again, are refused and audited.
  req.serial = "SN-G2";
  auto dup_key = authority_->PrepareGenerated(req);
  ASSERT_FALSE(dup_key);
  EXPECT_EQ(dup_key.error().error.code(), Code::kAlreadyExists);
  EXPECT_TRUE(dup_key.error().audit.has_value());
  req.serial = "SN-G1";
  req.key = *crypto::PrivateKey::Generate();
  auto dup_serial = authority_->PrepareGenerated(req);
  ASSERT_FALSE(dup_serial);
  EXPECT_EQ(dup_serial.error().error.code(), Code::kAlreadyExists);
  // Key types are still checked: P-384 is outside the default policy.
  req.serial = "SN-G3";
  req.key = *crypto::PrivateKey::Generate(crypto::KeyType::kP384);
  EXPECT_FALSE(authority_->PrepareGenerated(req));
}

// A batch caller that checked uniqueness itself: no store read per request, and the store's
// unique constraints still refuse a serial or a key that is taken, at commit.
TEST_F(AuthorityTest, UniquenessCheckedByTheCallerLeavesTheStoreAsTheGuard) {
  auto key = crypto::PrivateKey::Generate();
  Authority::GeneratedKeyRequest req{.key = *key,
                                     .serial = "SN-U1",
                                     .hardware_fingerprint = {0x01, 0x02},
                                     .model = "cam",
                                     .batch = "b1",
                                     .uniqueness_checked = true};
  auto first = authority_->PrepareGenerated(req);
  ASSERT_TRUE(first) << first.error().error.ToString();
  ASSERT_TRUE(authority_->store().Commit(first->batch));

  // The same serial (another chip): prepared (the store was not read), refused by the store at
  // commit.
  req.key = *crypto::PrivateKey::Generate();
  req.hardware_fingerprint = {0x03, 0x04};
  auto same_serial = authority_->PrepareGenerated(req);
  ASSERT_TRUE(same_serial);
  auto committed = authority_->store().Commit(same_serial->batch);
  ASSERT_FALSE(committed);
  EXPECT_EQ(committed.error().code(), Code::kAlreadyExists);
  EXPECT_NE(committed.error().message().find("serial"), std::string::npos)
      << committed.error().ToString();

  // The same key for another device, through a CSR: likewise.
  auto csr = x509::MakeCsr(*key, {.common_name = "device"});
  IssueRequest ireq = Request(x509::ProfileKind::kIDevID, *csr, "SN-U2");
  ireq.uniqueness_checked = true;
  auto same_key = authority_->Prepare(ireq);
  ASSERT_TRUE(same_key);
  committed = authority_->store().Commit(same_key->batch);
  ASSERT_FALSE(committed);
  EXPECT_EQ(committed.error().code(), Code::kAlreadyExists);
  EXPECT_NE(committed.error().message().find("public key"), std::string::npos)
      << committed.error().ToString();

  // Without the flag both are refused before signing, as always.
  ireq.uniqueness_checked = false;
  EXPECT_FALSE(authority_->Prepare(ireq));
  // The flag concerns IDevIDs only: an LDevID still reads the device.
  auto ld = authority_->Prepare({.profile = x509::ProfileKind::kLDevID,
                                 .csr = NewCsr(),
                                 .device_id = std::string(64, 'a'),
                                 .uniqueness_checked = true});
  ASSERT_FALSE(ld);
  EXPECT_EQ(ld.error().error.code(), Code::kNotFound);
}

}  // namespace
}  // namespace iotpki::ca
