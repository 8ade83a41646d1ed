// One suite that every Store backend must pass. A backend joins by adding a Backend to
// Backends() below. The PostgreSQL backend runs on a throwaway cluster (pg_test_cluster.h), one
// database per test; without PostgreSQL installed its tests are skipped (failed under CI=true).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/postgres/pg_db.h"
#include "iotpki/store/postgres/pg_store.h"
#include "iotpki/store/postgres/pg_test_cluster.h"
#include "iotpki/store/sqlite/sqlite_store.h"
#include "iotpki/store/store.h"

namespace iotpki::store {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNow = 1'750'000'000;
constexpr int64_t kDay = 86400;

// How the suite reaches a backend. Everything beyond the Store interface that a test needs is a
// hook here, so that the tests themselves stay backend-neutral.
struct Backend {
  std::string name;
  // False for in-memory databases: nothing survives closing the store.
  bool persistent;
  // Creates the test's database (PostgreSQL: a new one, its URL kept in `dir`); Unavailable
  // when the backend cannot run here. Null: nothing to do.
  std::function<Result<void>(const std::filesystem::path& dir)> setup;
  std::function<void(const std::filesystem::path& dir)> teardown;
  // Opens (or reopens) the backend's database for the test directory `dir`.
  std::function<Result<std::unique_ptr<Store>>(const std::filesystem::path& dir, const Clock&)>
      open;
  // Raw SQL on the backend's database, bypassing the store (tampering). Portable SQL only.
  std::function<Result<void>(Store&, std::string_view)> exec_sql;
  // Query plans of exactly what ListDevices / CountDevices run for a filter.
  std::function<Result<std::string>(Store&, const DeviceFilter&)> explain_list;
  std::function<Result<std::string>(Store&, const DeviceFilter&)> explain_count;
  // True if a plan reaches certificates only through the (status, not_after) index: no full
  // scan of a table or an index, no sort.
  std::function<bool(const std::string&)> plan_uses_expiry_index;
  // True if a count's plan reads only the maintained count tables: neither devices nor
  // certificates, and no full scan but of the small (state, model, batch) table.
  std::function<bool(const std::string&)> plan_reads_only_counts;
  // True if a plan reads certificates in its primary key's order from a seek: no full scan, no
  // sort, and not through certificates_by_expiry.
  std::function<bool(const std::string&)> plan_seeks_by_serial;
  // True if a plan reads through index `index` alone: no full scan of anything, no sort.
  std::function<bool(const std::string& plan, const std::string& index)> plan_seeks_index;
};

void PrintTo(const Backend& backend, std::ostream* os) { *os << backend.name; }

sql::SqlStore& AsSql(Store& store) { return dynamic_cast<sql::SqlStore&>(store); }

bool SqlitePlanUsesExpiryIndex(const std::string& plan) {
  if (plan.find("certificates_by_expiry") == std::string::npos) return false;
  std::istringstream lines(plan);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("SCAN", 0) == 0 || line.find("TEMP B-TREE") != std::string::npos) return false;
  }
  return true;
}

bool SqlitePlanReadsOnlyCounts(const std::string& plan) {
  std::istringstream lines(plan);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("devices") != std::string::npos &&
        line.find("device_counts") == std::string::npos)
      return false;
    if (line.find("certificates") != std::string::npos) return false;
    if (line.find("TEMP B-TREE") != std::string::npos) return false;
    if (line.rfind("SCAN", 0) == 0 && line != "SCAN CONSTANT ROW" && line != "SCAN device_counts")
      return false;
  }
  return true;
}

bool SqlitePlanSeeksBySerial(const std::string& plan) {
  if (plan.find("certificates_by_expiry") != std::string::npos) return false;
  if (plan.find("SEARCH certificates USING INDEX sqlite_autoindex_certificates_1 (serial>?)") ==
      std::string::npos) {
    return false;
  }
  std::istringstream lines(plan);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("SCAN", 0) == 0 || line.find("TEMP B-TREE") != std::string::npos) return false;
  }
  return true;
}

bool SqlitePlanSeeksIndex(const std::string& plan, const std::string& index) {
  if (plan.find("USING INDEX " + index + " (") == std::string::npos &&
      plan.find("USING COVERING INDEX " + index + " (") == std::string::npos) {
    return false;
  }
  std::istringstream lines(plan);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("SCAN", 0) == 0 || line.find("TEMP B-TREE") != std::string::npos) return false;
  }
  return true;
}

Backend SqliteBackend(std::string name, bool persistent, std::string file) {
  return Backend{
      .name = std::move(name),
      .persistent = persistent,
      .open =
          [file](const std::filesystem::path& dir, const Clock& clock) {
            return OpenSqliteStore(file == ":memory:" ? std::filesystem::path(file) : dir / file,
                                   clock);
          },
      .exec_sql = [](Store& s, std::string_view sql) { return AsSql(s).ExecForTest(sql); },
      .explain_list =
          [](Store& s, const DeviceFilter& f) {
            return AsSql(s).ExplainListDevicesForTest(f, 50, "");
          },
      .explain_count = [](Store& s,
                          const DeviceFilter& f) { return AsSql(s).ExplainCountDevicesForTest(f); },
      .plan_uses_expiry_index = SqlitePlanUsesExpiryIndex,
      .plan_reads_only_counts = SqlitePlanReadsOnlyCounts,
      .plan_seeks_by_serial = SqlitePlanSeeksBySerial,
      .plan_seeks_index = SqlitePlanSeeksIndex,
  };
}

// PostgreSQL's EXPLAIN (sequential scans disabled, pg_db.h): node lines such as
// "Index Only Scan using certificates_by_expiry on certificates c" or "Seq Scan on devices d".
bool PostgresPlanUsesExpiryIndex(const std::string& plan) {
  return plan.find("certificates_by_expiry") != std::string::npos &&
         plan.find("Seq Scan") == std::string::npos && plan.find("Sort") == std::string::npos;
}

// As for SQLite, the small (state, model, batch) table may be read whole.
bool PostgresPlanReadsOnlyCounts(const std::string& plan) {
  for (size_t at = plan.find("Seq Scan on "); at != std::string::npos;
       at = plan.find("Seq Scan on ", at + 1)) {
    if (plan.compare(at + 12, 14, "device_counts ") != 0) return false;
  }
  return plan.find(" on devices") == std::string::npos &&
         plan.find(" on certificates") == std::string::npos &&
         plan.find("Sort") == std::string::npos;
}

bool PostgresPlanSeeksBySerial(const std::string& plan) {
  return plan.find("certificates_pkey") != std::string::npos &&
         plan.find("certificates_by_expiry") == std::string::npos &&
         plan.find("Seq Scan") == std::string::npos && plan.find("Sort") == std::string::npos;
}

// "Index Scan using INDEX on ..." or, for a count, "Bitmap Index Scan on INDEX".
bool PostgresPlanSeeksIndex(const std::string& plan, const std::string& index) {
  return (plan.find(" using " + index + " on ") != std::string::npos ||
          plan.find("Index Scan on " + index) != std::string::npos) &&
         plan.find("Seq Scan") == std::string::npos && plan.find("Sort") == std::string::npos;
}

constexpr char kPgUrlFile[] = "pg-url";

Backend PostgresBackend() {
  return Backend{
      .name = "Postgres",
      .persistent = true,
      .setup = [](const std::filesystem::path& dir) -> Result<void> {
        IOTPKI_TRY(std::string url, testing::PgTestCluster::Get().NewDatabase());
        return WriteFileAtomic(dir / kPgUrlFile, url);
      },
      .teardown =
          [](const std::filesystem::path& dir) {
            if (auto url = ReadTextFile(dir / kPgUrlFile)) {
              testing::PgTestCluster::Get().DropDatabase(*url);
            }
          },
      .open = [](const std::filesystem::path& dir,
                 const Clock& clock) -> Result<std::unique_ptr<Store>> {
        IOTPKI_TRY(std::string url, ReadTextFile(dir / kPgUrlFile));
        return OpenPostgresStore(url, clock);
      },
      .exec_sql = [](Store& s, std::string_view sql) { return AsSql(s).ExecForTest(sql); },
      .explain_list =
          [](Store& s, const DeviceFilter& f) {
            return AsSql(s).ExplainListDevicesForTest(f, 50, "");
          },
      .explain_count = [](Store& s,
                          const DeviceFilter& f) { return AsSql(s).ExplainCountDevicesForTest(f); },
      .plan_uses_expiry_index = PostgresPlanUsesExpiryIndex,
      .plan_reads_only_counts = PostgresPlanReadsOnlyCounts,
      .plan_seeks_by_serial = PostgresPlanSeeksBySerial,
      .plan_seeks_index = PostgresPlanSeeksIndex,
  };
}

std::vector<Backend> Backends() {
  return {
      SqliteBackend("SqliteFile", /*persistent=*/true, "iotpki.db"),
      SqliteBackend("SqliteMemory", /*persistent=*/false, ":memory:"),
      PostgresBackend(),
  };
}

// --- Test data ------------------------------------------------------------------------------

std::string HexDigest(const std::string& seed) { return ToHex(crypto::Sha256(AsBytes(seed))); }

std::string DeviceId(int n) { return HexDigest("device-" + std::to_string(n)); }
std::string KeyFp(int n) { return HexDigest("key-" + std::to_string(n)); }
// 16 bytes, as the CA makes them.
std::string CertSerial(int n) { return HexDigest("cert-" + std::to_string(n)).substr(0, 32); }

Device MakeDevice(int n, std::string model = "sensor-a", std::string batch = "b1") {
  char serial[32];
  std::snprintf(serial, sizeof serial, "SN-%06d", n);
  Device d;
  d.device_id = DeviceId(n);
  d.serial = serial;
  d.model = std::move(model);
  d.batch = std::move(batch);
  d.hardware_fingerprint = HexDigest("hw-" + std::to_string(n)).substr(0, 16);
  return d;
}

CertificateRecord MakeCert(int n, std::optional<int> device, CertProfile profile, int64_t not_after,
                           int key) {
  CertificateRecord c;
  c.serial = CertSerial(n);
  if (device) c.device_id = DeviceId(*device);
  c.profile = profile;
  c.issuer = profile == CertProfile::kIDevId ? "manufacturing" : "operational";
  c.subject = "CN=" + (device ? DeviceId(*device) : std::string("ca ") + std::to_string(n));
  c.not_before = kNow - kDay;
  c.not_after = not_after;
  c.key_fingerprint = KeyFp(key);
  // Zero bytes inside, to catch any C-string handling of the blob.
  c.der = {0x30, 0x82, 0x00, 0x00, static_cast<uint8_t>(n), 0x00, 0x05};
  return c;
}

AuditEvent Event(std::string action, std::string subject, std::string details = "{}") {
  return AuditEvent{"test", std::move(action), std::move(subject), std::move(details)};
}

// --- Fixture --------------------------------------------------------------------------------

class StoreConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/iotpki-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    if (GetParam().setup) {
      auto ready = GetParam().setup(dir_);
      if (!ready && testing::PgTestCluster::MaySkip(ready.error())) {
        GTEST_SKIP() << ready.error().message();
      }
      ASSERT_TRUE(ready) << ready.error().ToString();
    }
    auto opened = GetParam().open(dir_, clock_);
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
  }

  void TearDown() override {
    store_.reset();
    if (GetParam().teardown) GetParam().teardown(dir_);
    std::filesystem::remove_all(dir_);
  }

  void Reopen() {
    store_.reset();
    auto opened = GetParam().open(dir_, clock_);
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
  }

  CommitInfo MustCommit(const WriteBatch& batch) {
    auto r = store_->Commit(batch);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : CommitInfo{};
  }

  int64_t Count(const DeviceFilter& filter = {}) {
    auto r = store_->CountDevices(filter);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : -1;
  }

  std::vector<AuditRecord> AllAudit() {
    auto r = store_->ReadAudit(1, kMaxPageSize);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : std::vector<AuditRecord>{};
  }

  // Every page of a listing, checking each cursor on the way.
  std::vector<ListedDevice> ListAll(const DeviceFilter& filter, size_t page_size,
                                    size_t* pages = nullptr) {
    std::vector<ListedDevice> all;
    std::string cursor;
    size_t n = 0;
    for (;;) {
      auto page = store_->ListDevices(filter, page_size, cursor);
      EXPECT_TRUE(page) << page.error().ToString();
      if (!page) break;
      ++n;
      EXPECT_LE(page->devices.size(), page_size);
      all.insert(all.end(), page->devices.begin(), page->devices.end());
      if (page->next_cursor.empty()) break;
      EXPECT_EQ(page->devices.size(), page_size) << "only the last page may be short";
      cursor = page->next_cursor;
      if (n > 100000) break;
    }
    if (pages) *pages = n;
    return all;
  }

  void ExpectNothingWritten() {
    EXPECT_EQ(Count(), 0);
    EXPECT_TRUE(AllAudit().empty());
  }

  FakeClock clock_{kNow};
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param.name; });

// --- Schema ---------------------------------------------------------------------------------

TEST_P(StoreConformance, OpensAtLatestSchemaVersion) {
  auto version = store_->SchemaVersion();
  ASSERT_TRUE(version) << version.error().ToString();
  EXPECT_EQ(*version, kLatestSchemaVersion);
}

TEST_P(StoreConformance, ReopenIsIdempotentAndKeepsData) {
  if (!GetParam().persistent) GTEST_SKIP() << "nothing survives closing an in-memory store";
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)).AppendAudit(Event("ca.init", "root")));
  for (int i = 0; i < 3; ++i) {
    Reopen();
    EXPECT_EQ(*store_->SchemaVersion(), kLatestSchemaVersion);
  }
  EXPECT_TRUE(store_->GetDevice(DeviceId(1)));
  auto info = MustCommit(WriteBatch().AppendAudit(Event("cert.issue", "x")));
  EXPECT_EQ(info.audit_seqs, std::vector<int64_t>{2});
  EXPECT_TRUE(VerifyAuditChain(*store_)->intact);
}

// --- Round trips ----------------------------------------------------------------------------

TEST_P(StoreConformance, DeviceRoundTrip) {
  Device with_fp = MakeDevice(1);
  Device without_fp = MakeDevice(2, "gateway", "");
  without_fp.hardware_fingerprint.reset();
  without_fp.state = DeviceState::kActive;
  auto info = MustCommit(WriteBatch().InsertDevice(with_fp).InsertDevice(without_fp));
  EXPECT_EQ(info.time, kNow);

  for (Device want : {with_fp, without_fp}) {
    want.created_at = kNow;
    want.updated_at = kNow;
    auto got = store_->GetDevice(want.device_id);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(*got, want);
    auto by_serial = store_->GetDeviceBySerial(want.serial);
    ASSERT_TRUE(by_serial) << by_serial.error().ToString();
    EXPECT_EQ(*by_serial, want);
  }
}

TEST_P(StoreConformance, LookupsAcceptUppercaseHex) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1)));
  std::string upper_id = DeviceId(1);
  std::string upper_serial = CertSerial(1);
  std::transform(upper_id.begin(), upper_id.end(), upper_id.begin(), ::toupper);
  std::transform(upper_serial.begin(), upper_serial.end(), upper_serial.begin(), ::toupper);
  EXPECT_TRUE(store_->GetDevice(upper_id));
  EXPECT_TRUE(store_->GetCertificate(upper_serial));
}

TEST_P(StoreConformance, UnknownRowsAreNotFound) {
  auto d = store_->GetDevice(DeviceId(9));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Code::kNotFound);
  auto s = store_->GetDeviceBySerial("nope");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Code::kNotFound);
  auto c = store_->GetCertificate(CertSerial(9));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Code::kNotFound);
  EXPECT_TRUE(store_->FindCertificatesByKey(KeyFp(9))->empty());
  EXPECT_TRUE(store_->ListCertificatesForDevice(DeviceId(9))->empty());
}

TEST_P(StoreConformance, CertificateRoundTrip) {
  CertificateRecord root = MakeCert(100, std::nullopt, CertProfile::kRoot, kNow + 3650 * kDay, 100);
  root.issuer = "root";
  CertificateRecord idevid = MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1);
  CertificateRecord ldevid = MakeCert(2, 1, CertProfile::kLDevId, kNow + 90 * kDay, 2);
  ldevid.not_before = kNow;
  MustCommit(WriteBatch()
                 .InsertCertificate(root)
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(idevid)
                 .InsertCertificate(ldevid));

  for (CertificateRecord want : {root, idevid, ldevid}) {
    want.created_at = kNow;
    auto got = store_->GetCertificate(want.serial);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(*got, want);
  }
  auto for_device = store_->ListCertificatesForDevice(DeviceId(1));
  ASSERT_TRUE(for_device);
  ASSERT_EQ(for_device->size(), 2u);
  EXPECT_EQ((*for_device)[0].serial, idevid.serial);  // Ordered by not_before.
  EXPECT_EQ((*for_device)[1].serial, ldevid.serial);

  auto by_key = store_->FindCertificatesByKey(KeyFp(2));
  ASSERT_TRUE(by_key);
  ASSERT_EQ(by_key->size(), 1u);
  EXPECT_EQ((*by_key)[0].serial, ldevid.serial);
}

// --- Batched lookups -------------------------------------------------------------------------

Device Stored(Device d) {
  d.created_at = kNow;
  d.updated_at = kNow;
  return d;
}

TEST_P(StoreConformance, GetDevicesBySerialAnswersEachSerialInOrder) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)).InsertDevice(MakeDevice(2)));
  std::vector<std::string> serials = {MakeDevice(2).serial, "nope", MakeDevice(1).serial,
                                      MakeDevice(2).serial, "SN-000003"};
  auto got = store_->GetDevicesBySerial(serials);
  ASSERT_TRUE(got) << got.error().ToString();
  std::vector<std::optional<Device>> want = {Stored(MakeDevice(2)), std::nullopt,
                                             Stored(MakeDevice(1)), Stored(MakeDevice(2)),
                                             std::nullopt};
  EXPECT_EQ(*got, want);
}

TEST_P(StoreConformance, GetDevicesBySerialAllFoundOrNone) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)).InsertDevice(MakeDevice(2)));
  std::vector<std::string> known = {MakeDevice(1).serial, MakeDevice(2).serial};
  auto found = store_->GetDevicesBySerial(known);
  ASSERT_TRUE(found) << found.error().ToString();
  std::vector<std::optional<Device>> want = {Stored(MakeDevice(1)), Stored(MakeDevice(2))};
  EXPECT_EQ(*found, want);

  // Serials are compared exactly (they are not hex).
  std::vector<std::string> unknown = {"SN-000009", "sn-000001", ""};
  auto none = store_->GetDevicesBySerial(unknown);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_EQ(*none, std::vector<std::optional<Device>>(3));
}

TEST_P(StoreConformance, GetDevicesBySerialOfNothingIsEmpty) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)));
  auto got = store_->GetDevicesBySerial({});
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_TRUE(got->empty());
}

TEST_P(StoreConformance, GetDevicesBySerialManyAgreesWithOneByOne) {
  // More serials than a statement could take as parameters, half of them known.
  WriteBatch batch;
  for (int n = 0; n < 600; n += 2) batch.InsertDevice(MakeDevice(n));
  MustCommit(batch);
  std::vector<std::string> serials;
  for (int n = 599; n >= 0; --n) serials.push_back(MakeDevice(n).serial);
  auto got = store_->GetDevicesBySerial(serials);
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_EQ(got->size(), serials.size());
  for (size_t i = 0; i < serials.size(); ++i) {
    auto one = store_->GetDeviceBySerial(serials[i]);
    ASSERT_EQ(one.has_value(), (*got)[i].has_value()) << serials[i];
    if (one) {
      EXPECT_EQ(*one, *(*got)[i]) << serials[i];
    }
  }
}

TEST_P(StoreConformance, FindCertificatesByKeysAnswersEachKeyInOrder) {
  CertificateRecord root = MakeCert(100, std::nullopt, CertProfile::kRoot, kNow + 3650 * kDay, 100);
  root.issuer = "root";
  MustCommit(WriteBatch()
                 .InsertCertificate(root)
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1))
                 .InsertCertificate(MakeCert(2, 1, CertProfile::kLDevId, kNow + 10 * kDay, 7))
                 .InsertCertificate(MakeCert(3, 1, CertProfile::kLDevId, kNow + 90 * kDay, 7)));
  std::string upper = KeyFp(1);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  std::vector<std::string> keys = {KeyFp(7), KeyFp(9), KeyFp(100), upper, KeyFp(7)};
  auto got = store_->FindCertificatesByKeys(keys);
  ASSERT_TRUE(got) << got.error().ToString();
  ASSERT_EQ(got->size(), keys.size());
  auto serials = [](const std::vector<CertificateRecord>& certs) {
    std::vector<std::string> out;
    for (const auto& c : certs) out.push_back(c.serial);
    return out;
  };
  std::vector<std::string> renewed = {CertSerial(2), CertSerial(3)};
  std::sort(renewed.begin(), renewed.end());  // Ordered by serial.
  EXPECT_EQ(serials((*got)[0]), renewed);
  EXPECT_TRUE((*got)[1].empty());
  EXPECT_EQ(serials((*got)[2]), std::vector<std::string>{root.serial});
  EXPECT_EQ(serials((*got)[3]), std::vector<std::string>{CertSerial(1)});
  EXPECT_EQ((*got)[4], (*got)[0]);
  for (size_t i = 0; i < keys.size(); ++i) {
    auto one = store_->FindCertificatesByKey(keys[i]);
    ASSERT_TRUE(one) << one.error().ToString();
    EXPECT_EQ(*one, (*got)[i]) << keys[i];
  }
}

TEST_P(StoreConformance, FindCertificatesByKeysOfUnknownOrNoKeys) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1)));
  std::vector<std::string> unknown = {KeyFp(8), KeyFp(9)};
  auto none = store_->FindCertificatesByKeys(unknown);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_EQ(*none, std::vector<std::vector<CertificateRecord>>(2));
  auto empty = store_->FindCertificatesByKeys({});
  ASSERT_TRUE(empty) << empty.error().ToString();
  EXPECT_TRUE(empty->empty());
}

// --- Refusals roll back the whole batch -----------------------------------------------------

TEST_P(StoreConformance, DuplicateDeviceIdRefusedAndNothingWritten) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)));
  Device clash = MakeDevice(1);
  clash.serial = "other-serial";
  auto r = store_->Commit(WriteBatch()
                              .InsertDevice(MakeDevice(2))
                              .AppendAudit(Event("device.add", "2"))
                              .InsertDevice(clash)
                              .InsertDevice(MakeDevice(3)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
  EXPECT_THAT(r.error().message(), HasSubstr("device " + DeviceId(1)));
  EXPECT_EQ(Count(), 1);
  EXPECT_TRUE(AllAudit().empty());
  EXPECT_EQ(store_->GetDevice(DeviceId(2)).error().code(), Code::kNotFound);
}

TEST_P(StoreConformance, DuplicateDeviceSerialRefusedAndNothingWritten) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)));
  Device clash = MakeDevice(2);
  clash.serial = MakeDevice(1).serial;
  auto r = store_->Commit(WriteBatch()
                              .InsertDevice(MakeDevice(3))
                              .InsertCertificate(MakeCert(3, 3, CertProfile::kIDevId, kNow, 3))
                              .InsertDevice(clash));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
  EXPECT_THAT(r.error().message(), HasSubstr("serial 'SN-000001'"));
  EXPECT_EQ(Count(), 1);
  EXPECT_EQ(store_->GetCertificate(CertSerial(3)).error().code(), Code::kNotFound);
  EXPECT_TRUE(store_->FindCertificatesByKey(KeyFp(3))->empty());
}

TEST_P(StoreConformance, DuplicateCertificateSerialRefusedAndNothingWritten) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1)));
  CertificateRecord clash = MakeCert(1, 2, CertProfile::kIDevId, kNoExpiryUnix, 2);
  auto r = store_->Commit(WriteBatch()
                              .InsertDevice(MakeDevice(2))
                              .InsertCertificate(clash)
                              .AppendAudit(Event("cert.issue", clash.serial)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
  EXPECT_THAT(r.error().message(), HasSubstr("certificate serial " + CertSerial(1)));
  EXPECT_EQ(Count(), 1);
  EXPECT_TRUE(AllAudit().empty());
}

TEST_P(StoreConformance, DuplicateSerialWithinOneBatchRefused) {
  auto r = store_->Commit(WriteBatch()
                              .InsertDevice(MakeDevice(1))
                              .InsertDevice(MakeDevice(2))
                              .InsertCertificate(MakeCert(7, 1, CertProfile::kIDevId, kNow, 1))
                              .InsertCertificate(MakeCert(7, 2, CertProfile::kIDevId, kNow, 2)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
  ExpectNothingWritten();
}

TEST_P(StoreConformance, KeyOfAnotherDeviceRefusedAndNothingWritten) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 42)));
  auto r =
      store_->Commit(WriteBatch()
                         .InsertDevice(MakeDevice(2))
                         .InsertCertificate(MakeCert(2, 2, CertProfile::kIDevId, kNoExpiryUnix, 42))
                         .AppendAudit(Event("cert.issue", CertSerial(2))));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
  EXPECT_THAT(r.error().message(), HasSubstr("public key"));
  // The message is shown to clients: it must not name the other device.
  EXPECT_THAT(r.error().message(), ::testing::Not(HasSubstr(DeviceId(1))));
  EXPECT_EQ(Count(), 1);
  EXPECT_TRUE(AllAudit().empty());
  EXPECT_EQ(store_->FindCertificatesByKey(KeyFp(42))->size(), 1u);
}

TEST_P(StoreConformance, DuplicateKeyWithinOneBatchRefused) {
  auto r = store_->Commit(WriteBatch()
                              .InsertDevice(MakeDevice(1))
                              .InsertDevice(MakeDevice(2))
                              .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNow, 5))
                              .InsertCertificate(MakeCert(2, 2, CertProfile::kIDevId, kNow, 5)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
  ExpectNothingWritten();
}

TEST_P(StoreConformance, SameDeviceMayKeepItsKey) {
  // Renewal: a new LDevID for the same key of the same device.
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kLDevId, kNow + 10 * kDay, 7)));
  MustCommit(
      WriteBatch().InsertCertificate(MakeCert(2, 1, CertProfile::kLDevId, kNow + 90 * kDay, 7)));
  EXPECT_EQ(store_->FindCertificatesByKey(KeyFp(7))->size(), 2u);
}

TEST_P(StoreConformance, KeysAreNotSharedBetweenCaAndDevices) {
  MustCommit(WriteBatch()
                 .InsertCertificate(MakeCert(100, std::nullopt, CertProfile::kIssuingCa, kNow, 100))
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNow, 1)));
  auto device_with_ca_key = store_->Commit(
      WriteBatch().InsertCertificate(MakeCert(2, 1, CertProfile::kLDevId, kNow, 100)));
  ASSERT_FALSE(device_with_ca_key);
  EXPECT_EQ(device_with_ca_key.error().code(), Code::kAlreadyExists);
  auto ca_with_device_key = store_->Commit(
      WriteBatch().InsertCertificate(MakeCert(101, std::nullopt, CertProfile::kServer, kNow, 1)));
  ASSERT_FALSE(ca_with_device_key);
  EXPECT_EQ(ca_with_device_key.error().code(), Code::kAlreadyExists);
  // A CA certificate re-issued for its own key is fine.
  MustCommit(WriteBatch().InsertCertificate(
      MakeCert(102, std::nullopt, CertProfile::kIssuingCa, kNow + kDay, 100)));
}

TEST_P(StoreConformance, CertificateForUnknownDeviceIsNotFound) {
  auto r = store_->Commit(WriteBatch()
                              .AppendAudit(Event("cert.issue", "x"))
                              .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNow, 1)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_TRUE(AllAudit().empty());
  EXPECT_TRUE(store_->FindCertificatesByKey(KeyFp(1))->empty());
}

TEST_P(StoreConformance, MalformedInputRefusedBeforeWriting) {
  auto expect_invalid = [&](const WriteBatch& batch, std::string_view why) {
    auto r = store_->Commit(batch);
    ASSERT_FALSE(r) << why;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << why << ": " << r.error().ToString();
  };
  Device upper = MakeDevice(1);
  std::transform(upper.device_id.begin(), upper.device_id.end(), upper.device_id.begin(),
                 ::toupper);
  expect_invalid(WriteBatch().InsertDevice(upper), "uppercase device id");
  Device short_id = MakeDevice(1);
  short_id.device_id.pop_back();
  expect_invalid(WriteBatch().InsertDevice(short_id), "short device id");
  Device stamped = MakeDevice(1);
  stamped.created_at = 5;
  expect_invalid(WriteBatch().InsertDevice(stamped), "created_at set by caller");
  Device nul = MakeDevice(1);
  nul.model = std::string("a\0b", 3);
  expect_invalid(WriteBatch().InsertDevice(nul), "NUL in text");
  Device empty_serial = MakeDevice(1);
  empty_serial.serial.clear();
  expect_invalid(WriteBatch().InsertDevice(empty_serial), "empty serial");
  CertificateRecord revoked = MakeCert(1, std::nullopt, CertProfile::kRoot, kNow, 1);
  revoked.status = CertStatus::kRevoked;
  expect_invalid(WriteBatch().InsertCertificate(revoked), "inserted as revoked");
  CertificateRecord bad_fp = MakeCert(1, std::nullopt, CertProfile::kRoot, kNow, 1);
  bad_fp.key_fingerprint = "xyz";
  expect_invalid(WriteBatch().InsertCertificate(bad_fp), "fingerprint not hex");
  CertificateRecord backwards = MakeCert(1, std::nullopt, CertProfile::kRoot, kNow, 1);
  backwards.not_before = backwards.not_after + 1;
  expect_invalid(WriteBatch().InsertCertificate(backwards), "not_before after not_after");
  expect_invalid(WriteBatch()
                     .InsertDevice(MakeDevice(2))
                     .AppendAudit(Event("x", "y", std::string("{\"a\":\"\xff\"}"))),
                 "details not UTF-8");
  expect_invalid(WriteBatch().RevokeCertificate("0g", RevocationReason::kUnspecified),
                 "serial not hex");
  ExpectNothingWritten();
}

// --- Compare-and-set ------------------------------------------------------------------------

TEST_P(StoreConformance, DeviceStateCompareAndSet) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)));
  clock_.Advance(std::chrono::seconds(60));
  MustCommit(WriteBatch().UpdateDeviceState(DeviceId(1), DeviceState::kManufactured,
                                            DeviceState::kActive));
  auto d = store_->GetDevice(DeviceId(1));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, DeviceState::kActive);
  EXPECT_EQ(d->created_at, kNow);
  EXPECT_EQ(d->updated_at, kNow + 60);

  auto stale = store_->Commit(WriteBatch().UpdateDeviceState(
      DeviceId(1), DeviceState::kManufactured, DeviceState::kActive));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), Code::kAborted);
  EXPECT_THAT(stale.error().message(), HasSubstr("is active, not manufactured"));

  // from == to asserts the state (idempotent retries).
  MustCommit(
      WriteBatch().UpdateDeviceState(DeviceId(1), DeviceState::kActive, DeviceState::kActive));

  auto unknown = store_->Commit(WriteBatch().UpdateDeviceState(
      DeviceId(2), DeviceState::kManufactured, DeviceState::kActive));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
}

TEST_P(StoreConformance, FailedCompareAndSetRollsBackTheBatch) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)).AppendAudit(Event("device.add", "1")));
  // An enrollment: issue an LDevID, activate, audit; but the device is not in the assumed state.
  auto r = store_->Commit(
      WriteBatch()
          .InsertCertificate(MakeCert(2, 1, CertProfile::kLDevId, kNow, 2))
          .AppendAudit(Event("cert.issue", CertSerial(2)))
          .UpdateDeviceState(DeviceId(1), DeviceState::kSuspended, DeviceState::kActive));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kAborted);
  EXPECT_EQ(store_->GetCertificate(CertSerial(2)).error().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetDevice(DeviceId(1))->state, DeviceState::kManufactured);
  EXPECT_EQ(AllAudit().size(), 1u);
  // The failed batch consumed no audit seq.
  EXPECT_EQ(MustCommit(WriteBatch().AppendAudit(Event("x", "y"))).audit_seqs,
            std::vector<int64_t>{2});
}

TEST_P(StoreConformance, RevokeCertificate) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kLDevId, kNow + kDay, 1)));
  clock_.Advance(std::chrono::seconds(30));
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(1), RevocationReason::kKeyCompromise));
  auto c = store_->GetCertificate(CertSerial(1));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, CertStatus::kRevoked);
  EXPECT_EQ(c->revoked_at, kNow + 30);
  EXPECT_EQ(c->revocation_reason, RevocationReason::kKeyCompromise);

  auto again =
      store_->Commit(WriteBatch().RevokeCertificate(CertSerial(1), RevocationReason::kSuperseded));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kAborted);
  EXPECT_EQ(store_->GetCertificate(CertSerial(1))->revocation_reason,
            RevocationReason::kKeyCompromise);

  auto unknown =
      store_->Commit(WriteBatch().RevokeCertificate(CertSerial(2), RevocationReason::kSuperseded));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
}

// The status read of OCSP answers: GetCertificate's issuer and revocation fields, for a device's
// certificate and for a CA's (no device), NotFound alike, any case of hex.
TEST_P(StoreConformance, GetCertificateStatusAgreesWithGetCertificate) {
  CertificateRecord root = MakeCert(100, std::nullopt, CertProfile::kRoot, kNow + 3650 * kDay, 100);
  root.issuer = "root";
  MustCommit(WriteBatch()
                 .InsertCertificate(root)
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1))
                 .InsertCertificate(MakeCert(2, 1, CertProfile::kLDevId, kNow + kDay, 2)));
  clock_.Advance(std::chrono::seconds(30));
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(2), RevocationReason::kKeyCompromise));

  auto good = store_->GetCertificateStatus(CertSerial(1));
  ASSERT_TRUE(good) << good.error().ToString();
  EXPECT_EQ(*good, (CertificateStatusRecord{"manufacturing", CertStatus::kValid, {}, {}}));
  auto revoked = store_->GetCertificateStatus(CertSerial(2));
  ASSERT_TRUE(revoked) << revoked.error().ToString();
  EXPECT_EQ(*revoked, (CertificateStatusRecord{"operational", CertStatus::kRevoked, kNow + 30,
                                               RevocationReason::kKeyCompromise}));
  auto ca = store_->GetCertificateStatus(CertSerial(100));
  ASSERT_TRUE(ca) << ca.error().ToString();
  EXPECT_EQ(ca->issuer, "root");
  for (int n : {1, 2, 100}) {
    auto full = store_->GetCertificate(CertSerial(n));
    auto status = store_->GetCertificateStatus(CertSerial(n));
    ASSERT_TRUE(full && status);
    EXPECT_EQ(status->issuer, full->issuer);
    EXPECT_EQ(status->status, full->status);
    EXPECT_EQ(status->revoked_at, full->revoked_at);
    EXPECT_EQ(status->revocation_reason, full->revocation_reason);
  }

  std::string upper = CertSerial(2);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  EXPECT_EQ(store_->GetCertificateStatus(upper)->status, CertStatus::kRevoked);
  auto unknown = store_->GetCertificateStatus(CertSerial(9));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
}

// A CRL page reads the revoked entries of its issuer in serial order through
// certificates_revoked_by_issuer: no scan of the certificates, no sort.
TEST_P(StoreConformance, RevokedCertificatesAreReadThroughTheirIndex) {
  auto plan = AsSql(*store_).ExplainListRevokedForTest();
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_NE(plan->find("certificates_revoked_by_issuer"), std::string::npos) << *plan;
  for (const char* bad : {"Seq Scan", "Sort", "TEMP B-TREE", "SCAN "}) {
    EXPECT_EQ(plan->find(bad), std::string::npos) << bad << " in " << *plan;
  }
}

TEST_P(StoreConformance, ListsRevokedCertificatesOfOneIssuerBySerial) {
  WriteBatch setup;
  for (int n = 1; n <= 8; ++n) {
    setup.InsertDevice(MakeDevice(n));
    setup.InsertCertificate(MakeCert(n, n, CertProfile::kLDevId, kNow + kDay, n));
  }
  setup.InsertCertificate(MakeCert(100, 1, CertProfile::kIDevId, kNow + kDay, 1));
  MustCommit(setup);
  EXPECT_EQ(*store_->CountRevokedCertificates("operational"), 0);
  EXPECT_TRUE(store_->ListRevokedCertificatesOfIssuer("operational", "", 10)->empty());

  // Five of the eight operational certificates and the manufacturing one, at two times.
  MustCommit(WriteBatch()
                 .RevokeCertificate(CertSerial(2), RevocationReason::kKeyCompromise)
                 .RevokeCertificate(CertSerial(5), RevocationReason::kUnspecified)
                 .RevokeCertificate(CertSerial(100), RevocationReason::kCessationOfOperation));
  clock_.Advance(std::chrono::seconds(7));
  MustCommit(WriteBatch()
                 .RevokeCertificate(CertSerial(3), RevocationReason::kSuperseded)
                 .RevokeCertificate(CertSerial(7), RevocationReason::kAffiliationChanged)
                 .RevokeCertificate(CertSerial(8), RevocationReason::kSuperseded));

  std::vector<RevokedCertificate> want;
  for (int n : {2, 3, 5, 7, 8}) {
    auto c = store_->GetCertificate(CertSerial(n));
    ASSERT_TRUE(c);
    want.push_back({c->serial, *c->revoked_at, *c->revocation_reason});
  }
  std::sort(want.begin(), want.end(),
            [](const auto& a, const auto& b) { return a.serial < b.serial; });

  // Pages of two, each starting after the last serial of the one before.
  std::vector<RevokedCertificate> got;
  std::string after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = store_->ListRevokedCertificatesOfIssuer("operational", after, 2);
    ASSERT_TRUE(page) << page.error().ToString();
    if (page->empty()) break;
    EXPECT_LE(page->size(), 2u);
    got.insert(got.end(), page->begin(), page->end());
    after = page->back().serial;
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(*store_->CountRevokedCertificates("operational"), 5);

  auto mfg = store_->ListRevokedCertificatesOfIssuer("manufacturing", "", kMaxPageSize);
  ASSERT_TRUE(mfg);
  ASSERT_EQ(mfg->size(), 1u);
  EXPECT_EQ((*mfg)[0].serial, CertSerial(100));
  EXPECT_EQ((*mfg)[0].revoked_at, kNow);
  EXPECT_EQ((*mfg)[0].reason, RevocationReason::kCessationOfOperation);
  EXPECT_EQ(*store_->CountRevokedCertificates("manufacturing"), 1);
  EXPECT_EQ(*store_->CountRevokedCertificates("nobody"), 0);

  // An uppercase cursor pages the same.
  std::string upper = want[1].serial;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto rest = store_->ListRevokedCertificatesOfIssuer("operational", upper, kMaxPageSize);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->size(), 3u);

  for (size_t bad : {size_t{0}, kMaxPageSize + 1}) {
    auto r = store_->ListRevokedCertificatesOfIssuer("operational", "", bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
}

TEST_P(StoreConformance, RevokeAtGivenTime) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kLDevId, kNow + kDay, 1)));
  clock_.Advance(std::chrono::seconds(30));
  // The caller's time (also in its audit row) wins over the commit time.
  MustCommit(
      WriteBatch().RevokeCertificate(CertSerial(1), RevocationReason::kSuperseded, kNow + 7));
  EXPECT_EQ(store_->GetCertificate(CertSerial(1))->revoked_at, kNow + 7);
  auto negative = store_->Commit(
      WriteBatch().RevokeCertificate(CertSerial(1), RevocationReason::kSuperseded, -1));
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.error().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, MarkCertificateUsedOnce) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kLDevId, kNow + kDay, 1)));
  EXPECT_EQ(store_->GetCertificate(CertSerial(1))->first_used_at, std::nullopt);
  clock_.Advance(std::chrono::seconds(10));
  MustCommit(WriteBatch().MarkCertificateUsed(CertSerial(1)));
  EXPECT_EQ(store_->GetCertificate(CertSerial(1))->first_used_at, kNow + 10);
  // A later use keeps the first time.
  clock_.Advance(std::chrono::seconds(10));
  MustCommit(WriteBatch().MarkCertificateUsed(CertSerial(1)));
  EXPECT_EQ(store_->GetCertificate(CertSerial(1))->first_used_at, kNow + 10);
  auto listed = store_->ListCertificatesForDevice(DeviceId(1));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].first_used_at, kNow + 10);

  auto unknown = store_->Commit(WriteBatch().MarkCertificateUsed(CertSerial(2)));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);

  CertificateRecord preset = MakeCert(3, 1, CertProfile::kLDevId, kNow + kDay, 3);
  preset.first_used_at = kNow;
  auto refused = store_->Commit(WriteBatch().InsertCertificate(preset));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, ListRevokedCertificatesPagesInRevocationOrder) {
  WriteBatch setup;
  setup.InsertDevice(MakeDevice(1));
  for (int n = 1; n <= 5; ++n) {
    setup.InsertCertificate(MakeCert(n, 1, CertProfile::kLDevId, kNow + kDay, n));
  }
  MustCommit(setup);
  auto listed = store_->ListRevokedCertificates({}, 10, "");
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->certificates.empty());
  EXPECT_EQ(listed->next_cursor, "");

  // Revoked in the order 4, 2 (same second), then 5 later; 1 and 3 stay valid.
  MustCommit(WriteBatch()
                 .RevokeCertificate(CertSerial(4), RevocationReason::kKeyCompromise)
                 .RevokeCertificate(CertSerial(2), RevocationReason::kSuperseded));
  clock_.Advance(std::chrono::seconds(100));
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(5), RevocationReason::kUnspecified));

  std::vector<std::string> same_second = {CertSerial(2), CertSerial(4)};
  std::sort(same_second.begin(), same_second.end());
  std::vector<std::string> want = {same_second[0], same_second[1], CertSerial(5)};
  std::vector<std::string> got;
  std::string cursor;
  int pages = 0;
  do {
    auto page = store_->ListRevokedCertificates({}, 2, cursor);
    ASSERT_TRUE(page) << page.error().ToString();
    for (const auto& c : page->certificates) {
      EXPECT_EQ(c.status, CertStatus::kRevoked);
      got.push_back(c.serial);
    }
    cursor = page->next_cursor;
    ++pages;
  } while (!cursor.empty() && pages < 5);
  EXPECT_EQ(got, want);
  EXPECT_EQ(pages, 2);

  auto since = store_->ListRevokedCertificates({.since = kNow + 50}, 10, "");
  ASSERT_TRUE(since);
  ASSERT_EQ(since->certificates.size(), 1u);
  EXPECT_EQ(since->certificates[0].serial, CertSerial(5));
  EXPECT_EQ(since->certificates[0].revocation_reason, RevocationReason::kUnspecified);

  EXPECT_EQ(store_->ListRevokedCertificates({}, 10, "d2.17").error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(store_->ListRevokedCertificates({}, 0, "").error().code(), Code::kInvalidArgument);
}

// --- Listing and counting -------------------------------------------------------------------

TEST_P(StoreConformance, EmptyStoreListsNothing) {
  auto page = store_->ListDevices({}, 10, "");
  ASSERT_TRUE(page);
  EXPECT_TRUE(page->devices.empty());
  EXPECT_TRUE(page->next_cursor.empty());
  EXPECT_EQ(Count(), 0);
}

TEST_P(StoreConformance, KeysetPaginationNeitherRepeatsNorSkips) {
  WriteBatch batch;
  std::set<std::string> want;
  for (int i = 0; i < 1000; ++i) {
    batch.InsertDevice(MakeDevice(i, "m", i % 2 ? "odd" : "even"));
    want.insert(DeviceId(i));
  }
  MustCommit(batch);

  size_t pages = 0;
  auto all = ListAll({}, 37, &pages);
  EXPECT_EQ(pages, 28u);  // ceil(1000 / 37)
  ASSERT_EQ(all.size(), 1000u);
  std::vector<std::string> ids;
  for (const auto& d : all) {
    ids.push_back(d.device.device_id);
    EXPECT_FALSE(d.cert_serial.has_value());
  }
  // In the order the devices were added (device ids are hashes: that is not their sort order).
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], DeviceId(static_cast<int>(i))) << i;
  EXPECT_FALSE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), want);

  DeviceFilter odd;
  odd.batch = "odd";
  auto odd_devices = ListAll(odd, 37);
  EXPECT_EQ(odd_devices.size(), 500u);
  for (const auto& d : odd_devices) EXPECT_EQ(d.device.batch, "odd");
}

TEST_P(StoreConformance, PaginationIsStableUnderConcurrentInserts) {
  WriteBatch batch;
  for (int i = 0; i < 100; ++i) batch.InsertDevice(MakeDevice(i));
  MustCommit(batch);
  auto first = store_->ListDevices({}, 50, "");
  ASSERT_TRUE(first);
  // Rows inserted between pages never cause a repeat or a skip of the rows that were there.
  WriteBatch more;
  for (int i = 100; i < 150; ++i) more.InsertDevice(MakeDevice(i));
  MustCommit(more);
  std::set<std::string> seen;
  for (const auto& d : first->devices) seen.insert(d.device.device_id);
  std::string cursor = first->next_cursor;
  while (!cursor.empty()) {
    auto page = store_->ListDevices({}, 50, cursor);
    ASSERT_TRUE(page);
    for (const auto& d : page->devices) EXPECT_TRUE(seen.insert(d.device.device_id).second);
    cursor = page->next_cursor;
  }
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(seen.count(DeviceId(i))) << i;
}

TEST_P(StoreConformance, CountsWithFilters) {
  WriteBatch batch;
  for (int i = 0; i < 60; ++i) {
    Device d = MakeDevice(i, i % 3 == 0 ? "gateway" : "sensor", i < 20 ? "b1" : "b2");
    if (i % 4 == 0) d.state = DeviceState::kActive;
    batch.InsertDevice(d);
  }
  MustCommit(batch);
  DeviceFilter f;
  EXPECT_EQ(Count(f), 60);
  f.model = "gateway";
  EXPECT_EQ(Count(f), 20);
  f.batch = "b1";
  EXPECT_EQ(Count(f), 7);  // 0, 3, ..., 18
  f.state = DeviceState::kActive;
  EXPECT_EQ(Count(f), 2);  // 0, 12
  EXPECT_EQ(ListAll(f, 1).size(), 2u);
  f = {};
  f.state = DeviceState::kActive;
  EXPECT_EQ(Count(f), 15);
  f.model = "nonexistent";
  EXPECT_EQ(Count(f), 0);
}

TEST_P(StoreConformance, BadPageArgumentsAreInvalid) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)).InsertDevice(MakeDevice(2)));
  EXPECT_EQ(store_->ListDevices({}, 0, "").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->ListDevices({}, kMaxPageSize + 1, "").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->ListDevices({}, 1, "garbage").error().code(), Code::kInvalidArgument);
  auto page = store_->ListDevices({}, 1, "");
  ASSERT_TRUE(page);
  ASSERT_FALSE(page->next_cursor.empty());
  DeviceFilter expiring;
  expiring.expiring_within = std::chrono::hours(24);
  // A cursor is only valid for the kind of listing that produced it.
  EXPECT_EQ(store_->ListDevices(expiring, 1, page->next_cursor).error().code(),
            Code::kInvalidArgument);
  expiring.expiring_within = std::chrono::seconds(-1);
  EXPECT_EQ(store_->CountDevices(expiring).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->ReadAudit(1, 0).error().code(), Code::kInvalidArgument);
}

// Devices and certificates around a 30-day window starting at kNow.
class ExpiryFixture : public StoreConformance {
 protected:
  void SetUp() override {
    StoreConformance::SetUp();
    if (HasFatalFailure()) return;
    WriteBatch b;
    for (int i = 1; i <= 8; ++i) b.InsertDevice(MakeDevice(i, i % 2 ? "odd" : "even"));
    // Every device has a non-expiring IDevID, which never matches.
    for (int i = 1; i <= 8; ++i) {
      b.InsertCertificate(MakeCert(i, i, CertProfile::kIDevId, kNoExpiryUnix, i));
    }
    b.InsertCertificate(MakeCert(11, 1, CertProfile::kLDevId, kNow + 10 * kDay, 11));  // in
    b.InsertCertificate(MakeCert(12, 2, CertProfile::kLDevId, kNow + 40 * kDay, 12));  // later
    b.InsertCertificate(MakeCert(13, 3, CertProfile::kLDevId, kNow + 10 * kDay, 13));  // revoked
    b.RevokeCertificate(CertSerial(13), RevocationReason::kSuperseded);
    b.InsertCertificate(MakeCert(14, 4, CertProfile::kLDevId, kNow - 1, 14));          // expired
    b.InsertCertificate(MakeCert(15, 5, CertProfile::kLDevId, kNow + 30 * kDay, 15));  // edge
    b.InsertCertificate(MakeCert(16, 6, CertProfile::kLDevId, kNow + 20 * kDay, 16));  // two...
    b.InsertCertificate(MakeCert(17, 6, CertProfile::kLDevId, kNow + 5 * kDay, 17));   // ...certs
    b.InsertCertificate(MakeCert(18, 7, CertProfile::kLDevId, kNow, 18));              // edge
    b.InsertCertificate(MakeCert(19, 8, CertProfile::kLDevId, kNow + 30 * kDay + 1, 19));
    // Certificates without a device are never listed.
    b.InsertCertificate(MakeCert(20, std::nullopt, CertProfile::kServer, kNow + kDay, 20));
    b.UpdateDeviceState(DeviceId(1), DeviceState::kManufactured, DeviceState::kActive);
    MustCommit(b);
    filter_.expiring_within = std::chrono::days(30);
  }

  DeviceFilter filter_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ExpiryFixture, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param.name; });

TEST_P(ExpiryFixture, ListsDevicesExpiringInWindowInExpiryOrder) {
  auto all = ListAll(filter_, 2);
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& d : all) {
    ASSERT_TRUE(d.cert_serial && d.cert_not_after);
    got.emplace_back(d.device.device_id, *d.cert_serial);
  }
  std::vector<std::pair<std::string, std::string>> want = {
      {DeviceId(7), CertSerial(18)},  // not_after == now: the window includes both ends
      {DeviceId(6), CertSerial(17)},  // listed once, under its earliest certificate
      {DeviceId(1), CertSerial(11)},
      {DeviceId(5), CertSerial(15)},  // not_after == now + 30 days
  };
  EXPECT_EQ(got, want);
  EXPECT_EQ(all[0].cert_not_after, kNow);
  EXPECT_EQ(Count(filter_), 4);
}

TEST_P(ExpiryFixture, WindowCombinesWithDeviceFilters) {
  DeviceFilter f = filter_;
  f.state = DeviceState::kActive;
  auto active = ListAll(f, 10);
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].device.device_id, DeviceId(1));
  EXPECT_EQ(Count(f), 1);
  f = filter_;
  f.model = "odd";  // devices 1, 3, 5, 7
  EXPECT_EQ(Count(f), 3);
  EXPECT_EQ(ListAll(f, 1).size(), 3u);
}

TEST_P(ExpiryFixture, ListDeviceCountsGivesTheCountRows) {
  auto rows = store_->ListDeviceCounts(100);
  ASSERT_TRUE(rows) << rows.error().ToString();
  using Row = Store::DeviceCountRow;
  EXPECT_EQ(*rows, (std::vector<Row>{{DeviceState::kActive, "odd", "b1", 1},
                                     {DeviceState::kManufactured, "even", "b1", 4},
                                     {DeviceState::kManufactured, "odd", "b1", 3}}));
  auto first = store_->ListDeviceCounts(1);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->size(), 1u);
  EXPECT_FALSE(store_->ListDeviceCounts(0));
}

TEST_P(ExpiryFixture, CountExpiriesByDayCountsEachDeviceOnceUnderItsFirstExpiry) {
  auto day = [](int64_t t) { return t / kDay; };
  int64_t from = day(kNow) + 1;  // device 7 (expiring now) and 4 (expired) are before
  std::map<int64_t, int64_t> want;
  for (int64_t t : {kNow + 5 * kDay,       // device 6, not again under its later cert
                    kNow + 10 * kDay,      // device 1 (device 3's is revoked)
                    kNow + 30 * kDay,      // device 5
                    kNow + 30 * kDay + 1,  // device 8
                    kNow + 40 * kDay}) {   // device 2
    ++want[day(t)];
  }
  auto got = store_->CountExpiriesByDay(from, from + 365);
  ASSERT_TRUE(got) << got.error().ToString();
  std::map<int64_t, int64_t> got_map;
  for (const auto& d : *got) got_map[d.day] = d.n;
  EXPECT_EQ(got_map, want);
  // From a later day, device 6 counts under its renewal (its first certificate is before).
  auto later = store_->CountExpiriesByDay(day(kNow + 6 * kDay), day(kNow + 25 * kDay));
  ASSERT_TRUE(later);
  std::map<int64_t, int64_t> later_map;
  for (const auto& d : *later) later_map[d.day] = d.n;
  EXPECT_EQ(later_map,
            (std::map<int64_t, int64_t>{{day(kNow + 10 * kDay), 1}, {day(kNow + 20 * kDay), 1}}));
  EXPECT_FALSE(store_->CountExpiriesByDay(from, from - 1));
}

TEST_P(ExpiryFixture, WindowFollowsTheClock) {
  clock_.Advance(std::chrono::days(11));  // 1, 6 (first cert), 7 are now expired
  // Device 6 is now listed under its second certificate; 2 and 8 entered the window.
  auto all = ListAll(filter_, 10);
  std::vector<std::string> got;
  for (const auto& d : all) got.push_back(*d.cert_serial);
  EXPECT_EQ(got, (std::vector<std::string>{CertSerial(16), CertSerial(15), CertSerial(19),
                                           CertSerial(12)}));
  EXPECT_EQ(Count(filter_), 4);
}

TEST_P(StoreConformance, ExpiryPaginationWithTiesNeitherRepeatsNorSkips) {
  WriteBatch b;
  for (int i = 0; i < 100; ++i) {
    b.InsertDevice(MakeDevice(i));
    b.InsertCertificate(MakeCert(i, i, CertProfile::kLDevId, kNow + (i % 5) * kDay, i));
  }
  MustCommit(b);
  DeviceFilter f;
  f.expiring_within = std::chrono::days(7);
  auto all = ListAll(f, 7);
  ASSERT_EQ(all.size(), 100u);
  std::set<std::string> ids;
  for (size_t i = 0; i < all.size(); ++i) {
    ids.insert(all[i].device.device_id);
    if (i > 0) {
      EXPECT_LT(std::make_pair(*all[i - 1].cert_not_after, *all[i - 1].cert_serial),
                std::make_pair(*all[i].cert_not_after, *all[i].cert_serial));
    }
  }
  EXPECT_EQ(ids.size(), 100u);
  EXPECT_EQ(Count(f), 100);
}

TEST_P(StoreConformance, ExpiryQueriesUseTheStatusNotAfterIndex) {
  const Backend& backend = GetParam();
  std::vector<DeviceFilter> filters(3);
  for (auto& f : filters) f.expiring_within = std::chrono::days(30);
  filters[1].state = DeviceState::kActive;
  filters[2].model = "m";
  filters[2].batch = "b";
  for (const DeviceFilter& f : filters) {
    auto list_plan = backend.explain_list(*store_, f);
    ASSERT_TRUE(list_plan) << list_plan.error().ToString();
    EXPECT_TRUE(backend.plan_uses_expiry_index(*list_plan)) << *list_plan;
  }
}

// Every filter combination `device count` takes, with and without a window (one that spans
// whole days, one within a day): the count tables answer, devices and certificates are not read.
TEST_P(StoreConformance, CountsReadOnlyTheCountTables) {
  const Backend& backend = GetParam();
  std::vector<std::optional<std::chrono::seconds>> windows = {std::nullopt, std::chrono::days(30),
                                                              std::chrono::seconds(60)};
  for (int mask = 0; mask < 8; ++mask) {
    for (const auto& window : windows) {
      DeviceFilter f;
      if (mask & 1) f.state = DeviceState::kActive;
      if (mask & 2) f.model = "m";
      if (mask & 4) f.batch = "b";
      f.expiring_within = window;
      auto plan = backend.explain_count(*store_, f);
      ASSERT_TRUE(plan) << plan.error().ToString();
      EXPECT_TRUE(backend.plan_reads_only_counts(*plan)) << "mask " << mask << "\n" << *plan;
    }
  }
}

// The counts against a brute-force count of an in-memory model of the same data, for every
// filter combination and many windows, with the clock at and around UTC midnight (the count
// splits a window at day boundaries), after inserts, state changes, revocations and
// re-issuance (including a certificate that expires before the device's existing ones).
class RandomCounts : public StoreConformance {
 protected:
  struct ModelDevice {
    DeviceState state;
    std::string model;
    std::string batch;
  };
  struct ModelCert {
    std::optional<int> device;
    int64_t not_after;
    bool valid;
  };

  static constexpr int64_t kDay0 = kNow - kNow % kDay;  // midnight UTC before kNow
  static constexpr DeviceState kStates[] = {DeviceState::kManufactured, DeviceState::kActive,
                                            DeviceState::kSuspended, DeviceState::kDecommissioned};

  int64_t RandomNotAfter() {
    std::uniform_int_distribution<int> kind(0, 5), day(-3, 40), secs(0, kDay - 1);
    int64_t midnight = kDay0 + day(rng_) * kDay;
    switch (kind(rng_)) {
      case 0:
        return midnight;
      case 1:
        return midnight - 1;
      case 2:
        return midnight + 1;
      case 3:
        return kNow + day(rng_) * kDay;  // same time of day as the clock
      default:
        return midnight + secs(rng_);
    }
  }

  // New certificates (one IDevID per new device, 0 to 3 LDevIDs for random devices).
  void AddCertificates(WriteBatch& b, int device, int count) {
    for (int i = 0; i < count; ++i) {
      int n = next_cert_++;
      int64_t not_after = RandomNotAfter();
      // Now and then two certificates of a device expire at the same second (ties by serial).
      if (i > 0 && std::uniform_int_distribution<int>(0, 4)(rng_) == 0) {
        not_after = certs_.rbegin()->second.not_after;
      }
      CertificateRecord c = MakeCert(n, device, CertProfile::kLDevId, not_after, n);
      c.not_before = std::min(c.not_before, not_after);
      b.InsertCertificate(c);
      certs_[n] = ModelCert{device, not_after, true};
    }
  }

  void AddDevices(int from, int to) {
    WriteBatch b;
    std::uniform_int_distribution<int> pick(0, 2), ldevids(0, 3);
    for (int i = from; i < to; ++i) {
      Device d = MakeDevice(i, "m" + std::to_string(pick(rng_)), "b" + std::to_string(pick(rng_)));
      d.state = kStates[pick(rng_)];
      b.InsertDevice(d);
      devices_[i] = ModelDevice{d.state, d.model, d.batch};
      // A third of the devices get a counted certificate right after their row, as a factory
      // batch writes its IDevIDs.
      if (pick(rng_) == 0) AddCertificates(b, i, 1);
      int n = next_cert_++;
      b.InsertCertificate(MakeCert(n, i, CertProfile::kIDevId, kNoExpiryUnix, n));
      certs_[n] = ModelCert{i, kNoExpiryUnix, true};
      AddCertificates(b, i, ldevids(rng_));
    }
    int ca = next_cert_++;
    b.InsertCertificate(MakeCert(ca, std::nullopt, CertProfile::kServer, kNow + kDay, ca));
    certs_[ca] = ModelCert{std::nullopt, kNow + kDay, true};
    MustCommit(b);
  }

  void ChangeStates() {
    WriteBatch b;
    for (auto& [id, d] : devices_) {
      if (std::uniform_int_distribution<int>(0, 2)(rng_) != 0) continue;
      DeviceState to = kStates[std::uniform_int_distribution<int>(0, 3)(rng_)];
      b.UpdateDeviceState(DeviceId(id), d.state, to);
      d.state = to;
    }
    MustCommit(b);
  }

  void Revoke() {
    WriteBatch b;
    for (auto& [n, c] : certs_) {
      if (!c.valid || std::uniform_int_distribution<int>(0, 4)(rng_) != 0) continue;
      b.RevokeCertificate(CertSerial(n), RevocationReason::kSuperseded);
      c.valid = false;
    }
    MustCommit(b);
  }

  void Reissue() {
    WriteBatch b;
    for (const auto& [id, d] : devices_) {
      if (std::uniform_int_distribution<int>(0, 1)(rng_) == 0) AddCertificates(b, id, 1);
    }
    MustCommit(b);
  }

  int64_t BruteCount(const DeviceFilter& f, int64_t now) const {
    int64_t to = f.expiring_within ? now + f.expiring_within->count() : 0;
    std::set<int> matched;
    for (const auto& [id, d] : devices_) {
      if ((f.state && d.state != *f.state) || (f.model && d.model != *f.model) ||
          (f.batch && d.batch != *f.batch)) {
        continue;
      }
      if (!f.expiring_within) matched.insert(id);
    }
    if (!f.expiring_within) return static_cast<int64_t>(matched.size());
    std::set<int> devices;
    for (const auto& [n, c] : certs_) {
      if (!c.device || !c.valid || c.not_after < now || c.not_after > to) continue;
      const ModelDevice& d = devices_.at(*c.device);
      if ((f.state && d.state != *f.state) || (f.model && d.model != *f.model) ||
          (f.batch && d.batch != *f.batch)) {
        continue;
      }
      devices.insert(*c.device);
    }
    return static_cast<int64_t>(devices.size());
  }

  void ExpectCountsMatch(const std::string& when) {
    const int64_t clocks[] = {kNow, kDay0, kDay0 + kDay - 1, kDay0 + 3 * kDay, kNow + 5 * kDay + 7};
    for (int64_t now : clocks) {
      clock_.Set(now);
      int64_t to_midnight = kDay0 + ((now - kDay0) / kDay + 1) * kDay - now;
      const int64_t windows[] = {0,
                                 1,
                                 kDay - 1,
                                 kDay,
                                 kDay + 1,
                                 to_midnight,
                                 to_midnight - 1,
                                 to_midnight + kDay,
                                 7 * kDay,
                                 30 * kDay,
                                 30 * kDay + 1,
                                 45 * kDay - 1,
                                 1000 * kDay,
                                 kNoExpiryUnix - now};
      for (int64_t w : windows) {
        for (int mask = 0; mask < 16; ++mask) {
          DeviceFilter f;
          if (mask & 1) f.state = kStates[(mask + w) % 4];
          // append, not "m" + std::to_string(): GCC 12 at -O3 warns falsely (-Wrestrict) on
          // operator+(const char*, std::string&&).
          if (mask & 2) f.model = std::string("m").append(std::to_string(w % 3));
          if (mask & 4) f.batch = std::string("b").append(std::to_string(mask % 3));
          if (mask & 8) f.expiring_within = std::chrono::seconds(w);
          if (!(mask & 8) && w != 0) continue;  // no window: once per clock
          EXPECT_EQ(Count(f), BruteCount(f, now))
              << when << ": now " << now << " window " << w << " mask " << mask;
        }
        // The listing (which walks the certificates) agrees too.
        DeviceFilter f;
        f.expiring_within = std::chrono::seconds(w);
        EXPECT_EQ(static_cast<int64_t>(ListAll(f, kMaxPageSize).size()), BruteCount(f, now))
            << when << ": now " << now << " window " << w;
      }
    }
    clock_.Set(kNow);
  }

  std::mt19937 rng_{20261128};
  std::map<int, ModelDevice> devices_;
  std::map<int, ModelCert> certs_;
  int next_cert_ = 1000;
};

INSTANTIATE_TEST_SUITE_P(Backends, RandomCounts, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param.name; });

TEST_P(RandomCounts, CountsEqualBruteForce) {
  AddDevices(0, 40);
  AddDevices(40, 60);
  ExpectCountsMatch("after inserts");
  ChangeStates();
  ExpectCountsMatch("after state changes");
  Revoke();
  ExpectCountsMatch("after revocations");
  Reissue();
  ExpectCountsMatch("after re-issuance");
  // A batch that fails half-way leaves the counts as they were.
  WriteBatch failing;
  AddCertificates(failing, 1, 2);
  failing.UpdateDeviceState(DeviceId(2), DeviceState::kDecommissioned,
                            DeviceState::kDecommissioned);
  if (devices_[2].state == DeviceState::kDecommissioned) {
    failing.UpdateDeviceState(DeviceId(2), DeviceState::kActive, DeviceState::kActive);
  }
  ASSERT_FALSE(store_->Commit(failing));
  for (auto it = certs_.end(); it != certs_.begin();) {
    --it;
    if (it->first < next_cert_ - 2) break;
    it->second.valid = false;  // never written
  }
  ExpectCountsMatch("after a failed batch");
  if (GetParam().persistent) {
    Reopen();
    ExpectCountsMatch("after reopening");
  }
}

// --- Audit log ------------------------------------------------------------------------------

TEST_P(StoreConformance, EmptyAuditChainIsIntact) {
  auto verdict = VerifyAuditChain(*store_);
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->intact);
  EXPECT_EQ(verdict->rows_checked, 0);
}

TEST_P(StoreConformance, AuditChainIsComputedByTheStore) {
  auto first = MustCommit(WriteBatch()
                              .AppendAudit(Event("ca.init", "root", R"({"curve":"P-256"})"))
                              .AppendAudit(Event("ca.init", "manufacturing"))
                              .AppendAudit(Event("ca.init", "operational")));
  EXPECT_EQ(first.audit_seqs, (std::vector<int64_t>{1, 2, 3}));
  clock_.Advance(std::chrono::seconds(5));
  auto second = MustCommit(WriteBatch()
                               .InsertDevice(MakeDevice(1))
                               .AppendAudit(Event("cert.issue", CertSerial(1)))
                               .AppendAudit(Event("cert.refuse", CertSerial(2), "")));
  EXPECT_EQ(second.audit_seqs, (std::vector<int64_t>{4, 5}));

  auto rows = AllAudit();
  ASSERT_EQ(rows.size(), 5u);
  Bytes prev(kAuditHashSize, 0);
  for (size_t i = 0; i < rows.size(); ++i) {
    const AuditRecord& r = rows[i];
    EXPECT_EQ(r.seq, static_cast<int64_t>(i + 1));
    EXPECT_EQ(r.time, i < 3 ? kNow : kNow + 5);
    EXPECT_EQ(r.prev_hash, prev);
    EXPECT_EQ(r.hash, ComputeAuditHash(prev, r.seq, r.time,
                                       AuditEvent{r.actor, r.action, r.subject, r.details}));
    prev = r.hash;
  }
  EXPECT_EQ(rows[0].details, R"({"curve":"P-256"})");
  EXPECT_EQ(rows[4].action, "cert.refuse");

  auto partial = store_->ReadAudit(4, 1);
  ASSERT_TRUE(partial);
  ASSERT_EQ(partial->size(), 1u);
  EXPECT_EQ((*partial)[0], rows[3]);

  // Small pages exercise the verifier's paging.
  auto verdict = VerifyAuditChain(*store_, 2);
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->intact) << verdict->explanation;
  EXPECT_EQ(verdict->rows_checked, 5);
  EXPECT_EQ(verdict->last_seq, 5);
  EXPECT_EQ(verdict->head_hash, rows[4].hash);
}

// A verification told to stop reads no further page: Aborted, not a verdict.
TEST_P(StoreConformance, AuditVerificationStopsWhenCancelled) {
  for (int i = 0; i < 3; ++i) MustCommit(WriteBatch().AppendAudit(Event("a", "x")));
  std::atomic<bool> cancel{true};
  auto stopped = VerifyAuditChain(*store_, 1, {}, &cancel);
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code(), Code::kAborted);
  cancel = false;
  auto whole = VerifyAuditChain(*store_, 1, {}, &cancel);
  ASSERT_TRUE(whole) << whole.error().ToString();
  EXPECT_EQ(whole->rows_checked, 3);
}

TEST_P(StoreConformance, TamperedAuditRowIsNamed) {
  WriteBatch b;
  for (int i = 0; i < 6; ++i) b.AppendAudit(Event("cert.issue", CertSerial(i)));
  MustCommit(b);
  ASSERT_TRUE(GetParam().exec_sql(
      *store_, "UPDATE audit_log SET details = '{\"forged\":true}' WHERE seq = 3"));
  auto verdict = VerifyAuditChain(*store_, 4);
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->intact);
  EXPECT_EQ(verdict->first_broken_seq, 3);
  EXPECT_EQ(verdict->problem, AuditProblem::kHashMismatch);
  EXPECT_THAT(verdict->explanation, HasSubstr("row 3"));
  EXPECT_EQ(verdict->rows_checked, 2);
}

TEST_P(StoreConformance, DeletedAuditRowIsNamed) {
  WriteBatch b;
  for (int i = 0; i < 4; ++i) b.AppendAudit(Event("cert.issue", CertSerial(i)));
  MustCommit(b);
  ASSERT_TRUE(GetParam().exec_sql(*store_, "DELETE FROM audit_log WHERE seq = 2"));
  auto verdict = VerifyAuditChain(*store_);
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->intact);
  EXPECT_EQ(verdict->first_broken_seq, 3);
  EXPECT_EQ(verdict->problem, AuditProblem::kSeqGap);
}

TEST_P(StoreConformance, RewrittenTimeIsDetected) {
  MustCommit(WriteBatch().AppendAudit(Event("a", "b")).AppendAudit(Event("c", "d")));
  ASSERT_TRUE(GetParam().exec_sql(*store_, "UPDATE audit_log SET time = time + 1 WHERE seq = 1"));
  auto verdict = VerifyAuditChain(*store_);
  ASSERT_TRUE(verdict);
  EXPECT_EQ(verdict->first_broken_seq, 1);
}

TEST_P(StoreConformance, AuditHeadIsTheLatestRow) {
  auto empty = ReadAuditHead(*store_);
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->has_value());
  for (int n : {1, 2, 3, 6, 7}) {
    WriteBatch b;
    for (int i = 0; i < n; ++i) b.AppendAudit(Event("cert.issue", CertSerial(i)));
    MustCommit(b);
    auto rows = AllAudit();
    auto head = ReadAuditHead(*store_);
    ASSERT_TRUE(head);
    ASSERT_TRUE(head->has_value());
    EXPECT_EQ(**head, rows.back()) << "after " << rows.size() << " rows";
  }
}

// An attacker who can write the database can rewrite a row and recompute every hash after it;
// the chain then verifies, and only an anchor kept elsewhere tells the difference.
TEST_P(StoreConformance, AuditAnchorDetectsARecomputedChain) {
  WriteBatch b;
  for (int i = 0; i < 5; ++i) b.AppendAudit(Event("cert.issue", CertSerial(i)));
  MustCommit(b);
  auto rows = AllAudit();
  AuditAnchor kept{.seq = 3, .hash = rows[2].hash};
  auto good = VerifyAuditChain(*store_, 2, std::span(&kept, 1));
  ASSERT_TRUE(good);
  EXPECT_TRUE(good->intact) << good->explanation;

  // What the attacker's recomputed row 3 would hash to (same contents otherwise).
  AuditAnchor other{.seq = 3,
                    .hash = ComputeAuditHash(rows[2].prev_hash, 3, rows[2].time,
                                             AuditEvent{rows[2].actor, rows[2].action,
                                                        rows[2].subject, R"({"forged":true})"})};
  auto bad = VerifyAuditChain(*store_, 2, std::span(&other, 1));
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->intact);
  EXPECT_EQ(bad->first_broken_seq, 3);
  EXPECT_EQ(bad->problem, AuditProblem::kAnchorMismatch);
  EXPECT_THAT(bad->explanation, HasSubstr("row 3"));

  // An anchor past the end: the tail was cut off.
  AuditAnchor beyond{.seq = 9, .hash = rows[2].hash};
  auto cut = VerifyAuditChain(*store_, 1000, std::span(&beyond, 1));
  ASSERT_TRUE(cut);
  EXPECT_FALSE(cut->intact);
  EXPECT_EQ(cut->problem, AuditProblem::kAnchorMismatch);
  EXPECT_THAT(cut->explanation, HasSubstr("ends at row 5"));
}

TEST(AuditAnchor, ParsesAndFormats) {
  AuditAnchor a{.seq = 42, .hash = Bytes(kAuditHashSize, 0xab)};
  std::string text = FormatAuditAnchor(a);
  std::string hex;
  for (size_t i = 0; i < kAuditHashSize; ++i) hex += "ab";
  EXPECT_EQ(text, "42:" + hex);
  auto back = ParseAuditAnchor(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->seq, 42);
  EXPECT_EQ(back->hash, a.hash);
  for (std::string bad : {std::string("42"), ":" + hex, "0:" + hex, "-1:" + hex, "4x:" + hex,
                          "42:" + hex.substr(2), "42:" + hex + "00", std::string("42:zz")}) {
    auto r = ParseAuditAnchor(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.error().message(), HasSubstr("SEQ:HASH")) << bad;
  }
}

// --- Replay table ---------------------------------------------------------------------------

TEST_P(StoreConformance, TokensAreRecordedOnce) {
  std::string id = DeviceId(1);
  EXPECT_EQ(store_->IsTokenRecorded(id, kNow), false);
  MustCommit(WriteBatch().RecordToken(id, kNow));
  EXPECT_EQ(store_->IsTokenRecorded(id, kNow), true);
  std::string upper = id;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  EXPECT_EQ(store_->IsTokenRecorded(upper, kNow), true) << "case must not bypass the check";
  EXPECT_EQ(store_->IsTokenRecorded(id, kNow + 1), false);
  EXPECT_EQ(store_->IsTokenRecorded("not-an-id", kNow).error().code(), Code::kInvalidArgument);

  auto again = store_->Commit(WriteBatch().RecordToken(id, kNow));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);
  EXPECT_EQ(again.error().message(), "bootstrap token already used");
  MustCommit(WriteBatch().RecordToken(id, kNow + 1));
  MustCommit(WriteBatch().RecordToken(DeviceId(2), kNow));

  auto pruned = store_->PruneReplay(kNow + 1);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 2);
  EXPECT_EQ(store_->IsTokenRecorded(id, kNow), false);
  EXPECT_EQ(store_->IsTokenRecorded(id, kNow + 1), true);
  EXPECT_FALSE(store_->Commit(WriteBatch().RecordToken(id, kNow + 1)));
  MustCommit(WriteBatch().RecordToken(id, kNow));  // Forgotten: the window check refuses it.
}

TEST_P(StoreConformance, ReplayedTokenRollsBackItsBatch) {
  MustCommit(WriteBatch().InsertDevice(MakeDevice(1)).RecordToken(DeviceId(1), kNow));
  // The token first, as the JSON API orders it, and last: either way nothing of the batch stays.
  for (bool token_first : {true, false}) {
    WriteBatch batch;
    if (token_first) batch.RecordToken(DeviceId(1), kNow);
    batch.UpdateDeviceState(DeviceId(1), DeviceState::kManufactured, DeviceState::kActive)
        .InsertCertificate(MakeCert(1, 1, CertProfile::kLDevId, kNow + 90 * kDay, 1))
        .AppendAudit(Event("cert.issue", CertSerial(1)));
    if (!token_first) batch.RecordToken(DeviceId(1), kNow);
    auto r = store_->Commit(batch);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
    EXPECT_EQ(store_->GetDevice(DeviceId(1))->state, DeviceState::kManufactured);
    EXPECT_EQ(store_->GetCertificate(CertSerial(1)).error().code(), Code::kNotFound);
    EXPECT_TRUE(AllAudit().empty());
    EXPECT_EQ(Count({.state = DeviceState::kActive}), 0);
  }
  // The same token twice in one batch (two requests merged by a group commit).
  auto twice =
      store_->Commit(WriteBatch().RecordToken(DeviceId(2), kNow).RecordToken(DeviceId(2), kNow));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), Code::kAlreadyExists);
  EXPECT_EQ(store_->IsTokenRecorded(DeviceId(2), kNow), false);
}

TEST_P(StoreConformance, MalformedTokenRefusedBeforeWriting) {
  std::string upper = DeviceId(1);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  for (const std::string& id : {upper, std::string("not-an-id"), std::string()}) {
    auto r = store_->Commit(WriteBatch().AppendAudit(Event("x", "y")).RecordToken(id, kNow));
    ASSERT_FALSE(r) << id;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << id;
  }
  ExpectNothingWritten();
}

// --- Concurrency ----------------------------------------------------------------------------

TEST_P(StoreConformance, ConcurrentCommitsKeepOneChain) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread reader([&] {
    while (!done) {
      if (!store_->CountDevices({}) || !store_->ReadAudit(1, 10)) ++failures;
    }
  });
  std::vector<std::thread> writers;
  std::vector<std::vector<int64_t>> seqs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        int n = t * kPerThread + i;
        auto r = store_->Commit(
            WriteBatch()
                .InsertDevice(MakeDevice(n))
                .InsertCertificate(MakeCert(n, n, CertProfile::kIDevId, kNoExpiryUnix, n))
                .AppendAudit(Event("cert.issue", CertSerial(n))));
        if (!r) {
          ++failures;
          continue;
        }
        seqs[t].insert(seqs[t].end(), r->audit_seqs.begin(), r->audit_seqs.end());
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(Count(), kThreads * kPerThread);
  std::set<int64_t> all;
  for (const auto& s : seqs) all.insert(s.begin(), s.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  auto verdict = VerifyAuditChain(*store_);
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->intact) << verdict->explanation;
  EXPECT_EQ(verdict->rows_checked, kThreads * kPerThread);
}

// Two Store objects on one database, as two processes or two server nodes have them: each its
// own connections, committing in parallel. The audit log stays one chain (every seq once, each
// row linked to the previous one) and the counts add up.
TEST_P(StoreConformance, TwoStoresCommittingInParallelKeepOneChain) {
  if (!GetParam().persistent) GTEST_SKIP() << "an in-memory database has one store";
  auto second = GetParam().open(dir_, clock_);
  ASSERT_TRUE(second) << second.error().ToString();
  std::vector<Store*> stores = {store_.get(), second->get()};
  constexpr int kPerStore = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerStore; ++i) {
        int n = t * kPerStore + i;
        WriteBatch b;
        b.InsertDevice(MakeDevice(n))
            .InsertCertificate(MakeCert(n, n, CertProfile::kLDevId, kNow + (n % 9) * kDay, n))
            .AppendAudit(Event("cert.issue", CertSerial(n)));
        if (i % 2 == 0) b.AppendAudit(Event("note", std::to_string(n)));
        auto r = stores[t]->Commit(b);
        if (!r) {
          ADD_FAILURE() << r.error().ToString();
          ++failures;
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures, 0);
  for (Store* s : stores) {
    auto verdict = VerifyAuditChain(*s);
    ASSERT_TRUE(verdict);
    EXPECT_TRUE(verdict->intact) << verdict->explanation;
    EXPECT_EQ(verdict->rows_checked, 2 * kPerStore + kPerStore);
    auto n = s->CountDevices({});
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 2 * kPerStore);
    auto expiring = s->CountDevices({.expiring_within = std::chrono::days(10)});
    ASSERT_TRUE(expiring);
    EXPECT_EQ(*expiring, 2 * kPerStore);
  }
}

// --- Rotation campaigns ---------------------------------------------------------------------

CampaignSpec Spec(std::string name, int64_t wave_size = 10) {
  CampaignSpec spec;
  spec.name = std::move(name);
  spec.filter_json = R"({"batch":"b1"})";
  spec.wave_size = wave_size;
  spec.deadline = kNow + 3 * kDay;
  return spec;
}

CampaignCohort ByBatch(std::string batch) {
  return CampaignCohort{.devices = DeviceFilter{.batch = std::move(batch)}};
}

class CampaignStore : public StoreConformance {
 protected:
  // Devices 0..n-1 of batch `batch`, each with an LDevID expiring (i % 7) + 1 days from now.
  void AddFleet(int first, int n, std::string batch = "b1") {
    WriteBatch b;
    for (int i = first; i < first + n; ++i) {
      b.InsertDevice(MakeDevice(i, "sensor-a", batch));
      b.InsertCertificate(
          MakeCert(i, i, CertProfile::kLDevId, kNow + ((i % 7) + 1) * kDay, /*key=*/i));
    }
    MustCommit(b);
  }

  Store::CampaignPreview MustCreate(const CampaignSpec& spec, const CampaignCohort& cohort,
                                    bool dry_run = false) {
    auto r =
        store_->CreateCampaign(spec, cohort, Event("campaign.create", spec.name), dry_run, 100);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : Store::CampaignPreview{};
  }

  std::vector<Job> AllJobs(int64_t campaign_id) {
    auto r = store_->ListJobs(campaign_id, false, -1, kMaxPageSize);
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : std::vector<Job>{};
  }

  // n per (wave, state) as "w:state=n" strings, for readable comparisons.
  std::vector<std::string> Counts(int64_t campaign_id) {
    std::vector<std::string> out;
    auto r = store_->CountJobs(campaign_id);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return out;
    for (const auto& c : *r) {
      out.push_back(std::to_string(c.wave) + ":" + std::string(JobStateName(c.state)) + "=" +
                    std::to_string(c.n));
    }
    return out;
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, CampaignStore, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param.name; });

TEST_P(CampaignStore, CreateMakesOneJobPerDeviceInWavesAcrossPages) {
  AsSql(*store_).SetCohortPageForTest(7);  // 25 devices: four pages
  AddFleet(0, 25, "b1");
  AddFleet(100, 5, "b2");
  auto preview = MustCreate(Spec("q3", 10), ByBatch("b1"));
  const Campaign& c = preview.campaign;
  EXPECT_GT(c.id, 0);
  EXPECT_EQ(c.jobs, 25);
  EXPECT_EQ(c.waves, 3);
  EXPECT_EQ(c.current_wave, 0);
  EXPECT_EQ(c.state, CampaignState::kRunning);
  auto got = store_->GetCampaign("q3");
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(*got, c);

  auto jobs = AllJobs(c.id);
  ASSERT_EQ(jobs.size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(jobs[i].ordinal, i);
    EXPECT_EQ(jobs[i].device_id, DeviceId(i)) << "inventory order";
    EXPECT_EQ(jobs[i].wave, i / 10);
    EXPECT_EQ(jobs[i].state, JobState::kPending);
    EXPECT_EQ(jobs[i].old_serial, CertSerial(i)) << "the device's LDevID";
    EXPECT_EQ(jobs[i].next_attempt_at, i < 10 ? kNow : kNotYetDue) << "only wave 0 is due";
  }
  EXPECT_THAT(Counts(c.id), ::testing::ElementsAre("0:pending=10", "1:pending=10", "2:pending=5"));
  auto audit = AllAudit();
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().action, "campaign.create");
  EXPECT_EQ(audit.back().subject, "q3");
  EXPECT_TRUE(VerifyAuditChain(*store_)->intact);
}

TEST_P(CampaignStore, ExpiringCohortFollowsTheExpiryIndexAcrossPages) {
  AsSql(*store_).SetCohortPageForTest(3);
  AddFleet(0, 20);
  // Within 3 days: devices whose LDevID ends in 1..3 days (i % 7 in 0..2), earliest first.
  auto preview =
      MustCreate(Spec("soon", 4),
                 CampaignCohort{.devices = DeviceFilter{.expiring_within = std::chrono::days(3)}});
  auto listed = ListAll({.expiring_within = std::chrono::days(3)}, 100);
  auto jobs = AllJobs(preview.campaign.id);
  ASSERT_EQ(jobs.size(), listed.size());
  EXPECT_EQ(jobs.size(), 9u);
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_EQ(jobs[i].device_id, listed[i].device.device_id);
    EXPECT_EQ(jobs[i].old_serial, listed[i].cert_serial);
  }
}

TEST_P(CampaignStore, IssuerAndListedCohorts) {
  AddFleet(0, 6);
  // Two more devices with only an IDevID (from "manufacturing").
  WriteBatch b;
  for (int i = 50; i < 52; ++i) {
    b.InsertDevice(MakeDevice(i, "sensor-a", "b9"));
    b.InsertCertificate(MakeCert(i, i, CertProfile::kIDevId, kNoExpiryUnix, i));
  }
  MustCommit(b);
  auto op = MustCreate(Spec("op"), CampaignCohort{.issued_by = std::string("operational")});
  EXPECT_EQ(op.campaign.jobs, 6);
  auto mfg = MustCreate(Spec("mfg"), CampaignCohort{.issued_by = std::string("manufacturing")});
  EXPECT_EQ(mfg.campaign.jobs, 2);
  EXPECT_EQ(AllJobs(mfg.campaign.id)[0].old_serial, std::nullopt) << "no LDevID to replace";

  std::vector<std::string> ids = {DeviceId(3), DeviceId(1), DeviceId(3)};
  auto listed = MustCreate(Spec("hand", 1), CampaignCohort{.device_ids = ids});
  auto jobs = AllJobs(listed.campaign.id);
  ASSERT_EQ(jobs.size(), 2u) << "a device listed twice has one job";
  EXPECT_EQ(jobs[0].device_id, DeviceId(3));
  EXPECT_EQ(jobs[1].device_id, DeviceId(1));
  EXPECT_EQ(jobs[1].wave, 1);
  EXPECT_EQ(listed.campaign.waves, 2);

  auto campaigns = store_->ListCampaigns();
  ASSERT_TRUE(campaigns);
  ASSERT_EQ(campaigns->size(), 3u);
  EXPECT_EQ((*campaigns)[0].spec.name, "hand") << "newest first";
}

TEST_P(CampaignStore, BadCampaignsAreRefusedAndNothingIsWritten) {
  AddFleet(0, 5);
  MustCreate(Spec("taken"), ByBatch("b1"));
  auto audit_before = AllAudit().size();
  auto refused = [&](const CampaignSpec& spec, const CampaignCohort& cohort) {
    auto r = store_->CreateCampaign(spec, cohort, Event("campaign.create", spec.name), false, 10);
    EXPECT_FALSE(r);
    return r ? Code::kUnimplemented : r.error().code();
  };
  EXPECT_EQ(refused(Spec("taken"), ByBatch("b1")), Code::kAlreadyExists);
  EXPECT_EQ(refused(Spec("empty"), ByBatch("nope")), Code::kFailedPrecondition);
  EXPECT_EQ(
      refused(Spec("ghost"),
              CampaignCohort{.device_ids = std::vector<std::string>{DeviceId(1), DeviceId(999)}}),
      Code::kNotFound);
  EXPECT_EQ(refused(Spec("zero", 0), ByBatch("b1")), Code::kInvalidArgument);
  CampaignSpec rate = Spec("rate");
  rate.max_failure_ppm = 1000001;
  EXPECT_EQ(refused(rate, ByBatch("b1")), Code::kInvalidArgument);
  EXPECT_EQ(refused(Spec("bad name!"), ByBatch("b1")), Code::kInvalidArgument);
  CampaignCohort two = ByBatch("b1");
  two.issued_by = "operational";
  EXPECT_EQ(refused(Spec("two"), two), Code::kInvalidArgument);
  EXPECT_EQ(refused(Spec("none"), CampaignCohort{}), Code::kInvalidArgument);

  EXPECT_EQ(AllAudit().size(), audit_before);
  auto campaigns = store_->ListCampaigns();
  ASSERT_TRUE(campaigns);
  EXPECT_EQ(campaigns->size(), 1u);
}

TEST_P(CampaignStore, DryRunCountsStrandedDevicesAndWritesNothing) {
  AddFleet(0, 10);  // certificates made at kNow, ending 1..7 days later (days 1..7, 1..3)
  clock_.Advance(std::chrono::hours(24 * 4 + 12));
  // Heard from just now, certificate ending in two days: not stranded.
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(20))
                 .InsertCertificate(
                     MakeCert(20, 20, CertProfile::kLDevId, clock_.NowUnix() + 2 * kDay, 20)));
  // 4.5 days since devices 4, 5 and 6 were heard from, and their certificates (days 5..7) have
  // 0.5 to 2.5 days left: stranded. Devices 0..3 and 7..9 have expired: no job.
  auto preview =
      MustCreate(Spec("dry"),
                 CampaignCohort{.devices = DeviceFilter{.expiring_within = std::chrono::days(30)}},
                 /*dry_run=*/true);
  EXPECT_EQ(preview.campaign.id, 0);
  EXPECT_EQ(preview.campaign.jobs, 4);
  EXPECT_EQ(preview.stranded, 3);
  ASSERT_EQ(preview.stranded_jobs.size(), 3u);
  EXPECT_EQ(preview.stranded_jobs[0].device_id, DeviceId(4));
  EXPECT_FALSE(store_->GetCampaign("dry"));
  EXPECT_TRUE(AllAudit().empty());
  auto limited = store_->CreateCampaign(
      Spec("dry"),
      CampaignCohort{.devices = DeviceFilter{.expiring_within = std::chrono::days(30)}},
      Event("campaign.create", "dry"), true, 1);
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->stranded, 3) << "all counted";
  EXPECT_EQ(limited->stranded_jobs.size(), 1u) << "the first listed";
}

TEST_P(CampaignStore, ClaimLeasesDueJobsOnceUntilTheLeaseEnds) {
  AddFleet(0, 25);
  auto c = MustCreate(Spec("claim", 10), ByBatch("b1")).campaign;
  auto first = store_->ClaimJobs("server-a", kNow, std::chrono::seconds(60), 4);
  ASSERT_TRUE(first) << first.error().ToString();
  ASSERT_EQ(first->size(), 4u);
  EXPECT_EQ((*first)[0].lease_owner, "server-a");
  EXPECT_EQ((*first)[0].lease_until, kNow + 60);
  auto rest = store_->ClaimJobs("server-b", kNow, std::chrono::seconds(60), 100);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->size(), 6u) << "the rest of wave 0; later waves are not due";
  EXPECT_TRUE(store_->ClaimJobs("server-b", kNow + 59, std::chrono::seconds(60), 100)->empty());
  auto again = store_->ClaimJobs("server-b", kNow + 60, std::chrono::seconds(60), 100);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->size(), 10u) << "expired leases are free again";

  // A transition releases the lease and moves the counts.
  MustCommit(WriteBatch()
                 .UpdateJob({.campaign_id = c.id,
                             .ordinal = 0,
                             .from = JobState::kPending,
                             .to = JobState::kNotified,
                             .attempts = 1,
                             .next_attempt_at = kNow + 3600})
                 .AppendAudit(Event("campaign.job.notified", DeviceId(0))));
  auto job = store_->GetJob(c.id, 0);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->state, JobState::kNotified);
  EXPECT_EQ(job->attempts, 1);
  EXPECT_EQ(job->lease_owner, std::nullopt);
  EXPECT_THAT(Counts(c.id),
              ::testing::ElementsAre("0:notified=1", "0:pending=9", "1:pending=10", "2:pending=5"));
  // Compare-and-set: the job is no longer pending; nothing of the batch is written.
  auto stale = store_->Commit(WriteBatch()
                                  .AppendAudit(Event("x", "y"))
                                  .UpdateJob({.campaign_id = c.id,
                                              .ordinal = 0,
                                              .from = JobState::kPending,
                                              .to = JobState::kFailed}));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), Code::kAborted);
  EXPECT_EQ(AllAudit().back().action, "campaign.job.notified");
  auto missing = store_->Commit(WriteBatch().UpdateJob({.campaign_id = c.id, .ordinal = 999}));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
}

TEST_P(CampaignStore, OpenJobsOfADeviceSkipFinishedJobsAndCampaigns) {
  AddFleet(0, 3);
  auto a = MustCreate(Spec("open-a", 10), ByBatch("b1")).campaign;
  auto b = MustCreate(Spec("open-b", 10), ByBatch("b1")).campaign;
  auto jobs = store_->ListOpenJobsForDevice(DeviceId(1));
  ASSERT_TRUE(jobs) << jobs.error().ToString();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].campaign_id, a.id);
  EXPECT_EQ((*jobs)[0].device_id, DeviceId(1));
  EXPECT_EQ((*jobs)[1].campaign_id, b.id);
  // A final job, and every job of a final campaign, are not open.
  MustCommit(WriteBatch().UpdateJob({.campaign_id = a.id,
                                     .ordinal = (*jobs)[0].ordinal,
                                     .from = JobState::kPending,
                                     .to = JobState::kFailed}));
  MustCommit(WriteBatch().UpdateCampaign(
      {.campaign_id = b.id, .from = CampaignState::kRunning, .to = CampaignState::kCancelled}));
  EXPECT_TRUE(store_->ListOpenJobsForDevice(DeviceId(1))->empty());
  EXPECT_EQ(store_->ListOpenJobsForDevice(DeviceId(2))->size(), 1u);
  EXPECT_TRUE(store_->ListOpenJobsForDevice(std::string(64, 'f'))->empty());
  EXPECT_TRUE(store_->ListOpenJobsForDevice("not-hex")->empty());
}

TEST_P(CampaignStore, WavesStartAndPausedCampaignsAreNotClaimed) {
  AddFleet(0, 15);
  auto c = MustCreate(Spec("waves", 10), ByBatch("b1")).campaign;
  MustCommit(WriteBatch().UpdateCampaign(
      {.campaign_id = c.id, .from = CampaignState::kRunning, .to = CampaignState::kPaused}));
  EXPECT_TRUE(store_->ClaimJobs("s", kNow, std::chrono::seconds(60), 100)->empty());
  auto wrong = store_->Commit(WriteBatch().UpdateCampaign(
      {.campaign_id = c.id, .from = CampaignState::kRunning, .to = CampaignState::kHalted}));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Code::kAborted);

  clock_.Advance(std::chrono::seconds(100));
  MustCommit(WriteBatch().UpdateCampaign({.campaign_id = c.id,
                                          .from = CampaignState::kPaused,
                                          .to = CampaignState::kRunning,
                                          .start_wave = 1}));
  auto got = store_->GetCampaign("waves");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->current_wave, 1);
  EXPECT_EQ(got->wave_started_at, kNow + 100);
  auto claimed = store_->ClaimJobs("s", kNow + 100, std::chrono::seconds(60), 100);
  ASSERT_TRUE(claimed);
  EXPECT_EQ(claimed->size(), 15u);
  auto skip = store_->Commit(WriteBatch().UpdateCampaign({.campaign_id = c.id,
                                                          .from = CampaignState::kRunning,
                                                          .to = CampaignState::kRunning,
                                                          .start_wave = 3}));
  ASSERT_FALSE(skip);
  EXPECT_EQ(skip.error().code(), Code::kAborted) << "waves start one after another";
}

TEST_P(CampaignStore, TwoStoresNeverClaimTheSameJob) {
  if (!GetParam().persistent) GTEST_SKIP() << "an in-memory database has one store";
  AddFleet(0, 200);
  MustCreate(Spec("race", 200), ByBatch("b1"));
  auto second = GetParam().open(dir_, clock_);
  ASSERT_TRUE(second) << second.error().ToString();
  std::vector<Store*> stores = {store_.get(), second->get()};
  std::vector<std::vector<Job>> got(2);
  std::vector<std::thread> claimers;
  for (int t = 0; t < 2; ++t) {
    claimers.emplace_back([&, t] {
      for (;;) {
        auto r = stores[t]->ClaimJobs(t == 0 ? "a" : "b", kNow, std::chrono::seconds(600), 7);
        if (!r) {
          ADD_FAILURE() << r.error().ToString();
          return;
        }
        if (r->empty()) return;
        got[t].insert(got[t].end(), r->begin(), r->end());
      }
    });
  }
  for (auto& c : claimers) c.join();
  std::set<int64_t> seen;
  for (const auto& jobs : got) {
    for (const Job& j : jobs) EXPECT_TRUE(seen.insert(j.ordinal).second) << j.ordinal;
  }
  EXPECT_EQ(seen.size(), 200u);
}

// --- PostgreSQL: connections the server ends ---------------------------------------------------

// The server ends every connection of a node when it restarts or fails over (the node's idle
// pooled readers and its writer go stale without the node knowing). The next read and the next
// write must each be answered on a new connection, not fail once per stale connection: nothing
// was sent on them, so opening a new one and trying again is safe.
TEST(PostgresReconnect, ConnectionsEndedByTheServerAreReplacedOnTheirNextUse) {
  IOTPKI_PG_DATABASE(url);
  FakeClock clock{kNow};
  auto store = OpenPostgresStore(url, clock);
  ASSERT_TRUE(store) << store.error().ToString();
  const std::string id = HexDigest("reconnect");
  ASSERT_TRUE((*store)->Commit(WriteBatch().RecordToken(id, kNow)));
  // Two readers at once, so that the pool keeps two idle.
  std::thread other([&] { EXPECT_EQ((*store)->IsTokenRecorded(id, kNow), true); });
  EXPECT_EQ((*store)->IsTokenRecorded(id, kNow), true);
  other.join();

  auto admin = postgres::Connection::Open(url);
  ASSERT_TRUE(admin) << admin.error().ToString();
  const std::string others =
      " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
  ASSERT_TRUE((*admin)->Exec("SELECT pg_terminate_backend(pid)" + others));
  // pg_terminate_backend signals; wait until those backends have exited.
  for (int i = 0; i < 1000; ++i) {
    auto stmt = (*admin)->PrepareUncached("SELECT COUNT(*)" + others);
    ASSERT_TRUE(stmt) << stmt.error().ToString();
    auto row = (*stmt)->Step();
    ASSERT_TRUE(row && *row);
    if ((*stmt)->Int64(0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  for (int i = 0; i < 3; ++i) {
    auto read = (*store)->IsTokenRecorded(id, kNow);
    ASSERT_TRUE(read) << "read " << i << ": " << read.error().ToString();
    EXPECT_TRUE(*read);
  }
  auto write = (*store)->Commit(WriteBatch().RecordToken(id, kNow + 1));
  ASSERT_TRUE(write) << write.error().ToString();
  EXPECT_EQ((*store)->IsTokenRecorded(id, kNow + 1), true);
  // A write whose outcome is unknown is not retried: a second use of one token is still refused.
  auto again = (*store)->Commit(WriteBatch().RecordToken(id, kNow + 1));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);
  store->reset();
  admin->reset();
  testing::PgTestCluster::Get().DropDatabase(url);
}

// --- The operator's view (migration 7) --------------------------------------------------------

TEST_P(StoreConformance, IssuanceIsCountedPerDayProfileIssuerAndKeyOrigin) {
  // A factory group (PostgreSQL loads it with COPY) and single certificates (statement by
  // statement) on the first day; a renewal without a known origin and a CA certificate the next.
  CertificateRecord hw = MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1);
  hw.key_origin = KeyOrigin::kHardware;
  CertificateRecord gen = MakeCert(2, 2, CertProfile::kIDevId, kNoExpiryUnix, 2);
  gen.key_origin = KeyOrigin::kGenerated;
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(hw)
                 .InsertDevice(MakeDevice(2))
                 .InsertCertificate(gen)
                 .AppendAudit(Event("mfg.issue", "b1")));
  CertificateRecord own = MakeCert(3, 1, CertProfile::kLDevId, kNow + 90 * kDay, 3);
  own.key_origin = KeyOrigin::kDevice;
  MustCommit(WriteBatch()
                 .UpdateDeviceState(DeviceId(1), DeviceState::kManufactured, DeviceState::kActive)
                 .InsertCertificate(own));
  EXPECT_EQ(store_->GetCertificate(CertSerial(3))->key_origin, KeyOrigin::kDevice);
  EXPECT_EQ(store_->GetCertificate(CertSerial(1))->key_origin, KeyOrigin::kHardware);
  clock_.Advance(std::chrono::days(1));
  MustCommit(WriteBatch()
                 .InsertCertificate(MakeCert(4, 2, CertProfile::kLDevId, kNow + 91 * kDay, 4))
                 .InsertCertificate(MakeCert(5, std::nullopt, CertProfile::kServer, kNow, 5)));
  // A refused batch counts nothing.
  EXPECT_FALSE(store_->Commit(
      WriteBatch().InsertCertificate(MakeCert(6, 2, CertProfile::kLDevId, kNow + kDay, 3))));

  int64_t day = kNow / kDay;
  auto counts = store_->CountIssuance(day - 1, day + 1);
  ASSERT_TRUE(counts) << counts.error().ToString();
  using C = Store::IssuanceCount;
  EXPECT_EQ(*counts,
            (std::vector<C>{{day, CertProfile::kIDevId, "manufacturing", KeyOrigin::kGenerated, 1},
                            {day, CertProfile::kIDevId, "manufacturing", KeyOrigin::kHardware, 1},
                            {day, CertProfile::kLDevId, "operational", KeyOrigin::kDevice, 1},
                            {day + 1, CertProfile::kLDevId, "operational", std::nullopt, 1},
                            {day + 1, CertProfile::kServer, "operational", std::nullopt, 1}}));
  EXPECT_EQ(store_->CountIssuance(day + 1, day + 1)->size(), 2u);
  EXPECT_TRUE(store_->CountIssuance(day + 2, day + 9)->empty());
  EXPECT_EQ(store_->CountIssuance(day, day - 1).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->CountIssuance(day, day + 3661).error().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, AuditRowsOfOneSubjectPageNewestFirst) {
  for (int i = 0; i < 7; ++i) {
    MustCommit(WriteBatch().AppendAudit(Event("a" + std::to_string(i), i % 3 == 0 ? "x" : "y")));
  }
  // Subject x: seqs 1, 4, 7.
  std::vector<int64_t> seqs;
  int64_t before = INT64_MAX;
  for (int page = 0; page < 5; ++page) {
    auto rows = store_->ReadAuditForSubject("x", before, 2);
    ASSERT_TRUE(rows) << rows.error().ToString();
    for (const auto& r : *rows) {
      EXPECT_EQ(r.subject, "x");
      seqs.push_back(r.seq);
    }
    if (rows->size() < 2) break;
    before = rows->back().seq;
  }
  EXPECT_EQ(seqs, (std::vector<int64_t>{7, 4, 1}));
  auto rows = store_->ReadAuditForSubject("x", INT64_MAX, 1);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0], AllAudit()[6]);  // the whole row, hashes included
  EXPECT_TRUE(store_->ReadAuditForSubject("nobody", INT64_MAX, 10)->empty());
  EXPECT_EQ(store_->ReadAuditForSubject("x", INT64_MAX, 0).error().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, CredentialAuditCountsFromTheRows) {
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kLDevId, kNow + 40 * kDay, 1))
                 .InsertDevice(MakeDevice(2))
                 .InsertCertificate(MakeCert(2, 2, CertProfile::kLDevId, kNow + 40 * kDay, 2))
                 .InsertDevice(MakeDevice(3))
                 .InsertCertificate(MakeCert(3, 3, CertProfile::kIDevId, kNoExpiryUnix, 3)));
  auto clean = store_->AuditCredentials(kNow);
  ASSERT_TRUE(clean) << clean.error().ToString();
  EXPECT_EQ(clean->devices, 3);
  EXPECT_EQ(clean->device_certificates, 3);
  EXPECT_EQ(clean->shared_keys, 0);
  EXPECT_EQ(clean->shared_device_ids, 0);
  EXPECT_EQ(clean->shared_hardware_fingerprints, 0);
  EXPECT_EQ(clean->stranded, 0);

  // 30 days on, with 10 days left: device 1, last heard from when its certificate was issued, is
  // stranded; device 2 used its certificate today.
  clock_.Advance(std::chrono::days(30));
  MustCommit(WriteBatch().MarkCertificateUsed(CertSerial(2)));
  // What the store's constraints refuse, written past them: device 2 holding device 1's key, and
  // device 3 given device 1's hardware fingerprint.
  ASSERT_TRUE(GetParam().exec_sql(
      *store_,
      "INSERT INTO certificates (serial, device_seq, profile, issuer, subject, "
      "not_before, not_after, key_fingerprint, der, status, created_at) SELECT 'ff01', "
      "(SELECT seq FROM devices WHERE serial = 'SN-000002'), profile, issuer, subject, "
      "not_before, not_after, key_fingerprint, der, status, created_at FROM "
      "certificates WHERE serial = '" +
          CertSerial(1) + "'"));
  ASSERT_TRUE(GetParam().exec_sql(
      *store_,
      "UPDATE devices SET hardware_fingerprint = (SELECT hardware_fingerprint FROM "
      "devices WHERE serial = 'SN-000001') WHERE serial = 'SN-000003'"));
  auto broken = store_->AuditCredentials(clock_.NowUnix());
  ASSERT_TRUE(broken) << broken.error().ToString();
  EXPECT_EQ(broken->shared_keys, 1);
  EXPECT_EQ(broken->shared_hardware_fingerprints, 2);
  EXPECT_EQ(broken->shared_device_ids, 0);
  EXPECT_EQ(broken->stranded, 1);
}

// The compliance report's key-strength pass: every live device certificate (IDevID or LDevID,
// valid, not expired at `now`) exactly once, whatever the page size, and nothing else.
TEST_P(StoreConformance, VisitsEveryLiveDeviceCertificateOnceAndNothingElse) {
  WriteBatch batch;
  for (int d = 1; d <= 9; ++d) batch.InsertDevice(MakeDevice(d));
  batch.InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1))
      .InsertCertificate(MakeCert(2, 1, CertProfile::kLDevId, kNow + 40 * kDay, 2))
      .InsertCertificate(MakeCert(3, 2, CertProfile::kLDevId, kNow + 40 * kDay, 3))  // revoked
      .InsertCertificate(MakeCert(4, 2, CertProfile::kLDevId, kNow - 1, 4))          // expired
      .InsertCertificate(MakeCert(5, 3, CertProfile::kLDevId, kNow, 5))  // expires this second
      .InsertCertificate(MakeCert(6, std::nullopt, CertProfile::kServer, kNow + kDay, 6))
      .InsertCertificate(MakeCert(7, std::nullopt, CertProfile::kIssuingCa, kNow + kDay, 7))
      .InsertCertificate(MakeCert(8, 4, CertProfile::kIDevId, kNoExpiryUnix, 8));  // revoked
  for (int n = 9; n <= 13; ++n) {
    batch.InsertCertificate(MakeCert(n, n - 4, CertProfile::kLDevId, kNow + n * kDay, n));
  }
  MustCommit(batch);
  MustCommit(WriteBatch()
                 .RevokeCertificate(CertSerial(3), RevocationReason::kKeyCompromise)
                 .RevokeCertificate(CertSerial(8), RevocationReason::kSuperseded));
  const std::vector<int> live = {1, 2, 5, 9, 10, 11, 12, 13};
  // 3: pages of 3, 3 and 2; 4: two full pages and an empty one; the default: one page.
  for (size_t page : {3, 4, 10000}) {
    AsSql(*store_).SetVisitPageForTest(page);
    std::vector<int> visited;
    auto n = store_->VisitLiveDeviceCertificates(kNow, [&](ByteView der) {
      ASSERT_EQ(der.size(), 7u);
      visited.push_back(der[4]);  // MakeCert's n
    });
    ASSERT_TRUE(n) << n.error().ToString();
    EXPECT_EQ(*n, static_cast<int64_t>(live.size())) << "page " << page;
    std::sort(visited.begin(), visited.end());
    EXPECT_EQ(visited, live) << "page " << page;
  }
  // A second later certificate 5 has expired too.
  AsSql(*store_).SetVisitPageForTest(2);
  auto later = store_->VisitLiveDeviceCertificates(kNow + 1, [](ByteView) {});
  ASSERT_TRUE(later) << later.error().ToString();
  EXPECT_EQ(*later, 7);
}

// Each page seeks to the last serial visited and walks the primary key: the whole pass reads
// each certificate once. A plan through certificates_by_expiry reads every live certificate
// and sorts them for every page (quadratic: hours at a million devices). A page much smaller
// than the fleet, as at scale, so that a planner that costs plans sees the same trade.
TEST_P(StoreConformance, LiveCertificatePagesSeekBySerial) {
  WriteBatch batch;
  for (int d = 1; d <= 200; ++d) {
    batch.InsertDevice(MakeDevice(d))
        .InsertCertificate(MakeCert(d, d, CertProfile::kLDevId, kNow + (d % 90 + 1) * kDay, d));
  }
  MustCommit(batch);
  // PostgreSQL plans from the statistics autovacuum keeps; without them it guesses one row and
  // sorts it. The query names no column of any other index, so SQLite's plan cannot change.
  ASSERT_TRUE(GetParam().exec_sql(*store_, "ANALYZE certificates"));
  AsSql(*store_).SetVisitPageForTest(10);
  auto plan = AsSql(*store_).ExplainVisitLiveDeviceCertificatesForTest();
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_TRUE(GetParam().plan_seeks_by_serial(*plan)) << *plan;
}

// Undoes migration 8 (portable SQL): no stranding columns, no devices_stranding.
constexpr const char* kBackToVersion7 =
    "DROP INDEX devices_stranding; ALTER TABLE devices DROP COLUMN ldevid_not_after; "
    "ALTER TABLE devices DROP COLUMN heard_at; DELETE FROM schema_migrations WHERE version = 8";

// The stranded devices at `now` computed from the rows, as before migration 8 and as
// docs/compliance.md gives it to the auditor: each device joined to its certificates.
std::string StrandedFromRows(int64_t now) {
  std::string t = std::to_string(now);
  return "SELECT CAST(COUNT(*) AS TEXT) FROM (SELECT CASE WHEN issued > heard THEN issued ELSE "
         "heard END AS heard, expires FROM (SELECT CASE WHEN COALESCE(MAX(c.first_used_at), 0) > "
         "d.updated_at THEN MAX(c.first_used_at) ELSE d.updated_at END AS heard, "
         "MAX(c.created_at) AS issued, MAX(CASE WHEN c.profile = 'ldevid' AND c.status = "
         "'valid' THEN c.not_after END) AS expires FROM devices d JOIN certificates c ON "
         "c.device_seq = d.seq WHERE d.state <> 'decommissioned' GROUP BY d.seq, d.updated_at) "
         "x) y WHERE expires IS NOT NULL AND " +
         t + " - heard > expires - " + t;
}

// The stranded-devices count reads devices_stranding, whose columns each write keeps: after
// every kind of write that moves a device in or out (a working certificate recorded, a first
// use, a revocation of the newest one, a state change, a decommission) it equals the count
// from the rows.
TEST_P(StoreConformance, StrandedCountFollowsEveryWriteAsTheRowsDo) {
  auto stranded = [&] {
    auto a = store_->AuditCredentials(clock_.NowUnix());
    EXPECT_TRUE(a) << a.error().ToString();
    auto rows = AsSql(*store_).QueryForTest(StrandedFromRows(clock_.NowUnix()));
    EXPECT_TRUE(rows) << rows.error().ToString();
    EXPECT_EQ(std::to_string(a ? a->stranded : -1), rows ? *rows : "?") << "index and rows differ";
    return a ? a->stranded : -1;
  };
  WriteBatch batch;
  for (int d = 1; d <= 5; ++d) {
    batch.InsertDevice(MakeDevice(d))
        .InsertCertificate(MakeCert(d, d, CertProfile::kIDevId, kNoExpiryUnix, d))
        .UpdateDeviceState(DeviceId(d), DeviceState::kManufactured, DeviceState::kActive);
  }
  MustCommit(batch);
  EXPECT_EQ(stranded(), 0);
  // Working certificates: 40 days for devices 1, 2 and 4; device 3 has one of 100 days and then
  // one of 20 (its newest is the one that expires last); device 5 none.
  MustCommit(WriteBatch()
                 .InsertCertificate(MakeCert(11, 1, CertProfile::kLDevId, kNow + 40 * kDay, 11))
                 .InsertCertificate(MakeCert(12, 2, CertProfile::kLDevId, kNow + 40 * kDay, 12))
                 .InsertCertificate(MakeCert(13, 3, CertProfile::kLDevId, kNow + 100 * kDay, 13))
                 .InsertCertificate(MakeCert(14, 4, CertProfile::kLDevId, kNow + 40 * kDay, 14)));
  clock_.Advance(std::chrono::hours(1));
  MustCommit(
      WriteBatch().InsertCertificate(MakeCert(23, 3, CertProfile::kLDevId, kNow + 20 * kDay, 23)));
  EXPECT_EQ(stranded(), 0);

  // 25 days on: 25 days unheard with 15 left (devices 1, 2 and 4); device 2 uses its
  // certificate now.
  clock_.Advance(std::chrono::days(25));
  EXPECT_EQ(stranded(), 3);
  MustCommit(WriteBatch().MarkCertificateUsed(CertSerial(12)));
  EXPECT_EQ(stranded(), 2);
  // Device 3's newest working certificate revoked: the one left expired 5 days ago.
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(13), RevocationReason::kSuperseded));
  EXPECT_EQ(stranded(), 3);
  MustCommit(WriteBatch().UpdateDeviceState(DeviceId(4), DeviceState::kActive,
                                            DeviceState::kDecommissioned));
  EXPECT_EQ(stranded(), 2);
  // Device 1 suspended (a state change is contact), device 3 renewed.
  MustCommit(WriteBatch()
                 .UpdateDeviceState(DeviceId(1), DeviceState::kActive, DeviceState::kSuspended)
                 .InsertCertificate(MakeCert(33, 3, CertProfile::kLDevId, kNow + 120 * kDay, 33)));
  EXPECT_EQ(stranded(), 0);
  // Revoking the certificate a renewal superseded keeps the newest one's notAfter.
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(23), RevocationReason::kSuperseded));
  auto newest = AsSql(*store_).QueryForTest(
      "SELECT CAST(ldevid_not_after AS TEXT) FROM devices WHERE serial = '" + MakeDevice(3).serial +
      "'");
  ASSERT_TRUE(newest) << newest.error().ToString();
  EXPECT_EQ(*newest, std::to_string(kNow + 120 * kDay));
  EXPECT_EQ(stranded(), 0);
  // 10 days on, devices 1 and 2 have 5 days left. Revoking a birth certificate changes nothing;
  // recording one is contact.
  clock_.Advance(std::chrono::days(10));
  EXPECT_EQ(stranded(), 2);
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(5), RevocationReason::kSuperseded));
  EXPECT_EQ(stranded(), 2);
  MustCommit(
      WriteBatch().InsertCertificate(MakeCert(41, 1, CertProfile::kIDevId, kNoExpiryUnix, 41)));
  EXPECT_EQ(stranded(), 1);
}

TEST_P(StoreConformance, StrandedCountIsASeekOnItsIndex) {
  auto plan = AsSql(*store_).ExplainStrandedCountForTest();
  ASSERT_TRUE(plan) << plan.error().ToString();
  EXPECT_TRUE(GetParam().plan_seeks_index(*plan, "devices_stranding")) << *plan;
}

// A version-7 store: migration 8 fills each device's last contact and newest working
// certificate from its rows, and the count then equals the count from the rows.
TEST_P(StoreConformance, MigrationEightFillsTheStrandingColumnsFromTheRows) {
  if (!GetParam().persistent) GTEST_SKIP() << "nothing survives closing an in-memory store";
  WriteBatch batch;
  for (int d = 1; d <= 4; ++d) {
    batch.InsertDevice(MakeDevice(d))
        .InsertCertificate(MakeCert(d, d, CertProfile::kIDevId, kNoExpiryUnix, d));
  }
  batch.InsertDevice(MakeDevice(5));  // no certificate at all
  MustCommit(batch);
  MustCommit(WriteBatch()
                 .InsertCertificate(MakeCert(11, 1, CertProfile::kLDevId, kNow + 40 * kDay, 11))
                 .InsertCertificate(MakeCert(12, 2, CertProfile::kLDevId, kNow + 40 * kDay, 12))
                 .InsertCertificate(MakeCert(13, 3, CertProfile::kLDevId, kNow + 90 * kDay, 13))
                 .InsertCertificate(MakeCert(23, 3, CertProfile::kLDevId, kNow + 30 * kDay, 23)));
  clock_.Advance(std::chrono::days(20));
  MustCommit(WriteBatch().MarkCertificateUsed(CertSerial(12)));
  clock_.Advance(std::chrono::days(5));
  MustCommit(WriteBatch().RevokeCertificate(CertSerial(13), RevocationReason::kSuperseded));
  const std::string columns =
      "SELECT CAST(SUM(heard_at) AS BIGINT) || ' ' || CAST(COUNT(ldevid_not_after) AS BIGINT) || "
      "' ' || CAST(SUM(ldevid_not_after) AS BIGINT) FROM devices";
  auto kept = AsSql(*store_).QueryForTest(columns);
  ASSERT_TRUE(kept) << kept.error().ToString();
  auto before = store_->AuditCredentials(clock_.NowUnix());
  ASSERT_TRUE(before) << before.error().ToString();
  EXPECT_EQ(before->stranded, 2);  // device 1 (25 days unheard, 15 left) and 3 (expires in 5)

  ASSERT_TRUE(GetParam().exec_sql(*store_, kBackToVersion7));
  Reopen();
  EXPECT_EQ(*store_->SchemaVersion(), kLatestSchemaVersion);
  auto filled = AsSql(*store_).QueryForTest(columns);
  ASSERT_TRUE(filled) << filled.error().ToString();
  EXPECT_EQ(*filled, *kept);
  auto after = store_->AuditCredentials(clock_.NowUnix());
  ASSERT_TRUE(after) << after.error().ToString();
  EXPECT_EQ(after->stranded, 2);
  EXPECT_EQ(*AsSql(*store_).QueryForTest(StrandedFromRows(clock_.NowUnix())), "2");
  // And the columns are kept from here on.
  MustCommit(WriteBatch().MarkCertificateUsed(CertSerial(11)));
  EXPECT_EQ(store_->AuditCredentials(clock_.NowUnix())->stranded, 1);
}

TEST_P(StoreConformance, OperatorCertificatesAreRecordedAndRevokedOnce) {
  OperatorCertificate alice{
      .serial = "0a11ce", .name = "alice", .role = "operator", .not_after = kNow + 365 * kDay};
  OperatorCertificate bob{
      .serial = "0b0b", .name = "bob", .role = "read-only", .not_after = kNow + kDay};
  MustCommit(
      WriteBatch().InsertOperatorCertificate(bob).InsertOperatorCertificate(alice).AppendAudit(
          Event("admin.issue", "0a11ce")));
  auto got = store_->GetOperatorCertificate("0A11CE");
  ASSERT_TRUE(got) << got.error().ToString();
  alice.created_at = kNow;
  EXPECT_EQ(*got, alice);
  auto all = store_->ListOperatorCertificates();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "alice");

  EXPECT_EQ(store_->Commit(WriteBatch().InsertOperatorCertificate(bob)).error().code(),
            Code::kAlreadyExists);
  OperatorCertificate bad = bob;
  bad.serial = "0c";
  bad.role = "root";
  EXPECT_EQ(store_->Commit(WriteBatch().InsertOperatorCertificate(bad)).error().code(),
            Code::kInvalidArgument);

  clock_.Advance(std::chrono::seconds(5));
  MustCommit(WriteBatch().RevokeOperatorCertificate("0a11ce").AppendAudit(
      Event("admin.revoke", "0a11ce")));
  got = store_->GetOperatorCertificate("0a11ce");
  EXPECT_EQ(got->status, CertStatus::kRevoked);
  EXPECT_EQ(got->revoked_at, kNow + 5);
  EXPECT_EQ(store_->Commit(WriteBatch().RevokeOperatorCertificate("0a11ce")).error().code(),
            Code::kAborted);
  EXPECT_EQ(store_->Commit(WriteBatch().RevokeOperatorCertificate("0d")).error().code(),
            Code::kNotFound);
  EXPECT_EQ(store_->GetOperatorCertificate("0d").error().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetOperatorCertificate("0b0b")->status, CertStatus::kValid);
  EXPECT_EQ(AllAudit().size(), 2u);  // the failed batches wrote nothing
}

// A version-6 store: migration 7 counts its certificates and records the operator certificates
// its admin.issue audit rows name; a row of another shape is skipped rather than fatal.
TEST_P(StoreConformance, MigrationSevenFillsItsTablesFromTheRows) {
  if (!GetParam().persistent) GTEST_SKIP() << "nothing survives closing an in-memory store";
  MustCommit(WriteBatch()
                 .InsertDevice(MakeDevice(1))
                 .InsertCertificate(MakeCert(1, 1, CertProfile::kIDevId, kNoExpiryUnix, 1))
                 .AppendAudit(Event("admin.issue", "0a11ce",
                                    R"({"name":"alice","role":"operator","not_after":)" +
                                        std::to_string(kNow + kDay) + "}"))
                 .AppendAudit(Event("admin.issue", "0b", "not json"))
                 .AppendAudit(Event("admin.issue", "0c", R"({"name":"x","role":"root"})")));
  ASSERT_TRUE(GetParam().exec_sql(*store_, kBackToVersion7));
  ASSERT_TRUE(GetParam().exec_sql(*store_,
                                  "DROP TABLE operator_certificates; DROP INDEX audit_by_subject; "
                                  "DROP TABLE issuance_counts; ALTER TABLE certificates DROP "
                                  "COLUMN key_origin; DELETE FROM schema_migrations WHERE "
                                  "version = 7"));
  Reopen();
  EXPECT_EQ(*store_->SchemaVersion(), kLatestSchemaVersion);
  auto ops = store_->ListOperatorCertificates();
  ASSERT_TRUE(ops) << ops.error().ToString();
  ASSERT_EQ(ops->size(), 1u);
  EXPECT_EQ((*ops)[0], (OperatorCertificate{.serial = "0a11ce",
                                            .name = "alice",
                                            .role = "operator",
                                            .not_after = kNow + kDay,
                                            .created_at = kNow}));
  auto counts = store_->CountIssuance(kNow / kDay, kNow / kDay);
  ASSERT_TRUE(counts) << counts.error().ToString();
  EXPECT_EQ(*counts, (std::vector<Store::IssuanceCount>{
                         {kNow / kDay, CertProfile::kIDevId, "manufacturing", std::nullopt, 1}}));
  EXPECT_TRUE(VerifyAuditChain(*store_)->intact);
}

}  // namespace
}  // namespace iotpki::store
