// What only the SQLite backend promises: file modes, pragmas, error mapping for SQLite's own
// failure modes, and reads that do not wait for the writer. Behaviour common to every backend is
// in store_conformance_test.cc.
#include "iotpki/store/sqlite/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

// Undoes migration 8: no stranding columns or index.
constexpr const char* kBackToVersion7 = R"sql(
DROP INDEX devices_stranding;
ALTER TABLE devices DROP COLUMN ldevid_not_after;
ALTER TABLE devices DROP COLUMN heard_at;
DELETE FROM schema_migrations WHERE version = 8;
)sql";

// Undoes migration 7 (after kBackToVersion7): no key origins, issuance counts, audit index or
// operator certificates.
constexpr const char* kBackToVersion6 = R"sql(
DROP TABLE operator_certificates;
DROP INDEX audit_by_subject;
DROP TABLE issuance_counts;
ALTER TABLE certificates DROP COLUMN key_origin;
DELETE FROM schema_migrations WHERE version = 7;
)sql";

// Undoes migration 6 (after kBackToVersion6): no campaign tables, no index of certificates by
// issuer.
constexpr const char* kBackToVersion5 = R"sql(
DROP TABLE campaign_counts;
DROP TABLE rotation_jobs;
DROP TABLE campaigns;
DROP INDEX certificates_by_issuer;
DELETE FROM schema_migrations WHERE version = 6;
)sql";

// Undoes migration 5 (after kBackToVersion5): no index of revoked certificates by issuer, no
// first_used_at, no index of revoked certificates by time.
constexpr const char* kBackToVersion4 = R"sql(
DROP INDEX certificates_revoked_by_issuer;
DROP INDEX certificates_revoked;
ALTER TABLE certificates DROP COLUMN first_used_at;
DELETE FROM schema_migrations WHERE version = 5;
)sql";

// Undoes migration 4 (after kBackToVersion4): the tables of schema version 3 (device ids and key
// fingerprints as lowercase hex text, certificates and public keys naming their device by
// device_id), the rows and their order kept.
constexpr const char* kBackToVersion3 = R"sql(
PRAGMA foreign_keys = OFF;
CREATE TABLE devices_v3 (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL UNIQUE,
  serial TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('manufactured', 'active', 'suspended', 'decommissioned')),
  hardware_fingerprint TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO devices_v3 SELECT seq, lower(hex(device_id)), serial, model, batch, state,
  hardware_fingerprint, created_at, updated_at FROM devices ORDER BY seq;
CREATE TABLE certificates_v3 (
  serial TEXT NOT NULL PRIMARY KEY,
  device_id TEXT REFERENCES devices (device_id),
  profile TEXT NOT NULL
    CHECK (profile IN ('root', 'issuing-ca', 'idevid', 'ldevid', 'server')),
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  key_fingerprint TEXT NOT NULL,
  der BLOB NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
  revoked_at INTEGER,
  revocation_reason TEXT,
  created_at INTEGER NOT NULL,
  CHECK ((status = 'valid') = (revoked_at IS NULL))
) STRICT;
INSERT INTO certificates_v3 SELECT c.serial, lower(hex(d.device_id)), c.profile, c.issuer,
  c.subject, c.not_before, c.not_after, lower(hex(c.key_fingerprint)), c.der, c.status,
  c.revoked_at, c.revocation_reason, c.created_at
  FROM certificates c LEFT JOIN devices d ON d.seq = c.device_seq ORDER BY c.rowid;
CREATE TABLE public_keys_v3 (
  key_fingerprint TEXT NOT NULL PRIMARY KEY,
  device_id TEXT REFERENCES devices (device_id),
  first_serial TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
INSERT INTO public_keys_v3 SELECT lower(hex(p.key_fingerprint)), lower(hex(d.device_id)),
  p.first_serial, p.created_at FROM public_keys p LEFT JOIN devices d ON d.seq = p.device_seq;
DROP TABLE public_keys;
DROP TABLE certificates;
DROP TABLE devices;
ALTER TABLE devices_v3 RENAME TO devices;
ALTER TABLE certificates_v3 RENAME TO certificates;
ALTER TABLE public_keys_v3 RENAME TO public_keys;
CREATE INDEX devices_by_state ON devices (state, seq);
CREATE INDEX devices_by_model ON devices (model, seq);
CREATE INDEX devices_by_batch ON devices (batch, seq);
CREATE INDEX certificates_by_expiry ON certificates (status, not_after, serial, device_id);
CREATE INDEX certificates_by_device ON certificates (device_id, status, not_after, serial);
DELETE FROM schema_migrations WHERE version = 4;
PRAGMA foreign_keys = ON;
)sql";

// Undoes migration 3 (on a version-3 store: after kBackToVersion3): the tables and indexes of
// schema version 2 (devices keyed by device_id and
// listed in its order, certificates_by_key), the rows kept. The row order of the rebuilt devices
// table is device_id's, as a version-2 store's inserts would not have it: migration 3 must order
// by created_at.
constexpr const char* kBackToVersion2 = R"sql(
PRAGMA foreign_keys = OFF;
CREATE TABLE devices_v2 (
  device_id TEXT NOT NULL PRIMARY KEY,
  serial TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('manufactured', 'active', 'suspended', 'decommissioned')),
  hardware_fingerprint TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO devices_v2 SELECT device_id, serial, model, batch, state, hardware_fingerprint,
  created_at, updated_at FROM devices ORDER BY device_id;
DROP TABLE devices;
ALTER TABLE devices_v2 RENAME TO devices;
CREATE INDEX devices_by_state ON devices (state, device_id);
CREATE INDEX devices_by_model ON devices (model, device_id);
CREATE INDEX devices_by_batch ON devices (batch, device_id);
CREATE INDEX certificates_by_key ON certificates (key_fingerprint);
DELETE FROM schema_migrations WHERE version = 3;
PRAGMA foreign_keys = ON;
)sql";

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

  // After a migration: at the latest version, sound, every reference resolving, enforcement on.
  static void ExpectMigratedIntact(SqliteStore& store) {
    EXPECT_EQ(*store.SchemaVersion(), kLatestSchemaVersion);
    EXPECT_EQ(*store.QueryForTest("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(*store.QueryForTest("SELECT COUNT(*) FROM pragma_foreign_key_check"), "0");
    EXPECT_EQ(*store.QueryForTest("PRAGMA foreign_keys"), "1");
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
  // Checkpoints every 256 MiB of WAL rather than SQLite's 4 MB, and a writer cache of 512 MiB
  // (factory groups, sqlite_store.h).
  EXPECT_EQ(*store->QueryForTest("PRAGMA wal_autocheckpoint"), "65536");
  EXPECT_EQ(*store->QueryForTest("PRAGMA cache_size"), "-524288");
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
  ASSERT_TRUE(store->ExecForTest(kBackToVersion7));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion6));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion5));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion4));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion3));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion2));
  ASSERT_TRUE(store->ExecForTest(
      "DROP TABLE device_counts; DROP TABLE expiry_certs; DROP TABLE expiry_counts; "
      "DELETE FROM schema_migrations WHERE version = 2"));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->SchemaVersion(), kLatestSchemaVersion);
  for (size_t i = 0; i < filters.size(); ++i) {
    auto n = store->CountDevices(filters[i]);
    ASSERT_TRUE(n) << n.error().ToString();
    EXPECT_EQ(*n, before[i]) << "filter " << i;
  }
  // The filled tables are maintained from here on like any others.
  ASSERT_TRUE(store->Commit(WriteBatch().UpdateDeviceState(DeviceId(1), DeviceState::kManufactured,
                                                           DeviceState::kActive)));
  EXPECT_EQ(*store->CountDevices(filters[1]), before[1] + 1);
  EXPECT_EQ(*store->CountDevices(filters[4]), before[4] + 1);  // it expires within 30 days
}

// A version-2 store: migration 3 numbers its devices in the order they were added (created_at,
// then their old row order), keeps every row and reference, and leaves foreign keys enforced.
TEST_F(SqliteStoreTest, MigrationFiveKeepsRevocationsAndStartsWithoutFirstUse) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  WriteBatch b;
  b.InsertDevice(MakeDevice(1));
  for (int n = 0; n < 2; ++n) {
    CertificateRecord c;
    c.serial = "5e0" + std::to_string(n);
    c.device_id = DeviceId(1);
    c.profile = CertProfile::kLDevId;
    c.issuer = "operational";
    c.subject = "CN=x";
    c.not_before = kNow;
    c.not_after = kNow + 90 * 86400;
    c.key_fingerprint = ToHex(crypto::Sha256(AsBytes("m5-key-" + std::to_string(n))));
    c.der = {0x30, 0x00};
    b.InsertCertificate(c);
  }
  b.RevokeCertificate("5e00", RevocationReason::kSuperseded);
  auto committed = store->Commit(b);
  ASSERT_TRUE(committed) << committed.error().ToString();
  ASSERT_TRUE(store->ExecForTest(kBackToVersion7));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion6));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion5));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion4));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  ExpectMigratedIntact(*store);
  auto revoked = store->ListRevokedCertificates({}, 10, "");
  ASSERT_TRUE(revoked) << revoked.error().ToString();
  ASSERT_EQ(revoked->certificates.size(), 1u);
  EXPECT_EQ(revoked->certificates[0].serial, "5e00");
  EXPECT_EQ(store->GetCertificate("5e01")->first_used_at, std::nullopt);
  ASSERT_TRUE(store->Commit(WriteBatch().MarkCertificateUsed("5e01")));
  EXPECT_EQ(store->GetCertificate("5e01")->first_used_at, kNow);
}

// A version-6 store: migration 7 counts the certificates it holds per day of recording, with
// their key origin unknown, and records the operator certificates its admin.issue rows name
// (a row that is not of that shape is skipped, not fatal).
TEST_F(SqliteStoreTest, MigrationSevenCountsIssuanceAndRecordsOperators) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  for (int day = 0; day < 2; ++day) {
    WriteBatch b;
    for (int n = 0; n < 2 + day; ++n) {
      int i = day * 10 + n;
      b.InsertDevice(MakeDevice(i));
      CertificateRecord c;
      c.serial = "7e" + std::to_string(10 + i);
      c.device_id = DeviceId(i);
      c.profile = CertProfile::kIDevId;
      c.issuer = "manufacturing";
      c.subject = "CN=x";
      c.not_before = kNow;
      c.not_after = kNoExpiryUnix;
      c.key_fingerprint = ToHex(crypto::Sha256(AsBytes("m7-key-" + std::to_string(i))));
      c.der = {0x30, 0x00};
      c.key_origin = KeyOrigin::kHardware;
      b.InsertCertificate(c);
    }
    b.AppendAudit({.actor = "cli",
                   .action = "admin.issue",
                   .subject = "0a" + std::to_string(day),
                   .details = "{\"name\":\"op" + std::to_string(day) +
                              "\",\"role\":\"operator\",\"not_after\":" +
                              std::to_string(kNow + 86400) + ",\"fingerprint\":\"ab\"}"});
    b.AppendAudit({.actor = "cli", .action = "admin.issue", .subject = "0b", .details = "{not"});
    ASSERT_TRUE(store->Commit(b));
    clock_.Advance(std::chrono::days(1));
  }
  ASSERT_TRUE(store->ExecForTest(kBackToVersion7));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion6));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  ExpectMigratedIntact(*store);
  int64_t day0 = kNow / 86400;
  auto counts = store->CountIssuance(day0, day0 + 1);
  ASSERT_TRUE(counts) << counts.error().ToString();
  ASSERT_EQ(counts->size(), 2u);
  EXPECT_EQ((*counts)[0],
            (Store::IssuanceCount{day0, CertProfile::kIDevId, "manufacturing", std::nullopt, 2}));
  EXPECT_EQ((*counts)[1], (Store::IssuanceCount{day0 + 1, CertProfile::kIDevId, "manufacturing",
                                                std::nullopt, 3}));
  EXPECT_EQ(store->GetCertificate("7e10")->key_origin, std::nullopt);
  auto ops = store->ListOperatorCertificates();
  ASSERT_TRUE(ops) << ops.error().ToString();
  ASSERT_EQ(ops->size(), 2u);
  EXPECT_EQ((*ops)[0].serial, "0a0");
  EXPECT_EQ((*ops)[0].name, "op0");
  EXPECT_EQ((*ops)[0].role, "operator");
  EXPECT_EQ((*ops)[0].not_after, kNow + 86400);
  EXPECT_EQ((*ops)[1].created_at, kNow + 86400);
}

TEST_F(SqliteStoreTest, MigrationNumbersDevicesInInsertionOrder) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  std::vector<std::string> added;
  for (int group = 0; group < 3; ++group) {
    WriteBatch b;
    std::vector<std::string> ids;
    for (int i = group * 4; i < group * 4 + 4; ++i) {
      b.InsertDevice(MakeDevice(i));
      ids.push_back(DeviceId(i));
      CertificateRecord c;
      c.serial = ToHex(crypto::Sha256(AsBytes("m3-cert-" + std::to_string(i)))).substr(0, 32);
      c.device_id = DeviceId(i);
      c.profile = CertProfile::kIDevId;
      c.issuer = "manufacturing";
      c.subject = "CN=x";
      c.not_before = kNow;
      c.not_after = kNoExpiryUnix;
      c.key_fingerprint = ToHex(crypto::Sha256(AsBytes("m3-key-" + std::to_string(i))));
      c.der = {0x30, 0x00};
      b.InsertCertificate(c);
    }
    ASSERT_TRUE(store->Commit(b));
    // Within one commit (one created_at) the old row order, device_id's after kBackToVersion2.
    std::sort(ids.begin(), ids.end());
    added.insert(added.end(), ids.begin(), ids.end());
    clock_.Advance(std::chrono::seconds(10));
  }
  ASSERT_TRUE(store->ExecForTest(kBackToVersion7));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion6));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion5));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion4));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion3));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion2));
  store.reset();
  store = MustOpen();
  ASSERT_TRUE(store);
  ExpectMigratedIntact(*store);
  EXPECT_EQ(*store->QueryForTest("SELECT COUNT(*) FROM sqlite_schema WHERE name = "
                                 "'certificates_by_key'"),
            "0");
  std::vector<std::string> listed;
  std::string cursor;
  do {
    auto page = store->ListDevices({}, 5, cursor);
    ASSERT_TRUE(page) << page.error().ToString();
    for (const auto& d : page->devices) listed.push_back(d.device.device_id);
    cursor = page->next_cursor;
  } while (!cursor.empty());
  EXPECT_EQ(listed, added);
  auto holders =
      store->FindCertificatesByKey(ToHex(crypto::Sha256(AsBytes("m3-key-" + std::to_string(7)))));
  ASSERT_TRUE(holders);
  ASSERT_EQ(holders->size(), 1u);
  EXPECT_EQ((*holders)[0].device_id, DeviceId(7));
  // Enforcement is back on: a certificate for an unknown device is refused.
  CertificateRecord orphan;
  orphan.serial = std::string(32, 'a');
  orphan.device_id = DeviceId(99);
  orphan.profile = CertProfile::kIDevId;
  orphan.issuer = "manufacturing";
  orphan.subject = "CN=x";
  orphan.not_before = kNow;
  orphan.not_after = kNoExpiryUnix;
  orphan.key_fingerprint = std::string(64, 'b');
  orphan.der = {0x30, 0x00};
  auto refused = store->Commit(WriteBatch().InsertCertificate(orphan));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kNotFound);
  // New devices go after the migrated ones.
  ASSERT_TRUE(store->Commit(WriteBatch().InsertDevice(MakeDevice(50))));
  auto all = store->ListDevices({}, 100, "");
  ASSERT_TRUE(all);
  ASSERT_EQ(all->devices.size(), added.size() + 1);
  EXPECT_EQ(all->devices.back().device.device_id, DeviceId(50));
}

// Everything a store holds, as the API reads it: what a migration must keep.
struct Snapshot {
  std::vector<Device> devices;
  std::vector<std::vector<CertificateRecord>> certificates;  // per device
  std::vector<std::vector<CertificateRecord>> by_key;        // per key of kKeys
  std::vector<CertificateRecord> ca_side;
  std::vector<int64_t> counts;
  std::vector<std::vector<ListedDevice>> expiring;
  bool operator==(const Snapshot&) const = default;
};

std::string KeyOf(int n) { return ToHex(crypto::Sha256(AsBytes("m4-key-" + std::to_string(n)))); }

CertificateRecord MakeCert(int n, std::optional<std::string> device, int key, int64_t not_after) {
  CertificateRecord c;
  c.serial = ToHex(crypto::Sha256(AsBytes("m4-cert-" + std::to_string(n)))).substr(0, 32);
  c.device_id = std::move(device);
  c.profile = c.device_id
                  ? (not_after == kNoExpiryUnix ? CertProfile::kIDevId : CertProfile::kLDevId)
                  : CertProfile::kIssuingCa;
  c.issuer = "ca";
  c.subject = "CN=" + std::to_string(n);
  c.not_before = kNow - 100;
  c.not_after = not_after;
  c.key_fingerprint = KeyOf(key);
  c.der = {0x30, 0x01, static_cast<uint8_t>(n)};
  return c;
}

Snapshot Take(SqliteStore& store, int devices, int keys) {
  Snapshot s;
  for (int i = 0; i < devices; ++i) {
    auto d = store.GetDevice(DeviceId(i));
    EXPECT_TRUE(d) << d.error().ToString();
    if (d) s.devices.push_back(*d);
    auto certs = store.ListCertificatesForDevice(DeviceId(i));
    EXPECT_TRUE(certs) << certs.error().ToString();
    if (certs) s.certificates.push_back(*certs);
  }
  for (int k = 0; k < keys; ++k) {
    auto found = store.FindCertificatesByKey(KeyOf(k));
    EXPECT_TRUE(found) << found.error().ToString();
    if (found) s.by_key.push_back(*found);
  }
  auto ca = store.GetCertificate(MakeCert(1000, std::nullopt, 1000, 0).serial);
  EXPECT_TRUE(ca) << ca.error().ToString();
  if (ca) s.ca_side.push_back(*ca);
  for (const DeviceFilter& f :
       {DeviceFilter{}, DeviceFilter{.state = DeviceState::kActive},
        DeviceFilter{.expiring_within = std::chrono::days(30)},
        DeviceFilter{.model = "m1", .expiring_within = std::chrono::days(400)}}) {
    auto n = store.CountDevices(f);
    EXPECT_TRUE(n) << n.error().ToString();
    if (n) s.counts.push_back(*n);
    if (!f.expiring_within) continue;
    auto page = store.ListDevices(f, 100, "");
    EXPECT_TRUE(page) << page.error().ToString();
    if (page) s.expiring.push_back(page->devices);
  }
  return s;
}

// A version-3 store (hex text ids): migration 4 turns ids and fingerprints into blobs and names
// devices by seq, and every read gives what it gave before: devices, their certificates (IDevIDs,
// renewals, a revoked one), the owners of keys (a device's, the CA side's), counts and listings.
TEST_F(SqliteStoreTest, MigrationToBinaryIdsKeepsWhatTheApiReads) {
  constexpr int kDevices = 12;
  constexpr int64_t kDay = 86400;
  auto store = MustOpen();
  ASSERT_TRUE(store);
  WriteBatch b;
  for (int i = 0; i < kDevices; ++i) {
    Device d = MakeDevice(i);
    d.model = i % 3 ? "m1" : "m2";
    if (i % 2) d.hardware_fingerprint = "0a0b0c";
    b.InsertDevice(d);
    b.InsertCertificate(MakeCert(i * 10, d.device_id, i * 10, kNoExpiryUnix));
    if (i % 3 == 0) continue;
    // A working certificate, a renewal with the same key for some, one revoked for others.
    b.InsertCertificate(MakeCert(i * 10 + 1, d.device_id, i * 10 + 1, kNow + (i * 7) * kDay));
    if (i % 2) {
      b.InsertCertificate(MakeCert(i * 10 + 2, d.device_id, i * 10 + 1, kNow + 300 * kDay));
    }
    if (i % 4 == 1) {
      b.RevokeCertificate(MakeCert(i * 10 + 1, d.device_id, 0, 0).serial,
                          RevocationReason::kSuperseded);
    }
    if (i % 5 == 2) {
      b.UpdateDeviceState(d.device_id, DeviceState::kManufactured, DeviceState::kActive);
    }
  }
  b.InsertCertificate(MakeCert(1000, std::nullopt, 1000, kNow + 3650 * kDay));
  ASSERT_TRUE(store->Commit(b));
  constexpr int kKeys = kDevices * 10;
  Snapshot before = Take(*store, kDevices, kKeys);
  ASSERT_EQ(before.devices.size(), static_cast<size_t>(kDevices));
  EXPECT_EQ(before.counts[0], kDevices);
  ASSERT_EQ(before.expiring.size(), 2u);
  EXPECT_FALSE(before.expiring[0].empty());
  EXPECT_EQ(before.by_key[11].size(), 2u);  // device 1's renewal kept its key
  ASSERT_TRUE(store->ExecForTest(kBackToVersion7));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion6));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion5));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion4));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion3));
  EXPECT_EQ(*store->QueryForTest("SELECT typeof(device_id) FROM devices LIMIT 1"), "text");
  store.reset();

  store = MustOpen();
  ASSERT_TRUE(store);
  ExpectMigratedIntact(*store);
  EXPECT_EQ(*store->QueryForTest("SELECT COUNT(*) FROM devices WHERE typeof(device_id) = 'blob' "
                                 "AND length(device_id) = 32"),
            std::to_string(kDevices));
  EXPECT_EQ(*store->QueryForTest("SELECT COUNT(*) FROM public_keys WHERE device_seq IS NULL"),
            "1");  // the CA side's key
  Snapshot after = Take(*store, kDevices, kKeys);
  EXPECT_TRUE(after == before);
  EXPECT_EQ(after.devices, before.devices);
  EXPECT_EQ(after.certificates, before.certificates);
  EXPECT_EQ(after.by_key, before.by_key);
  EXPECT_EQ(after.counts, before.counts);
  auto ca_key = store->FindCertificatesByKey(KeyOf(1000));
  ASSERT_TRUE(ca_key);
  ASSERT_EQ(ca_key->size(), 1u);
  EXPECT_FALSE((*ca_key)[0].device_id);

  // The migrated store goes on as a new one: a key of device 1 is refused for device 2.
  CertificateRecord stolen = MakeCert(2000, DeviceId(2), 11, kNow + kDay);
  auto refused = store->Commit(WriteBatch().InsertCertificate(stolen));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kAlreadyExists);
}

// A version-3 store with a device id that is not 64 hex digits (written by hand): migration 4
// stops with an error naming it and the store is left at version 3, unchanged.
TEST_F(SqliteStoreTest, MigrationToBinaryIdsRefusesAMalformedIdAndChangesNothing) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Commit(WriteBatch().InsertDevice(MakeDevice(1)).InsertDevice(MakeDevice(2))));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion7));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion6));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion5));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion4));
  ASSERT_TRUE(store->ExecForTest(kBackToVersion3));
  ASSERT_TRUE(store->ExecForTest("UPDATE devices SET device_id = 'not-hex' WHERE serial = 'S2'"));
  store.reset();
  auto reopened = SqliteStore::Open(path_, clock_, {});
  ASSERT_FALSE(reopened);
  EXPECT_THAT(reopened.error().ToString(), HasSubstr("schema migration 4"));
  EXPECT_THAT(reopened.error().ToString(), HasSubstr("iotpki_unhex"));
  // Nothing changed: fix the row by hand and the migration completes.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    auto read = [](void* out, int, char** values, char**) {
      *static_cast<std::string*>(out) = values[0] ? values[0] : "";
      return 0;
    };
    std::string v;
    ASSERT_EQ(sqlite3_exec(db, "SELECT MAX(version) FROM schema_migrations", read, &v, &error),
              SQLITE_OK);
    EXPECT_EQ(v, "3");
    ASSERT_EQ(sqlite3_exec(db, "SELECT typeof(device_id) FROM devices LIMIT 1", read, &v, nullptr),
              SQLITE_OK);
    EXPECT_EQ(v, "text");
    std::string fix = "UPDATE devices SET device_id = '" + DeviceId(2) + "' WHERE serial = 'S2'";
    ASSERT_EQ(sqlite3_exec(db, fix.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  store = MustOpen();
  ASSERT_TRUE(store);
  EXPECT_EQ(*store->SchemaVersion(), kLatestSchemaVersion);
  auto device = store->GetDevice(DeviceId(2));
  ASSERT_TRUE(device) << device.error().ToString();
  EXPECT_EQ(device->serial, "S2");
}

// FindCertificatesByKey reads the key's owner from public_keys, then that owner's certificates
// through certificates_by_device: never a scan of the certificates.
TEST_F(SqliteStoreTest, CertificatesOfAKeyAreFoundThroughTheirOwner) {
  auto store = MustOpen();
  ASSERT_TRUE(store);
  for (bool device_owner : {true, false}) {
    auto plan = store->ExplainFindCertificatesByKeyForTest(device_owner);
    ASSERT_TRUE(plan) << plan.error().ToString();
    EXPECT_THAT(*plan, HasSubstr("certificates_by_device")) << *plan;
    EXPECT_THAT(*plan, ::testing::Not(HasSubstr("SCAN"))) << *plan;
  }
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
