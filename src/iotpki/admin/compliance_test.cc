#include "iotpki/admin/compliance.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/crl_publisher.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/x509/csr.h"

namespace iotpki::admin {
namespace {

namespace fs = std::filesystem;

class ComplianceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("compliance_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    ASSERT_TRUE(ca::InitCa(dir_, {}, "test passphrase 1", clock_));
    auto a = ca::Authority::Open(dir_, clock_);
    ASSERT_TRUE(a) << a.error().ToString();
    authority_ = std::move(*a);
    ASSERT_TRUE(authority_->Unlock(ca::CaName::kManufacturing, "test passphrase 1"));
    ASSERT_TRUE(authority_->Unlock(ca::CaName::kOperational, "test passphrase 1"));
    ca::CrlPublisher crls(*authority_, {});
    ASSERT_TRUE(crls.Refresh());
  }
  void TearDown() override {
    authority_.reset();
    fs::remove_all(dir_);
  }

  Finding Measure(const std::string& id) {
    auto r = MeasureCompliance(Standard::kEtsiEn303645, dir_, authority_->config(),
                               authority_->store(), clock_);
    EXPECT_TRUE(r) << r.error().ToString();
    for (const auto& f : r->findings) {
      if (f.id == id) return f;
    }
    ADD_FAILURE() << "no finding " << id;
    return {};
  }

  FakeClock clock_{1'760'000'000};
  fs::path dir_;
  std::unique_ptr<ca::Authority> authority_;
};

TEST_F(ComplianceTest, AStaleCrlFlipsTheVerdict) {
  Finding fresh = Measure("crl-freshness");
  EXPECT_EQ(fresh.verdict, Verdict::kPass);
  EXPECT_EQ(fresh.provision, "5.5-8");
  clock_.Advance(std::chrono::days(8));  // past nextUpdate (7 days)
  Finding stale = Measure("crl-freshness");
  EXPECT_EQ(stale.verdict, Verdict::kFail);
  ASSERT_FALSE(stale.evidence.empty());
  EXPECT_EQ(stale.evidence[0].second.rfind("STALE", 0), 0u) << stale.evidence[0].second;
}

TEST_F(ComplianceTest, AnEditedAuditRowFlipsTheVerdict) {
  EXPECT_EQ(Measure("audit-chain").verdict, Verdict::kPass);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "iotpki.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE audit_log SET details = '{}' WHERE seq = 1", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Finding broken = Measure("audit-chain");
  EXPECT_EQ(broken.verdict, Verdict::kFail);
}

// Two devices, one with its own CSR key and one whose key the CA made; then the second device
// given the first one's key behind the store's back (as a factory RNG failure imported by hand
// would): the report counts it from the rows and fails.
TEST_F(ComplianceTest, AReusedKeyAndAKeyMadeOffTheDeviceAreCountedFromTheData) {
  for (const char* serial : {"SN-1", "SN-2"}) {
    auto key = crypto::PrivateKey::Generate();
    ASSERT_TRUE(key);
    auto csr = x509::MakeCsr(*key, {.common_name = serial});
    ASSERT_TRUE(csr);
    ca::IssueRequest req{.profile = x509::ProfileKind::kIDevID,
                         .csr = *csr,
                         .serial = serial,
                         .hardware_fingerprint = {static_cast<uint8_t>(serial[3])},
                         .model = "m",
                         .batch = "b"};
    if (std::string(serial) == "SN-2") req.key_origin = store::KeyOrigin::kGenerated;
    ASSERT_TRUE(authority_->Issue(req));
  }
  Finding clean = Measure("unique-credentials");
  EXPECT_EQ(clean.verdict, Verdict::kPass);
  Finding keys = Measure("keys-on-device");
  EXPECT_EQ(keys.verdict, Verdict::kNeedsManualEvidence);
  EXPECT_EQ(keys.evidence[1].second, "1 (50.0%)");  // made on the device
  EXPECT_EQ(keys.evidence[3].second, "1 (50.0%)");  // made by the CA
  EXPECT_EQ(Measure("stranded-devices").verdict, Verdict::kPass);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "iotpki.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO certificates (serial, device_seq, profile, issuer, subject, "
                         "not_before, not_after, key_fingerprint, der, status, created_at) "
                         "SELECT 'ff01', (SELECT seq FROM devices WHERE serial = 'SN-2'), "
                         "profile, issuer, subject, not_before, not_after, key_fingerprint, der, "
                         "status, created_at FROM certificates WHERE device_seq = (SELECT seq "
                         "FROM devices WHERE serial = 'SN-1')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Finding broken = Measure("unique-credentials");
  EXPECT_EQ(broken.verdict, Verdict::kFail);
  EXPECT_EQ(broken.evidence[1].second, "1");
}

// A device given a 90-day working certificate and then not heard from for 50 days (40 left) is
// stranded; the first use of its certificate (its next TLS handshake) brings it back. The count
// is an index range over columns every write keeps (schema version 8), so this fails if the
// issuance or the first use did not move them.
TEST_F(ComplianceTest, ADeviceUnheardForLongerThanItsCertificateHasLeftIsStranded) {
  auto birth_key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(birth_key);
  auto birth_csr = x509::MakeCsr(*birth_key, {.common_name = "SN-1"});
  ASSERT_TRUE(birth_csr);
  ASSERT_TRUE(authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                 .csr = *birth_csr,
                                 .serial = "SN-1",
                                 .hardware_fingerprint = {1},
                                 .model = "m",
                                 .batch = "b"}));
  auto device = authority_->store().GetDeviceBySerial("SN-1");
  ASSERT_TRUE(device) << device.error().ToString();
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key);
  auto csr = x509::MakeCsr(*key, {.common_name = "SN-1"});
  ASSERT_TRUE(csr);
  auto working = authority_->Issue(
      {.profile = x509::ProfileKind::kLDevID, .csr = *csr, .device_id = device->device_id});
  ASSERT_TRUE(working) << working.error().ToString();
  EXPECT_EQ(Measure("stranded-devices").verdict, Verdict::kPass);

  clock_.Advance(std::chrono::days(50));
  Finding stranded = Measure("stranded-devices");
  EXPECT_EQ(stranded.verdict, Verdict::kNeedsManualEvidence);
  ASSERT_FALSE(stranded.evidence.empty());
  EXPECT_EQ(stranded.evidence[0].second, "1");

  ASSERT_TRUE(
      authority_->store().Commit(store::WriteBatch().MarkCertificateUsed(working->serial_hex())));
  Finding heard = Measure("stranded-devices");
  EXPECT_EQ(heard.verdict, Verdict::kPass);
  EXPECT_EQ(heard.evidence[0].second, "0");
}

// A device certificate with an RSA-1024 key planted with sqlite3 (as an import by hand would):
// the key strength finding reads the certificates' keys, not the policy, and fails.
TEST_F(ComplianceTest, APlantedWeakKeyFlipsTheKeyStrengthVerdict) {
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key);
  auto csr = x509::MakeCsr(*key, {.common_name = "SN-1"});
  ASSERT_TRUE(csr);
  ASSERT_TRUE(authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                 .csr = *csr,
                                 .serial = "SN-1",
                                 .hardware_fingerprint = {1},
                                 .model = "m",
                                 .batch = "b"}));
  Finding clean = Measure("key-algorithms");
  EXPECT_EQ(clean.verdict, Verdict::kPass);
  ASSERT_GE(clean.evidence.size(), 5u);
  EXPECT_EQ(clean.evidence[4].first, "keys of the 1 live device certificates");
  EXPECT_EQ(clean.evidence[4].second, "P-256: 1");

  // A self-signed RSA-1024 certificate stands in for the foreign one.
  ossl::UniquePtr<EVP_PKEY> rsa(EVP_RSA_gen(1024));
  ASSERT_TRUE(rsa);
  ossl::UniquePtr<X509> x(X509_new());
  ASSERT_TRUE(x);
  ASSERT_EQ(X509_set_version(x.get(), 2), 1);
  ASSERT_EQ(ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7), 1);
  X509_NAME* name = X509_get_subject_name(x.get());
  ASSERT_EQ(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>("weak"), -1, -1, 0),
            1);
  ASSERT_EQ(X509_set_issuer_name(x.get(), name), 1);
  ASSERT_TRUE(X509_gmtime_adj(X509_getm_notBefore(x.get()), 0));
  ASSERT_TRUE(X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400));
  ASSERT_EQ(X509_set_pubkey(x.get(), rsa.get()), 1);
  ASSERT_GT(X509_sign(x.get(), rsa.get(), EVP_sha256()), 0);
  unsigned char* der = nullptr;
  int len = i2d_X509(x.get(), &der);
  ASSERT_GT(len, 0);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "iotpki.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "INSERT INTO certificates (serial, device_seq, profile, issuer, "
                               "subject, not_before, not_after, key_fingerprint, der, status, "
                               "created_at) SELECT 'ff02', device_seq, profile, issuer, subject, "
                               "not_before, not_after, randomblob(32), ?1, status, created_at "
                               "FROM certificates WHERE device_seq = (SELECT seq FROM devices "
                               "WHERE serial = 'SN-1')",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(stmt, 1, der, len, SQLITE_TRANSIENT);
  OPENSSL_free(der);
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE);
  sqlite3_finalize(stmt);
  sqlite3_close(db);

  Finding broken = Measure("key-algorithms");
  EXPECT_EQ(broken.verdict, Verdict::kFail);
  EXPECT_EQ(broken.evidence[4].first, "keys of the 2 live device certificates");
  EXPECT_EQ(broken.evidence[4].second, "P-256: 1, RSA-1024: 1");
}

TEST_F(ComplianceTest, FileKeysAreNotHardwareAndOrganisationalNeedsManualEvidence) {
  EXPECT_EQ(Measure("ca-keys-hardware").verdict, Verdict::kFail);
  EXPECT_EQ(Measure("organisational").verdict, Verdict::kNeedsManualEvidence);
  EXPECT_EQ(Measure("rotation").verdict, Verdict::kNeedsManualEvidence);  // no campaign yet
  EXPECT_EQ(Measure("key-algorithms").verdict, Verdict::kPass);
}

TEST_F(ComplianceTest, RendersStableJsonAndAPrintableHtmlPage) {
  auto r = MeasureCompliance(Standard::kEn18031_1, dir_, authority_->config(), authority_->store(),
                             clock_);
  ASSERT_TRUE(r);
  auto j = nlohmann::json::parse(RenderJson(*r));
  EXPECT_EQ(j["standard"], "en-18031-1");
  EXPECT_EQ(j["findings"][0]["id"], "unique-credentials");
  EXPECT_EQ(j["findings"][0]["verdict"], "pass");
  for (const auto& f : j["findings"]) EXPECT_TRUE(f["ms"].is_number_integer()) << f["id"];
  std::string html = RenderHtml(*r);
  EXPECT_NE(html.find("<h2>Summary</h2>"), std::string::npos);
  EXPECT_NE(html.find("id=\"verdict-crl-freshness\">pass<"), std::string::npos);
  EXPECT_FALSE(ParseStandard("iso-27001"));
}

}  // namespace
}  // namespace iotpki::admin
