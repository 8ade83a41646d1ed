// What only the SQLite backend promises: file modes, pragmas, error mapping for SQLite's own
// failure modes, and reads that do not wait for the writer. Behaviour common to every backend is
// in store_conformance_test.cc.
#include "iotpki/store/sqlite/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/audit.h"

namespace iotpki::store {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNow = 1'750'000'000;

std::string DeviceId(int n) {
  return ToHex(crypto::Sha256(AsBytes("sqlite-device-" + std::to_string(n))));
}

Device MakeDevice(int n) {
  Device d;
  d.device_id = DeviceId(n);
  d.serial = "S" + std::to_string(n);
  d.model = "m";
  d.batch = "b";
  return d;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/iotpki-sqlite-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ / "iotpki.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<SqliteStore> MustOpen(const SqliteOptions& options = {}) {
    auto store = SqliteStore::Open(path_, clock_, options);
    EXPECT_TRUE(store) << store.error().ToString();
    return store ? std::move(*store) : nullptr;
  }

  static int Mode(const std::filesystem::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return -1;
    return static_cast<int>(st.st_mode & 0777);
  }

  FakeClock clock_{kNow};
  std::filesystem::path dir_;
  std::filesystem::path path_;
};

TEST_F(SqliteStoreTest, DatabaseFilesAreOwnerOnly) {
  mode_t old = ::umask(022);
  auto store = MustOpen();
  ::umask(old);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Commit(WriteBatch().InsertDevice(MakeDevice(1))));
  EXPECT_EQ(Mode(path_), 0600);
  ASSERT_TRUE(std::filesystem::exists(path_.string() + "-wal"));
  EXPECT_EQ(Mode(path_.string() + "-wal"), 0600);
  EXPECT_EQ(Mode(path_.string() + "-shm"), 0600);
}

TEST_F(SqliteStoreTest, PragmasAreApplied) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->QueryForTest("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(*store->QueryForTest("PRAGMA foreign_keys"), "1");
  EXPECT_EQ(*store->QueryForTest("PRAGMA synchronous"), "2");  // FULL
  EXPECT_EQ(*store->QueryForTest("PRAGMA busy_timeout"), "5000");
  // Checkpoints every 64 MiB of WAL rather than SQLite's 4 MB (factory groups, sqlite_store.h).
  EXPECT_EQ(*store->QueryForTest("PRAGMA wal_autocheckpoint"), "16384");
  store.reset();
  SqliteOptions normal;
  normal.synchronous = SqliteOptions::Synchronous::kNormal;
  normal.wal_autocheckpoint_pages = 500;
  store = MustOpen(normal);
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->QueryForTest("PRAGMA synchronous"), "1");
  EXPECT_EQ(*store->QueryForTest("PRAGMA wal_autocheckpoint"), "500");
}

TEST_F(SqliteStoreTest, MigrationsAreRecordedOnce) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(MustOpen());
  auto store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->QueryForTest("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(kLatestSchemaVersion));
}

// A store written by schema version 1 (before the count tables): migration 2 fills them from the
// existing rows, so the counts are those the version-1 queries gave. The version-1 store is made
// by dropping what migration 2 added; the version-1 tables are unchanged by it.
TEST_F(SqliteStoreTest, MigrationFillsTheCountTablesFromExistingRows) {
  constexpr int64_t kDay = 86400;
  auto store = MustOpen();
  ASSERT_TRUE(store);
  WriteBatch b;
  for (int i = 0; i < 30; ++i) {
    Device d = MakeDevice(i);
    d.model = i % 3 ? "m1" : "m2";
    d.batch = i % 2 ? "b1" : "b2";
    b.InsertDevice(d);
    // Two working certificates for every device (a renewal in flight), one for some; the
    // earlier of the two is revoked for every fifth device.
    for (int k = 0; k < 1 + i % 2; ++k) {
      CertificateRecord c;
      c.serial = ToHex(crypto::Sha256(AsBytes("cert-" + std::to_string(i * 10 + k)))).substr(0, 32);
      c.device_id = d.device_id;
      c.profile = CertProfile::kLDevId;
      c.issuer = "operational";
      c.subject = "CN=x";
      c.not_before = kNow - kDay;
      c.not_after = kNow + (i % 40 + k * 20) * kDay - i * 997;
      c.key_fingerprint = ToHex(crypto::Sha256(AsBytes("key-" + std::to_string(i))));
      c.der = {0x30, 0x00};
      b.InsertCertificate(c);
      if (k == 0 && i % 5 == 0) b.RevokeCertificate(c.serial, RevocationReason::kSuperseded);
    }
    if (i % 4 == 0)
      b.UpdateDeviceState(d.device_id, DeviceState::kManufactured, DeviceState::kActive);
  }
  ASSERT_TRUE(store->Commit(b));
  std::vector<DeviceFilter> filters;
  for (auto window : {std::optional<std::chrono::seconds>(),
                      std::optional<std::chrono::seconds>(std::chrono::days(30)),
                      std::optional<std::chrono::seconds>(std::chrono::days(2))}) {
    filters.push_back({.expiring_within = window});
    filters.push_back({.state = DeviceState::kActive, .expiring_within = window});
    filters.push_back({.model = "m1", .batch = "b2", .expiring_within = window});
  }
  std::vector<int64_t> before;
  for (const auto& f : filters) before.push_back(*store->CountDevices(f));
  EXPECT_EQ(before[0], 30);
  ASSERT_TRUE(store->ExecForTest(
      "DROP TABLE device_counts; DROP TABLE expiry_certs; DROP TABLE expiry_counts; "
      "DELETE FROM schema_migrations WHERE version = 2"));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->SchemaVersion(), 2);
  for (size_t i = 0; i < filters.size(); ++i) {
    EXPECT_EQ(*store->CountDevices(filters[i]), before[i]) << "filter " << i;
  }
  // The filled tables are maintained from here on like any others.
  ASSERT_TRUE(store->Commit(WriteBatch().UpdateDeviceState(DeviceId(1), DeviceState::kManufactured,
                                                           DeviceState::kActive)));
  EXPECT_EQ(*store->CountDevices(filters[1]), before[1] + 1);
  EXPECT_EQ(*store->CountDevices(filters[4]), before[4] + 1);  // it expires within 30 days
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  {
    auto store = MustOpen();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->ExecForTest(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)"));
  }
  auto reopened = SqliteStore::Open(path_, clock_);
  ASSERT_FALSE(reopened);
  EXPECT_EQ(reopened.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(reopened.error().message(), HasSubstr("newer"));
}

TEST_F(SqliteStoreTest, GarbageFileIsDataLoss) {
  {
    std::ofstream out(path_);
    out << std::string(8192, 'x');
  }
  auto store = SqliteStore::Open(path_, clock_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code(), Code::kDataLoss);
}

TEST_F(SqliteStoreTest, MissingDirectoryIsFailedPrecondition) {
  auto store = SqliteStore::Open(dir_ / "missing" / "iotpki.db", clock_);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code(), Code::kFailedPrecondition);
}

TEST_F(SqliteStoreTest, FullDiskIsResourceExhaustedAndWritesNothing) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Commit(WriteBatch().InsertDevice(MakeDevice(0))));
  // Cap the database at its current size plus a page: a batch of 2000 devices cannot fit.
  std::string pages = *store->QueryForTest("PRAGMA page_count");
  ASSERT_TRUE(
      store->ExecForTest("PRAGMA max_page_count = " + std::to_string(std::stoi(pages) + 1)));
  WriteBatch big;
  for (int i = 1; i <= 2000; ++i) {
    big.InsertDevice(MakeDevice(i)).AppendAudit(AuditEvent{"t", "device.add", "x", "{}"});
  }
  auto r = store->Commit(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kResourceExhausted) << r.error().ToString();
  EXPECT_EQ(*store->CountDevices({}), 1);
  EXPECT_TRUE(store->ReadAudit(1, 10)->empty());
  // Once space is back, the same batch goes through.
  ASSERT_TRUE(store->ExecForTest("PRAGMA max_page_count = 1073741823"));
  ASSERT_TRUE(store->Commit(big));
  EXPECT_EQ(*store->CountDevices({}), 2001);
  EXPECT_TRUE(VerifyAuditChain(*store)->intact);
}

TEST_F(SqliteStoreTest, LockedDatabaseIsUnavailable) {
  auto holder = MustOpen();
  SqliteOptions impatient;
  impatient.busy_timeout_ms = 50;
  auto other = MustOpen(impatient);
  ASSERT_TRUE(holder && other);
  ASSERT_TRUE(holder->ExecForTest("BEGIN IMMEDIATE"));
  auto r = other->Commit(WriteBatch().InsertDevice(MakeDevice(1)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  // Readers are not blocked by a writer, in this process or another.
  EXPECT_TRUE(other->CountDevices({}));
  EXPECT_TRUE(holder->CountDevices({}));
  ASSERT_TRUE(holder->ExecForTest("ROLLBACK"));
  EXPECT_TRUE(other->Commit(WriteBatch().InsertDevice(MakeDevice(1))));
}

TEST_F(SqliteStoreTest, CommitsAreVisibleToOtherConnections) {
  auto a = MustOpen();
  auto b = MustOpen();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->GetDevice(DeviceId(1)).error().code() == Code::kNotFound);
  ASSERT_TRUE(a->Commit(WriteBatch().InsertDevice(MakeDevice(1))));
  EXPECT_TRUE(b->GetDevice(DeviceId(1)));
  EXPECT_TRUE(a->GetDevice(DeviceId(1)));
}

TEST_F(SqliteStoreTest, RecomputedHashIsCaughtAtTheNextRow) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  WriteBatch b;
  for (int i = 0; i < 4; ++i) b.AppendAudit(AuditEvent{"t", "cert.issue", std::to_string(i), "{}"});
  ASSERT_TRUE(store->Commit(b));
  auto rows = *store->ReadAudit(1, 10);
  // A forger who rewrites row 2 and fixes its own hash still breaks the link to row 3.
  AuditEvent forged{"t", "cert.issue", "1", R"({"forged":true})"};
  Bytes hash = ComputeAuditHash(rows[1].prev_hash, 2, rows[1].time, forged);
  ASSERT_TRUE(store->ExecForTest("UPDATE audit_log SET details = '{\"forged\":true}', hash = X'" +
                                 ToHex(hash) + "' WHERE seq = 2"));
  auto verdict = VerifyAuditChain(*store);
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->intact);
  EXPECT_EQ(verdict->first_broken_seq, 3);
  EXPECT_EQ(verdict->problem, AuditProblem::kPrevHashMismatch);
}

TEST_F(SqliteStoreTest, MemoryStoresAreIndependent) {
  auto a = SqliteStore::Open(":memory:", clock_);
  auto b = SqliteStore::Open(":memory:", clock_);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE((*a)->Commit(WriteBatch().InsertDevice(MakeDevice(1))));
  EXPECT_EQ(*(*a)->CountDevices({}), 1);
  EXPECT_EQ(*(*b)->CountDevices({}), 0);
  EXPECT_FALSE(std::filesystem::exists(":memory:"));
}

}  // namespace
}  // namespace iotpki::store
