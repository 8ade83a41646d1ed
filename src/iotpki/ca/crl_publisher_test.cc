#include "iotpki/ca/crl_publisher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::ca {
namespace {

namespace fs = std::filesystem;
constexpr char kPass[] = "unit-test-passphrase";
constexpr int64_t kDay = 86400;

class CrlPublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("iotpki-crl-test-" + std::to_string(::getpid()) + "-" + ToHex(crypto::RandomBytes(4)));
    dir_ = base_ / "ca";
    ASSERT_TRUE(InitCa(dir_, {.organization = "Acme"}, kPass, clock_));
    authority_ = Open();
  }
  void TearDown() override {
    authority_.reset();
    fs::remove_all(base_);
  }

  std::unique_ptr<Authority> Open() {
    auto a = Authority::Open(dir_, clock_);
    EXPECT_TRUE(a) << a.error().ToString();
    EXPECT_TRUE((*a)->Unlock(CaName::kManufacturing, kPass));
    EXPECT_TRUE((*a)->Unlock(CaName::kOperational, kPass));
    return std::move(*a);
  }

  // `n` certificates of `issuer` recorded in the store (CA-side rows: no device needed), their
  // serials returned in insertion order.
  std::vector<std::string> AddCertificates(int n, const std::string& issuer = "operational") {
    std::vector<std::string> serials;
    store::WriteBatch batch;
    for (int i = 0; i < n; ++i) {
      store::CertificateRecord r;
      r.serial = ToHex(crypto::RandomBytes(16));
      r.serial[0] = '1';  // positive, 16 octets
      r.profile = store::CertProfile::kServer;
      r.issuer = issuer;
      r.subject = "CN=test";
      r.not_before = clock_.NowUnix();
      r.not_after = clock_.NowUnix() + 90 * kDay;
      r.key_fingerprint = ToHex(crypto::RandomBytes(32));
      r.der = {0x30, 0x00};
      serials.push_back(r.serial);
      batch.InsertCertificate(std::move(r));
    }
    EXPECT_TRUE(authority_->store().Commit(batch));
    return serials;
  }

  void Revoke(const std::vector<std::string>& serials) {
    store::WriteBatch batch;
    for (const auto& s : serials) {
      batch.RevokeCertificate(s, store::RevocationReason::kKeyCompromise);
    }
    auto r = authority_->store().Commit(batch);
    EXPECT_TRUE(r) << r.error().ToString();
  }

  FakeClock clock_{1790000000};
  fs::path base_, dir_;
  std::unique_ptr<Authority> authority_;
};

TEST_F(CrlPublisherTest, PublishesBothIssuingCasCrls) {
  CrlPublisher publisher(*authority_, {});
  EXPECT_EQ(publisher.Current("operational"), nullptr);
  auto n = publisher.Refresh();
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(*n, 2);
  for (CaName ca : {CaName::kManufacturing, CaName::kOperational}) {
    auto current = publisher.Current(CaNameText(ca));
    ASSERT_NE(current, nullptr);
    const x509::Crl& crl = current->crl;
    EXPECT_TRUE(crl.IsSignedBy(authority_->certificate(ca).public_key()));
    EXPECT_EQ(crl.issuer(), authority_->certificate(ca).subject());
    EXPECT_EQ(crl.crl_number(), 1);
    EXPECT_EQ(crl.this_update(), clock_.NowUnix());
    EXPECT_EQ(crl.next_update(), clock_.NowUnix() + 7 * kDay);
    EXPECT_EQ(crl.authority_key_id(), authority_->certificate(ca).subject_key_id());
    EXPECT_TRUE(crl.revoked().empty());
    EXPECT_EQ(current->etag, "\"crl-1\"");
    auto der = ReadFile(CrlPath(dir_, ca));
    ASSERT_TRUE(der);
    EXPECT_EQ(*der, crl.ToDer());
    auto pem = ReadTextFile(fs::path(CrlPath(dir_, ca)).replace_extension(".pem"));
    ASSERT_TRUE(pem);
    EXPECT_EQ(*pem, crl.ToPem());
  }
  EXPECT_EQ(publisher.Current("root"), nullptr);
}

TEST_F(CrlPublisherTest, RebuildsAtHalfLifeOnlyWhenNothingChanged) {
  CrlPublisher publisher(*authority_, {});
  ASSERT_TRUE(publisher.Refresh());
  EXPECT_EQ(*publisher.Refresh(), 0);
  clock_.Advance(std::chrono::seconds(3 * kDay + 12 * 3600 - 1));
  EXPECT_EQ(*publisher.Refresh(), 0);
  clock_.Advance(std::chrono::seconds(1));
  EXPECT_EQ(*publisher.Refresh(), 2);
  EXPECT_EQ(publisher.Current("operational")->crl.crl_number(), 2);
  EXPECT_EQ(publisher.Current("operational")->crl.this_update(), clock_.NowUnix());
}

TEST_F(CrlPublisherTest, ABurstOfRevocationsMakesOneCrl) {
  CrlPublisher publisher(*authority_, {});
  ASSERT_TRUE(publisher.Refresh());
  auto serials = AddCertificates(10000);
  auto mfg = AddCertificates(3, "manufacturing");
  // Ten commits of a thousand, as a batch revocation would make them, between two polls.
  for (size_t i = 0; i < serials.size(); i += 1000) {
    Revoke(std::vector<std::string>(serials.begin() + i, serials.begin() + i + 1000));
  }
  auto n = publisher.Refresh();
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(*n, 1);  // the operational CA's only
  auto current = publisher.Current("operational");
  EXPECT_EQ(current->crl.crl_number(), 2);
  EXPECT_EQ(current->revoked_count, 10000);
  ASSERT_EQ(current->crl.revoked().size(), 10000u);
  for (const auto& s : serials) ASSERT_TRUE(current->crl.IsRevoked(*FromHex(s))) << s;
  EXPECT_FALSE(current->crl.IsRevoked(*FromHex(mfg[0])));
  // In ascending serial order, each with its reason.
  const auto& entries = current->crl.revoked();
  for (size_t i = 1; i < entries.size(); ++i) ASSERT_LT(entries[i - 1].serial, entries[i].serial);
  EXPECT_EQ(entries[0].reason, x509::RevocationReason::kKeyCompromise);
  EXPECT_EQ(*publisher.Refresh(), 0);

  Revoke({mfg[1]});
  EXPECT_EQ(*publisher.Refresh(), 1);
  EXPECT_TRUE(publisher.Current("manufacturing")->crl.IsRevoked(*FromHex(mfg[1])));
}

TEST_F(CrlPublisherTest, ARestartKeepsAFreshCrlAndContinuesItsNumber) {
  auto serials = AddCertificates(2);
  {
    CrlPublisher publisher(*authority_, {});
    ASSERT_TRUE(publisher.Refresh());
    Revoke({serials[0]});
    EXPECT_EQ(*publisher.Refresh(), 1);
  }
  authority_ = Open();
  CrlPublisher again(*authority_, {});
  EXPECT_EQ(*again.Refresh(), 0);
  EXPECT_EQ(again.Current("operational")->crl.crl_number(), 2);
  Revoke({serials[1]});
  EXPECT_EQ(*again.Refresh(), 1);
  EXPECT_EQ(again.Current("operational")->crl.crl_number(), 3);
  EXPECT_EQ(NextCrlNumber(dir_, CaName::kOperational), 4);
}

TEST_F(CrlPublisherTest, KeepsTheBrokerFileAndRunsTheReloadCommand) {
  fs::path broker = base_ / "broker-crl.pem";
  fs::path reloads = base_ / "reloads";
  CrlPublisher publisher(
      *authority_,
      {.broker_crl = broker, .broker_reload = "echo reloaded >>'" + reloads.string() + "'"});
  ASSERT_TRUE(publisher.Refresh());
  auto text = ReadTextFile(broker);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, CombinedPem({publisher.Current("manufacturing")->crl,
                                publisher.Current("operational")->crl}));
  auto lines = [&] {
    auto t = ReadTextFile(reloads);
    return t ? std::count(t->begin(), t->end(), '\n') : 0;
  };
  EXPECT_EQ(lines(), 1);
  EXPECT_EQ(*publisher.Refresh(), 0);
  EXPECT_EQ(lines(), 1);  // nothing changed: neither written nor signalled
  Revoke(AddCertificates(1));
  EXPECT_EQ(*publisher.Refresh(), 1);
  EXPECT_EQ(lines(), 2);
  EXPECT_NE(*ReadTextFile(broker), *text);
}

// [crl] max_bytes: a CRL past its budget is refused by the lint before it is signed; the one
// published before stays (file and memory), and the next refresh within budget publishes again.
TEST_F(CrlPublisherTest, ACrlPastItsSizeBudgetIsRefusedAndThePreviousOneKept) {
  auto config = LoadConfig(dir_);
  ASSERT_TRUE(config);
  config->crl_max_bytes = 4096;  // the envelope (2 KiB) and about 50 entries
  ASSERT_TRUE(SaveConfig(dir_, *config));
  authority_ = Open();
  ASSERT_EQ(authority_->config().crl_max_bytes, 4096);
  CrlPublisher publisher(*authority_, {});
  Revoke(AddCertificates(10));
  ASSERT_TRUE(publisher.Refresh());
  auto before = ReadFile(CrlPath(dir_, CaName::kOperational));
  ASSERT_TRUE(before);
  Revoke(AddCertificates(100));
  auto refused = publisher.Refresh();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("size budget of 4096 bytes"), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(publisher.Current("operational")->revoked_count, 10);
  EXPECT_EQ(*ReadFile(CrlPath(dir_, CaName::kOperational)), *before);

  config->crl_max_bytes = 0;
  ASSERT_TRUE(SaveConfig(dir_, *config));
  authority_ = Open();
  CrlPublisher again(*authority_, {});
  ASSERT_TRUE(again.Refresh());
  EXPECT_EQ(again.Current("operational")->revoked_count, 110);
}

TEST_F(CrlPublisherTest, NeedsTheIssuingCaKeys) {
  auto locked = Authority::Open(dir_, clock_);
  ASSERT_TRUE(locked);
  auto crl = BuildIssuerCrl(**locked, CaName::kOperational, 1, clock_.NowUnix(),
                            std::chrono::seconds(kDay));
  ASSERT_FALSE(crl);
  EXPECT_EQ(crl.error().code(), Code::kFailedPrecondition);
  CrlPublisher publisher(**locked, {});
  EXPECT_FALSE(publisher.Refresh());
  EXPECT_FALSE(fs::exists(CrlPath(dir_, CaName::kOperational)));
}

// A server without the manufacturing key (kept at the factory station) still publishes the
// operational CA's CRL; the manufacturing CRL is left to a process that holds that key.
TEST_F(CrlPublisherTest, WithoutTheManufacturingKeyPublishesTheOperationalCrlOnly) {
  auto a = Authority::Open(dir_, clock_);
  ASSERT_TRUE(a);
  ASSERT_TRUE((*a)->Unlock(CaName::kOperational, kPass));
  CrlPublisher publisher(**a, {});
  auto rebuilt = publisher.Refresh();
  ASSERT_TRUE(rebuilt) << rebuilt.error().ToString();
  EXPECT_EQ(*rebuilt, 1);
  EXPECT_TRUE(fs::exists(CrlPath(dir_, CaName::kOperational)));
  EXPECT_FALSE(fs::exists(CrlPath(dir_, CaName::kManufacturing)));
  EXPECT_NE(publisher.Current("operational"), nullptr);
  EXPECT_EQ(publisher.Current("manufacturing"), nullptr);
}

// OpenSSL's verdict on an IDevID (as `openssl verify -crl_check`) with `crls` as the only CRLs.
int VerifyIdevid(Authority& a, const x509::Certificate& leaf, const std::vector<x509::Crl>& crls,
                 int64_t at) {
  auto store = ossl::Own(X509_STORE_new());
  X509_STORE_add_cert(store.get(), a.certificate(CaName::kRoot).handle());
  for (const auto& crl : crls) X509_STORE_add_crl(store.get(), crl.handle());
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
  X509_VERIFY_PARAM_set_time(param, at);
  auto untrusted = ossl::Own(sk_X509_new_null());
  sk_X509_push(untrusted.get(), a.certificate(CaName::kManufacturing).handle());
  auto ctx = ossl::Own(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.handle(), untrusted.get());
  int ok = X509_verify_cert(ctx.get());
  int error = X509_STORE_CTX_get_error(ctx.get());
  ossl::ClearErrors();
  return ok == 1 ? X509_V_OK : error;
}

TEST_F(CrlPublisherTest, PartitionsByIssuanceMonthPastTheSize) {
  ASSERT_TRUE(authority_->SetPublicUrl("http://pki.test"));
  // Serials carry their issuance time (the system clock's): certificates of this month and of an
  // earlier one, signed by the manufacturing CA with the CDP the Authority would give them.
  Bytes now_serial = x509::NewSerial();
  Bytes old_serial = now_serial;
  int64_t micros = 0;
  for (size_t i = 0; i < 7; ++i) micros = (micros << 8) | old_serial[i];
  micros -= int64_t{35} * kDay * 1000000;
  for (int i = 6; i >= 0; --i, micros >>= 8) old_serial[i] = static_cast<uint8_t>(micros & 0xff);
  std::string this_month = x509::IssuanceMonth(now_serial);
  std::string last_month = x509::IssuanceMonth(old_serial);
  ASSERT_NE(this_month, last_month);
  int n = 0;
  auto make = [&](Bytes serial) {
    serial.back() = static_cast<uint8_t>(++n);  // distinct
    auto key = x509::testing::NewKey();
    auto t = x509::NewTemplate(x509::ProfileKind::kIDevID, key.public_key(), clock_.NowUnix(),
                               authority_->policy());
    t.serial = serial;
    t.device = x509::testing::Identity("SN-P" + std::to_string(n), "Acme");
    t.crl_url = CrlUrl("http://pki.test", "manufacturing", x509::IssuanceMonth(serial));
    auto cert = x509::Issue(t, &authority_->certificate(CaName::kManufacturing),
                            *authority_->issuer_key(CaName::kManufacturing), authority_->policy());
    EXPECT_TRUE(cert) << cert.error().ToString();
    store::CertificateRecord r{.serial = cert->serial_hex(),
                               .profile = store::CertProfile::kServer,
                               .issuer = "manufacturing",
                               .subject = cert->subject(),
                               .not_before = cert->not_before(),
                               .not_after = cert->not_after(),
                               .key_fingerprint = ToHex(crypto::RandomBytes(32)),
                               .der = cert->ToDer()};
    EXPECT_TRUE(authority_->store().Commit(store::WriteBatch().InsertCertificate(std::move(r))));
    return *cert;
  };
  x509::Certificate old_revoked = make(old_serial), old_good = make(old_serial);
  x509::Certificate new_revoked = make(now_serial), new_good = make(now_serial);
  Revoke({old_revoked.serial_hex(), new_revoked.serial_hex()});

  // Under the size (1 MB by default): the whole CRL only.
  int64_t threshold = 0;
  {
    CrlPublisher whole(*authority_, {});
    ASSERT_TRUE(whole.Refresh());
    EXPECT_TRUE(whole.Current("manufacturing")->partitions.empty());
    // Just above the operational CA's CRL (no entry): the two revocations pass it.
    threshold = static_cast<int64_t>(whole.Current("operational")->crl.ToDer().size()) + 10;
    ASSERT_GT(static_cast<int64_t>(whole.Current("manufacturing")->crl.ToDer().size()), threshold);
  }
  fs::path broker = base_ / "broker.pem";
  CrlPublisher publisher(*authority_, {.broker_crl = broker, .partition_bytes = threshold});
  ASSERT_TRUE(publisher.Refresh(/*force=*/true));
  auto published = publisher.Current("manufacturing");
  // From the CA certificate's month (this one) to now, and the earlier month a revoked
  // certificate names.
  ASSERT_EQ(published->partitions.size(), 2u);
  ASSERT_TRUE(published->partitions.count(last_month) && published->partitions.count(this_month));
  const x509::Crl& p_old = published->partitions.at(last_month);
  const x509::Crl& p_new = published->partitions.at(this_month);
  EXPECT_TRUE(p_old.IsRevoked(old_revoked.serial()));
  EXPECT_FALSE(p_old.IsRevoked(new_revoked.serial()));
  EXPECT_TRUE(p_new.IsRevoked(new_revoked.serial()));
  EXPECT_EQ(p_old.revoked().size(), 1u);
  EXPECT_EQ(p_new.crl_number(), published->crl.crl_number());
  EXPECT_TRUE(p_new.IsSignedBy(authority_->certificate(CaName::kManufacturing).public_key()));
  EXPECT_TRUE(fs::exists(dir_ / "crl" / "manufacturing" / (this_month + ".crl")));
  // The operational CA has no revocation: under the size, not partitioned.
  EXPECT_TRUE(publisher.Current("operational")->partitions.empty());

  // Each certificate is checked against its own partition, as a relying party fetching its
  // cRLDistributionPoint does; another month's partition does not answer for it.
  int64_t at = clock_.NowUnix() + 60;
  EXPECT_EQ(VerifyIdevid(*authority_, old_revoked, {p_old}, at), X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyIdevid(*authority_, old_good, {p_old}, at), X509_V_OK);
  EXPECT_EQ(VerifyIdevid(*authority_, new_revoked, {p_new}, at), X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyIdevid(*authority_, new_good, {p_new}, at), X509_V_OK);
  EXPECT_NE(VerifyIdevid(*authority_, new_good, {p_old}, at), X509_V_OK);
  // The broker file holds the whole CRL and every partition; with all of them loaded, as
  // Mosquitto does, each certificate gets the right verdict.
  auto text = ReadTextFile(broker);
  ASSERT_TRUE(text);
  std::vector<x509::Crl> all;
  AppendBrokerCrls(*published, all);
  AppendBrokerCrls(*publisher.Current("operational"), all);
  EXPECT_EQ(*text, CombinedPem(all));
  EXPECT_EQ(all.size(), 4u);  // manufacturing whole + 2 partitions, operational whole
  EXPECT_EQ(VerifyIdevid(*authority_, old_revoked, all, at), X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyIdevid(*authority_, new_good, all, at), X509_V_OK);

  // A restart that keeps the fresh whole CRL rebuilds the partitions it does not have.
  CrlPublisher again(*authority_, {.partition_bytes = threshold});
  ASSERT_TRUE(again.Refresh());
  EXPECT_EQ(again.Current("manufacturing")->partitions.size(), 2u);
}

}  // namespace
}  // namespace iotpki::ca
