#include "iotpki/mfg/provision.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/mfg/manifest.h"
#include "iotpki/mfg/output_dir.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/open.h"
#include "iotpki/store/postgres/pg_test_cluster.h"
#include "iotpki/x509/csr.h"
#include "iotpki/x509/verify.h"

namespace iotpki::mfg {
namespace {

namespace fs = std::filesystem;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPass[] = "unit-test-passphrase";
constexpr char kTransport[] = "station transport passphrase";

int Mode(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

// Every factory test runs against each store backend: the CA directory's store is SQLite's file
// or a fresh PostgreSQL database (skipped without PostgreSQL, failed so under CI=true).
enum class Backend { kSqlite, kPostgres };

std::string BackendName(Backend b) { return b == Backend::kSqlite ? "Sqlite" : "Postgres"; }

class ProvisionFixture : public ::testing::Test {
 protected:
  virtual Backend backend() const = 0;

  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("iotpki-mfg-test-" + std::to_string(::getpid()) + "-" + ToHex(crypto::RandomBytes(4)));
    ca_dir_ = base_ / "ca";
    out_ = base_ / "out";
    csr_dir_ = base_ / "csrs";
    if (backend() == Backend::kPostgres) {
      IOTPKI_PG_DATABASE(url);
      store_url_ = url;
    }
    ASSERT_TRUE(
        ca::InitCa(ca_dir_, {.organization = "Acme", .store_url = store_url_}, kPass, clock_));
  }
  void TearDown() override {
    fs::remove_all(base_);
    if (!store_url_.empty()) store::testing::PgTestCluster::Get().DropDatabase(store_url_);
  }

  std::unique_ptr<ca::Authority> OpenCa() {
    auto a = ca::Authority::Open(ca_dir_, clock_);
    EXPECT_TRUE(a) << a.error().ToString();
    EXPECT_TRUE((*a)->Unlock(ca::CaName::kManufacturing, kPass));
    EXPECT_TRUE((*a)->Unlock(ca::CaName::kOperational, kPass));
    EXPECT_TRUE((*a)->UnlockBootstrap(kPass));
    return std::move(*a);
  }

  ProvisionOptions Options(KeyMode keys) {
    return ProvisionOptions{.batch = "b1",
                            .keys = keys,
                            .csr_dir = keys == KeyMode::kCsr ? csr_dir_ : fs::path(),
                            .out = out_,
                            .transport_passphrase = kTransport,
                            .workers = 2,
                            .group_size = 8};
  }

  // Devices as a CSV would give them, with stable fingerprints.
  static std::vector<DeviceInput> Devices(int n, const std::string& prefix = "SN-") {
    std::vector<DeviceInput> out;
    for (int i = 1; i <= n; ++i) {
      DeviceInput d{.origin = "line " + std::to_string(i),
                    .serial = prefix + std::to_string(1000 + i),
                    .model = "TH-100"};
      Bytes fp = crypto::Sha256(AsBytes(d.serial));
      d.hardware_fingerprint.assign(fp.begin(), fp.begin() + 8);
      d.device_id = x509::ComputeDeviceId(d.serial, d.hardware_fingerprint);
      out.push_back(std::move(d));
    }
    return out;
  }

  // One CSR per device, alternately PEM (.csr) and DER (.der).
  void WriteCsrs(const std::vector<DeviceInput>& devices) {
    fs::create_directories(csr_dir_);
    for (size_t i = 0; i < devices.size(); ++i) WriteCsr(devices[i].serial, i % 2 == 0);
  }
  x509::Csr WriteCsr(const std::string& serial, bool pem) {
    auto key = crypto::PrivateKey::Generate();
    auto csr = x509::MakeCsr(*key, {.common_name = serial});
    fs::remove(csr_dir_ / (serial + ".csr"));
    fs::remove(csr_dir_ / (serial + ".der"));
    if (pem) {
      EXPECT_TRUE(WriteFileAtomic(csr_dir_ / (serial + ".csr"), csr->ToPem()));
    } else {
      EXPECT_TRUE(WriteFileAtomic(csr_dir_ / (serial + ".der"), csr->ToDer()));
    }
    return *csr;
  }

  int64_t Count(ca::Authority& ca, const std::string& batch = "b1") {
    auto n = ca.store().CountDevices({.batch = batch});
    EXPECT_TRUE(n);
    return n ? *n : -1;
  }

  // The invariant after a finished batch: every device in the store, in the manifest once, with
  // a complete folder whose files match the store; nothing left in .partial/; the audit chain
  // intact.
  void ExpectConsistent(ca::Authority& ca, const std::vector<DeviceInput>& devices, KeyMode keys) {
    EXPECT_EQ(Count(ca), static_cast<int64_t>(devices.size()));
    std::unordered_set<std::string> listed;
    auto manifest = Manifest::Open(out_ / kManifest, &listed);
    ASSERT_TRUE(manifest) << manifest.error().ToString();
    EXPECT_EQ(listed.size(), devices.size());
    auto text = ReadTextFile(out_ / kManifest);
    ASSERT_TRUE(text);
    std::istringstream lines(*text);
    std::unordered_map<std::string, ManifestEntry> entries;
    std::vector<std::string> line_list;  // with their newlines
    std::vector<std::string> serial_list;
    std::unordered_map<std::string, size_t> line_of;
    for (std::string line; std::getline(lines, line);) {
      auto e = ParseJsonLine(line);
      ASSERT_TRUE(e) << line;
      entries[e->serial] = *e;
      line_of[e->serial] = line_list.size();
      line_list.push_back(line + "\n");
      serial_list.push_back(e->serial);
    }
    // One mfg.issue audit row per committed group, whose manifest_sha256 is the hash of the
    // group's lines, which the manifest holds together, in order; every device in one group.
    auto audit_rows = ca.store().ReadAudit(1, 1000);
    ASSERT_TRUE(audit_rows);
    size_t audited = 0;
    for (const auto& row : *audit_rows) {
      EXPECT_NE(row.action, "cert.issue") << "an IDevID of the batch audited by itself";
      if (row.action != "mfg.issue") continue;
      EXPECT_EQ(row.subject, "b1");
      auto details = nlohmann::json::parse(row.details);
      size_t n = details.at("devices").get<size_t>();
      std::string first = details.at("first_serial").get<std::string>();
      ASSERT_TRUE(line_of.contains(first)) << first;
      size_t at = line_of[first];
      ASSERT_LE(at + n, line_list.size());
      std::string group;
      for (size_t i = at; i < at + n; ++i) group += line_list[i];
      EXPECT_EQ(details.at("manifest_sha256").get<std::string>(),
                ToHex(crypto::Sha256(AsBytes(group))));
      EXPECT_EQ(serial_list[at + n - 1], details.at("last_serial").get<std::string>());
      audited += n;
    }
    EXPECT_EQ(audited, devices.size());
    const auto& root = ca.certificate(ca::CaName::kRoot);
    const auto& mfg = ca.certificate(ca::CaName::kManufacturing);
    for (const auto& d : devices) {
      SCOPED_TRACE(d.serial);
      auto device = ca.store().GetDeviceBySerial(d.serial);
      ASSERT_TRUE(device);
      EXPECT_EQ(device->batch, "b1");
      EXPECT_EQ(device->model, d.model);
      EXPECT_EQ(device->state, store::DeviceState::kManufactured);
      ASSERT_TRUE(entries.contains(d.serial));
      const ManifestEntry& e = entries[d.serial];
      EXPECT_EQ(e.device_id, device->device_id);
      auto record = ca.store().GetCertificate(e.cert_serial);
      ASSERT_TRUE(record);
      EXPECT_EQ(e.sha256, ToHex(crypto::Sha256(record->der)));
      fs::path dir = out_ / d.serial;
      EXPECT_EQ(Mode(dir), 0700);
      auto der = ReadFile(dir / kCertDer);
      ASSERT_TRUE(der);
      EXPECT_EQ(*der, record->der);
      auto cert = x509::Certificate::FromPem(*ReadTextFile(dir / kCertPem));
      ASSERT_TRUE(cert);
      EXPECT_EQ(cert->ToDer(), record->der);
      EXPECT_EQ(cert->common_name(), device->device_id);
      EXPECT_EQ(*ReadTextFile(dir / kChainPem), mfg.ToPem() + root.ToPem());
      EXPECT_EQ(x509::VerifyChain(*cert, std::span(&mfg, 1), std::span(&root, 1), clock_.NowUnix()),
                x509::Verdict::kValid);
      EXPECT_EQ(*ReadTextFile(dir / kBootstrapHex),
                ToHex(ca.BootstrapSecret(device->device_id)->bytes()) + "\n");
      EXPECT_EQ(Mode(dir / kBootstrapHex), 0600);
      if (keys == KeyMode::kCa) {
        EXPECT_EQ(Mode(dir / kKeyPem), 0600);
        auto key = crypto::PrivateKey::FromPem(*ReadTextFile(dir / kKeyPem), kTransport);
        ASSERT_TRUE(key) << key.error().ToString();
        EXPECT_EQ(key->public_key(), cert->public_key());
      } else {
        EXPECT_FALSE(fs::exists(dir / kKeyPem));
      }
    }
    EXPECT_TRUE(fs::is_empty(out_ / ".partial"));
    auto audit = store::VerifyAuditChain(ca.store());
    ASSERT_TRUE(audit);
    EXPECT_TRUE(audit->intact) << audit->explanation;
  }

  FakeClock clock_{1790000000};
  fs::path base_, ca_dir_, out_, csr_dir_;
  std::string store_url_;  // empty: the CA directory's SQLite file
};

class ProvisionTest : public ProvisionFixture, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Backends, ProvisionTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const auto& info) { return BackendName(info.param); });

TEST_P(ProvisionTest, KeysByTheCa) {
  auto ca = OpenCa();
  auto devices = Devices(21);
  std::vector<ProgressInfo> progress;
  auto opts = Options(KeyMode::kCa);
  opts.progress = [&](const ProgressInfo& p) { progress.push_back(p); };
  auto report = Provision(*ca, devices, opts);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_EQ(report->issued, 21u);
  EXPECT_EQ(report->total, 21u);
  ExpectConsistent(*ca, devices, KeyMode::kCa);
  ASSERT_EQ(progress.size(), 4u);  // start, then after each group of 8, 8, 5
  EXPECT_EQ(progress.back().done, 21u);
  auto batch = ReadTextFile(out_ / kBatchJson);
  ASSERT_TRUE(batch);
  EXPECT_THAT(*batch, HasSubstr("\"keys\": \"ca\""));
  EXPECT_THAT(*batch, HasSubstr("\"iterations\": 100000"));
  // Resuming a finished batch finds nothing to do.
  opts.resume = true;
  auto again = Provision(*ca, devices, opts);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->already_done, 21u);
  EXPECT_EQ(again->issued, 0u);
}

TEST_P(ProvisionTest, KeysFromCsrs) {
  auto devices = Devices(12);
  WriteCsrs(devices);
  auto ca = OpenCa();
  auto report = Provision(*ca, devices, Options(KeyMode::kCsr));
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_EQ(report->issued, 12u);
  ExpectConsistent(*ca, devices, KeyMode::kCsr);
  // The certificate carries the CSR's key.
  auto csr = x509::Csr::FromDer(*ReadFile(csr_dir_ / (devices[1].serial + ".der")));
  auto cert = x509::Certificate::FromDer(*ReadFile(out_ / devices[1].serial / kCertDer));
  ASSERT_TRUE(csr && cert);
  EXPECT_EQ(cert->public_key(), csr->public_key());
}

// A batch with more pending CSRs than max_parsed_csrs holds their bytes and parses each again
// when signing: the same certificates.
TEST_P(ProvisionTest, KeysFromCsrsBeyondTheParsedLimit) {
  auto devices = Devices(12);
  WriteCsrs(devices);
  auto ca = OpenCa();
  auto opts = Options(KeyMode::kCsr);
  opts.max_parsed_csrs = 5;
  auto report = Provision(*ca, devices, opts);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_EQ(report->issued, 12u);
  ExpectConsistent(*ca, devices, KeyMode::kCsr);
  for (size_t i = 0; i < devices.size(); ++i) {
    const auto& d = devices[i];
    auto file = ReadFile(csr_dir_ / (d.serial + (i % 2 == 0 ? ".csr" : ".der")));
    ASSERT_TRUE(file) << d.serial;
    auto csr = i % 2 == 0 ? x509::Csr::FromPem(AsString(*file)) : x509::Csr::FromDer(*file);
    auto cert = x509::Certificate::FromDer(*ReadFile(out_ / d.serial / kCertDer));
    ASSERT_TRUE(csr && cert) << d.serial;
    EXPECT_EQ(cert->public_key(), csr->public_key()) << d.serial;
  }
}

TEST_P(ProvisionTest, NoBundlesWritesTheManifestOnly) {
  auto ca = OpenCa();
  auto devices = Devices(10);
  auto opts = Options(KeyMode::kCa);
  opts.bundles = false;
  auto refused = Provision(*ca, devices, opts);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("--discard-keys"));
  opts.discard_keys = true;
  auto report = Provision(*ca, devices, opts);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_EQ(Count(*ca), 10);
  EXPECT_FALSE(fs::exists(out_ / devices[0].serial));
  EXPECT_TRUE(fs::exists(out_ / kManifest));
}

// The niceness of each thread of this process but the calling one (Linux: /proc/self/task).
std::vector<int> OtherThreadsNiceness() {
  std::vector<int> out;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    if (task.path().filename() == std::to_string(gettid())) continue;
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // pid (comm) state ppid ...: niceness is the 19th field, the 17th after the comm.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 0; i < 17 && fields >> field; ++i) {
    }
    if (fields) out.push_back(std::stoi(field));
  }
  return out;
}

TEST_P(ProvisionTest, WorkersYieldTheCpuToTheCommittingThread) {
  errno = 0;
  int own = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  ASSERT_EQ(errno, 0);
  if (own >= 19) GTEST_SKIP() << "this test already runs at the lowest priority";
  int lowered = std::min(own + 10, 19);
  auto ca = OpenCa();
  for (int niceness : {10, 0}) {
    SCOPED_TRACE("worker_niceness " + std::to_string(niceness));
    std::string tag = "n" + std::to_string(niceness);
    auto opts = Options(KeyMode::kCa);
    opts.batch = tag;
    opts.out = base_ / tag;
    opts.bundles = false;
    opts.discard_keys = true;
    opts.worker_niceness = niceness;
    std::vector<int> seen;  // while the workers prepare the groups after the first
    opts.step_hook = [&](Step step, size_t group) {
      if (step == Step::kCommitted && group == 0) seen = OtherThreadsNiceness();
    };
    // Five groups of 8: the workers wait for the first to commit before they take the fourth.
    auto report = Provision(*ca, Devices(40, tag + "-"), opts);
    ASSERT_TRUE(report) << report.error().ToString();
    EXPECT_EQ(std::count(seen.begin(), seen.end(), lowered), niceness == 0 ? 0 : 2)
        << ::testing::PrintToString(seen);
    // The committing thread keeps its own.
    EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())), own);
  }
}

// Bad input is refused before anything is written: no output directory, no row.
TEST_P(ProvisionTest, PreflightRefusalsWriteNothing) {
  auto devices = Devices(10);
  WriteCsrs(devices);
  auto ca = OpenCa();
  auto refused = [&](ProvisionOptions opts, const std::string& expected,
                     std::vector<DeviceInput> input) {
    auto r = Provision(*ca, input, opts);
    ASSERT_FALSE(r) << expected;
    EXPECT_THAT(r.error().message(), HasSubstr(expected));
    EXPECT_FALSE(fs::exists(out_)) << expected;
    EXPECT_EQ(Count(*ca), 0) << expected;
  };
  auto csr = Options(KeyMode::kCsr);

  fs::rename(csr_dir_ / (devices[3].serial + ".der"), base_ / "moved.der");
  refused(csr, "line 4: no CSR for serial " + devices[3].serial, devices);
  fs::copy_file(csr_dir_ / (devices[0].serial + ".csr"), csr_dir_ / (devices[3].serial + ".csr"));
  refused(csr,
          "line 4: the CSR of " + devices[3].serial + " carries the same public key as the " +
              "CSR of " + devices[0].serial,
          devices);
  fs::remove(csr_dir_ / (devices[3].serial + ".csr"));
  std::ofstream(csr_dir_ / (devices[3].serial + ".csr")) << "garbage";
  refused(csr, "line 4: CSR of " + devices[3].serial, devices);
  fs::remove(csr_dir_ / (devices[3].serial + ".csr"));
  fs::rename(base_ / "moved.der", csr_dir_ / (devices[3].serial + ".der"));

  // A key and a serial already in the fleet (another batch).
  auto other = Devices(1, "OTHER-");
  fs::copy_file(csr_dir_ / (devices[4].serial + ".csr"), csr_dir_ / (other[0].serial + ".csr"));
  auto other_opts = csr;
  other_opts.batch = "b0";
  other_opts.out = base_ / "out0";
  ASSERT_TRUE(Provision(*ca, other, other_opts));
  refused(csr, "line 5: the CSR of " + devices[4].serial + " carries a public key already used",
          devices);
  WriteCsr(devices[4].serial, false);
  auto with_other = devices;
  with_other.push_back(other[0]);
  with_other.back().origin = "line 11";
  refused(csr, "line 11: serial OTHER-1001 is already provisioned (batch b0", with_other);

  auto ca_opts = Options(KeyMode::kCa);
  ca_opts.transport_passphrase = "";
  refused(ca_opts, "key transport passphrase", devices);
  ca_opts.transport_passphrase = "too short";
  refused(ca_opts, "at least 12 characters", devices);
  ca_opts = Options(KeyMode::kCa);
  ca_opts.batch = "bad batch";
  refused(ca_opts, "batch 'bad batch'", devices);

  fs::create_directories(out_);
  std::ofstream(out_ / "stray") << "x";
  auto r = Provision(*ca, devices, Options(KeyMode::kCa));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("is not empty"));
  EXPECT_EQ(Count(*ca), 0);
  fs::remove_all(out_);

  // Not writable: the output path runs through a regular file.
  auto blocked = Options(KeyMode::kCa);
  blocked.out = base_ / "moved-file" / "out";
  std::ofstream(base_ / "moved-file") << "x";
  auto nw = Provision(*ca, devices, blocked);
  ASSERT_FALSE(nw);
  EXPECT_THAT(nw.error().message(), HasSubstr("cannot create the output directory"));
  EXPECT_EQ(Count(*ca), 0);
}

// The preflight reads the store for thousands of devices at a time; the refusal reported is
// still the first one in input order, whichever chunk or check finds it.
TEST_P(ProvisionTest, PreflightReportsTheFirstRefusalAcrossChunks) {
  auto devices = Devices(2200);
  WriteCsrs(devices);
  auto other = Devices(2, "OTHER-");
  WriteCsrs(other);
  auto ca = OpenCa();
  auto other_opts = Options(KeyMode::kCsr);
  other_opts.batch = "b0";
  other_opts.out = base_ / "out0";
  ASSERT_TRUE(Provision(*ca, other, other_opts));
  auto refused = [&](const std::string& expected) {
    auto r = Provision(*ca, devices, Options(KeyMode::kCsr));
    ASSERT_FALSE(r) << expected;
    EXPECT_THAT(r.error().message(), HasSubstr(expected));
    EXPECT_FALSE(fs::exists(out_)) << expected;
    EXPECT_EQ(Count(*ca), 0) << expected;
  };

  // Second chunk: a serial of the fleet, and before it a missing CSR.
  devices[2149] = other[0];
  devices[2149].origin = "line 2150";
  fs::remove(csr_dir_ / (devices[2099].serial + ".der"));
  refused("line 2100: no CSR for serial " + devices[2099].serial);
  WriteCsr(devices[2099].serial, true);
  refused("line 2150: serial OTHER-1001 is already provisioned (batch b0");
  // First chunk: a key of the fleet wins over the later serial.
  fs::copy_file(csr_dir_ / (other[1].serial + ".der"), csr_dir_ / (devices[6].serial + ".csr"),
                fs::copy_options::overwrite_existing);
  refused("line 7: the CSR of " + devices[6].serial + " carries a public key already used");
  // Across chunks: two CSRs with one key.
  WriteCsr(devices[6].serial, false);
  devices[2149] = Devices(2150)[2149];
  fs::copy_file(csr_dir_ / (devices[10].serial + ".csr"),
                csr_dir_ / (devices[2199].serial + ".csr"), fs::copy_options::overwrite_existing);
  refused("line 2200: the CSR of " + devices[2199].serial +
          " carries the same public key as the CSR of " + devices[10].serial);
}

TEST_P(ProvisionTest, ExistingBatchNeedsResumeAndTheSameParameters) {
  auto ca = OpenCa();
  auto devices = Devices(5);
  ASSERT_TRUE(Provision(*ca, devices, Options(KeyMode::kCa)));
  auto fresh = Options(KeyMode::kCa);
  fresh.out = base_ / "elsewhere";
  auto r = Provision(*ca, devices, fresh);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("batch b1 already has 5 devices"));

  auto resume = Options(KeyMode::kCa);
  resume.resume = true;
  resume.transport_passphrase = "another transport passphrase";
  auto wrong = Provision(*ca, devices, resume);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), Code::kUnauthenticated);
  auto csr = Options(KeyMode::kCsr);
  csr.resume = true;
  auto other_mode = Provision(*ca, devices, csr);
  ASSERT_FALSE(other_mode);
  EXPECT_THAT(other_mode.error().message(), HasSubstr("--keys"));
  auto renamed = Options(KeyMode::kCa);
  renamed.resume = true;
  renamed.batch = "b2";
  auto other_batch = Provision(*ca, devices, renamed);
  ASSERT_FALSE(other_batch);
  EXPECT_THAT(other_batch.error().message(), HasSubstr("already provisioned (batch b1"));
  // The same serial with another fingerprint, in the same batch.
  auto changed = devices;
  changed[2].hardware_fingerprint = {0x42};
  changed[2].device_id = x509::ComputeDeviceId(changed[2].serial, changed[2].hardware_fingerprint);
  resume.transport_passphrase = kTransport;
  auto fp = Provision(*ca, changed, resume);
  ASSERT_FALSE(fp);
  EXPECT_THAT(fp.error().message(), HasSubstr("line 3: serial SN-1003 was provisioned in batch b1 "
                                              "with another hardware fingerprint"));
  // More devices in the same batch: the new ones are issued.
  auto more = Devices(9);
  auto grown = Provision(*ca, more, resume);
  ASSERT_TRUE(grown) << grown.error().ToString();
  EXPECT_EQ(grown->already_done, 5u);
  EXPECT_EQ(grown->issued, 4u);
  ExpectConsistent(*ca, more, KeyMode::kCa);
}

// A CSR that fails the CA's proof-of-possession check stops the batch after the last whole
// group; fixing it and resuming completes the batch.
TEST_P(ProvisionTest, RefusalMidBatchStopsCleanlyAndResumes) {
  auto devices = Devices(30);
  WriteCsrs(devices);
  // Device 20 (group 2): flip a bit of its CSR signature.
  fs::path bad = csr_dir_ / (devices[19].serial + ".der");
  Bytes der = *ReadFile(bad);
  der[der.size() - 3] ^= 0x01;
  ASSERT_TRUE(WriteFileAtomic(bad, der));
  auto ca = OpenCa();
  auto opts = Options(KeyMode::kCsr);
  auto r = Provision(*ca, devices, opts);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message(), HasSubstr("line 20"));
  EXPECT_THAT(r.error().message(), HasSubstr("signature"));
  EXPECT_THAT(r.error().message(), HasSubstr("16 of 30 devices finished"));
  EXPECT_THAT(r.error().message(), HasSubstr("--resume"));
  EXPECT_EQ(Count(*ca), 16);
  WriteCsr(devices[19].serial, false);
  opts.resume = true;
  auto resumed = Provision(*ca, devices, opts);
  ASSERT_TRUE(resumed) << resumed.error().ToString();
  EXPECT_EQ(resumed->already_done, 16u);
  EXPECT_EQ(resumed->issued, 14u);
  ExpectConsistent(*ca, devices, KeyMode::kCsr);
}

// Preflight checks serials and CSR keys for the whole batch; the workers do not read the store
// again per device. A serial or key that reaches the store after the preflight (another run on
// the same database) is refused by the store's unique constraints when its group commits: the
// batch stops before that group, and --resume refuses the taken serial as the preflight does.
TEST_P(ProvisionTest, SerialOrKeyTakenAfterThePreflightIsRefusedAtCommit) {
  for (bool key_taken : {false, true}) {
    SCOPED_TRACE(key_taken ? "key" : "serial");
    fs::remove_all(out_);
    auto devices = Devices(24, key_taken ? "K-" : "S-");
    WriteCsrs(devices);
    auto ca = OpenCa();
    auto other = OpenCa();
    auto opts = Options(KeyMode::kCsr);
    opts.batch = key_taken ? "bk" : "bs";
    // Device 12 (group 1, groups of 8) is taken by another writer once group 0 has committed.
    const DeviceInput& victim = devices[11];
    opts.step_hook = [&](Step step, size_t group) {
      if (step != Step::kCommitted || group != 0) return;
      // WriteCsrs writes odd-numbered devices' CSRs as DER.
      x509::Csr csr = key_taken
                          ? *x509::Csr::FromDer(*ReadFile(csr_dir_ / (victim.serial + ".der")))
                          : *x509::MakeCsr(*crypto::PrivateKey::Generate(), {.common_name = "x"});
      auto issued = other->Issue({.profile = x509::ProfileKind::kIDevID,
                                  .csr = csr,
                                  .serial = key_taken ? "OTHER-1" : victim.serial,
                                  .hardware_fingerprint = {0x01, 0x02},
                                  .model = "TH-100",
                                  .batch = "other"});
      ASSERT_TRUE(issued) << issued.error().ToString();
    };
    auto r = Provision(*ca, devices, opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
    EXPECT_THAT(r.error().message(), HasSubstr(key_taken ? "public key" : victim.serial));
    EXPECT_THAT(r.error().message(), HasSubstr("8 of 24 devices finished"));
    EXPECT_EQ(Count(*ca, opts.batch), 8);
    opts.step_hook = nullptr;
    opts.resume = true;
    auto resumed = Provision(*ca, devices, opts);
    ASSERT_FALSE(resumed);
    EXPECT_THAT(resumed.error().message(),
                HasSubstr(key_taken ? "carries a public key already used by certificate"
                                    : "serial " + victim.serial + " is already provisioned"));
  }
}

TEST_P(ProvisionTest, ExpiringQueriesUseTheExpiryIndex) {
  auto ca = OpenCa();
  auto devices = Devices(40);
  ASSERT_TRUE(Provision(*ca, devices, Options(KeyMode::kCa)));
  for (int i = 0; i < 10; ++i) {
    auto key = crypto::PrivateKey::Generate();
    auto csr = x509::MakeCsr(*key, {.common_name = "x"});
    ASSERT_TRUE(ca->Issue({.profile = x509::ProfileKind::kLDevID,
                           .csr = *csr,
                           .serial = devices[i].serial,
                           .hardware_fingerprint = devices[i].hardware_fingerprint}));
  }
  ca.reset();
  auto opened = store::Open(store_url_.empty() ? "sqlite:iotpki.db" : store_url_, clock_,
                            {.base_dir = ca_dir_});
  ASSERT_TRUE(opened) << opened.error().ToString();
  auto* store = &dynamic_cast<store::sql::SqlStore&>(**opened);
  bool sqlite = backend() == Backend::kSqlite;
  std::vector<store::DeviceFilter> filters = {
      {.expiring_within = std::chrono::days(30)},
      {.batch = "b1", .expiring_within = std::chrono::days(30)},
      {.model = "TH-100", .expiring_within = std::chrono::days(30)},
      {.state = store::DeviceState::kActive, .expiring_within = std::chrono::days(30)},
  };
  for (const auto& f : filters) {
    // A page walks the expiry index; a count reads only the maintained count tables.
    auto page = store->ExplainListDevicesForTest(f, 100, "");
    ASSERT_TRUE(page) << page.error().ToString();
    EXPECT_THAT(*page, HasSubstr("certificates_by_expiry"));
    if (sqlite) {
      std::istringstream lines(*page);
      for (std::string line; std::getline(lines, line);) {
        EXPECT_NE(line.rfind("SCAN", 0), 0u) << *page;
      }
    } else {
      EXPECT_THAT(*page, Not(HasSubstr("Seq Scan")));
    }
    auto count = store->ExplainCountDevicesForTest(f);
    ASSERT_TRUE(count) << count.error().ToString();
    EXPECT_THAT(*count, HasSubstr("expiry_counts"));
    EXPECT_THAT(*count, Not(HasSubstr("certificates_by_expiry")));
    EXPECT_THAT(*count, Not(ContainsRegex(sqlite ? "(SCAN|SEARCH) (certificates|devices)\\b"
                                                 : " on (certificates|devices)\\b")));
  }
  EXPECT_EQ(*store->CountDevices({.expiring_within = std::chrono::days(30)}), 0);
  EXPECT_EQ(*store->CountDevices({.expiring_within = std::chrono::days(91)}), 10);
  EXPECT_EQ(*store->CountDevices({.batch = "b1"}), 40);
}

// A crash (_exit, no cleanup) at each step of the group protocol, in the second group, while
// the third is being signed; then --resume. The forked child opens its own Authority.
class CrashTest : public ProvisionFixture,
                  public ::testing::WithParamInterface<std::tuple<Backend, KeyMode, Step>> {
 protected:
  Backend backend() const override { return std::get<0>(GetParam()); }
};

TEST_P(CrashTest, ResumeAfterACrashAtEveryStep) {
  KeyMode keys = std::get<1>(GetParam());
  Step step = std::get<2>(GetParam());
  auto devices = Devices(30);
  if (keys == KeyMode::kCsr) WriteCsrs(devices);
  auto opts = Options(keys);
  EXPECT_EXIT(
      {
        auto ca = OpenCa();
        auto crashing = opts;
        crashing.step_hook = [step = step](Step s, size_t group) {
          if (s == step && group == 1) ::_exit(42);
        };
        (void)Provision(*ca, devices, crashing);
        ::_exit(0);
      },
      ::testing::ExitedWithCode(42), "");
  auto ca = OpenCa();
  bool committed = step != Step::kKeysStaged;
  EXPECT_EQ(Count(*ca), committed ? 16 : 8);
  // Without --resume the batch is refused; with it, it is finished.
  auto refused = Provision(*ca, devices, opts);
  ASSERT_FALSE(refused);
  opts.resume = true;
  auto report = Provision(*ca, devices, opts);
  ASSERT_TRUE(report) << report.error().ToString();
  EXPECT_EQ(report->already_done + report->recovered + report->issued, 30u);
  EXPECT_EQ(report->already_done, step == Step::kListed ? 16u : 8u);
  EXPECT_EQ(report->recovered, committed && step != Step::kListed ? 8u : 0u);
  ExpectConsistent(*ca, devices, keys);
}

std::string CrashTestName(
    const ::testing::TestParamInfo<std::tuple<Backend, KeyMode, Step>>& info) {
  static const char* const kSteps[] = {"KeysStaged", "Committed", "Published", "Listed"};
  return BackendName(std::get<0>(info.param)) + std::string(KeyModeName(std::get<1>(info.param))) +
         kSteps[static_cast<int>(std::get<2>(info.param))];
}

std::vector<std::tuple<Backend, KeyMode, Step>> CrashCases() {
  std::vector<std::tuple<Backend, KeyMode, Step>> cases;
  for (Backend backend : {Backend::kSqlite, Backend::kPostgres}) {
    for (auto [keys, step] :
         {std::pair(KeyMode::kCa, Step::kKeysStaged), std::pair(KeyMode::kCa, Step::kCommitted),
          std::pair(KeyMode::kCa, Step::kPublished), std::pair(KeyMode::kCa, Step::kListed),
          std::pair(KeyMode::kCsr, Step::kCommitted), std::pair(KeyMode::kCsr, Step::kPublished),
          std::pair(KeyMode::kCsr, Step::kListed)}) {
      cases.emplace_back(backend, keys, step);
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Steps, CrashTest, ::testing::ValuesIn(CrashCases()), CrashTestName);

// A key lost after its certificate was committed (only an operator deleting files can do this)
// is reported, not papered over.
TEST_P(ProvisionTest, LostKeyIsDataLoss) {
  auto devices = Devices(12);
  auto opts = Options(KeyMode::kCa);
  EXPECT_EXIT(
      {
        auto ca = OpenCa();
        auto crashing = opts;
        crashing.step_hook = [](Step s, size_t group) {
          if (s == Step::kCommitted && group == 0) ::_exit(42);
        };
        (void)Provision(*ca, devices, crashing);
        ::_exit(0);
      },
      ::testing::ExitedWithCode(42), "");
  fs::remove(out_ / ".partial" / devices[2].serial / kKeyPem);
  auto ca = OpenCa();
  opts.resume = true;
  auto r = Provision(*ca, devices, opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kDataLoss);
  EXPECT_THAT(r.error().message(), HasSubstr("generated key of device " + devices[2].serial));
  EXPECT_THAT(r.error().message(), HasSubstr("revoke"));
}

}  // namespace
}  // namespace iotpki::mfg
