// Authority::IssueServerCertificate and IssueRequest::allow_birth_key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/service_identity.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/verify.h"

namespace iotpki::ca {
namespace {

namespace fs = std::filesystem;
constexpr char kPass[] = "unit-test-passphrase";

class ServerCertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("iotpki-srvcert-" + std::to_string(::getpid()) + "-" + ToHex(crypto::RandomBytes(4)));
    ASSERT_TRUE(InitCa(base_ / "ca", {.organization = "Acme"}, kPass, clock_));
    auto a = Authority::Open(base_ / "ca", clock_);
    ASSERT_TRUE(a) << a.error().ToString();
    authority_ = std::move(*a);
  }
  void TearDown() override {
    authority_.reset();
    fs::remove_all(base_);
  }
  FakeClock clock_{1790000000};
  fs::path base_;
  std::unique_ptr<Authority> authority_;
};

TEST_F(ServerCertTest, IssuesARecordedServerCertificateWithTheNames) {
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key);
  auto locked = authority_->IssueServerCertificate(key->public_key(), "est.example", {}, {}, "t");
  ASSERT_FALSE(locked);
  EXPECT_EQ(locked.error().code(), Code::kFailedPrecondition);

  ASSERT_TRUE(authority_->Unlock(CaName::kOperational, kPass));
  auto cert = authority_->IssueServerCertificate(key->public_key(), "est.example",
                                                 {"est.example", "localhost"}, {"127.0.0.1"}, "t");
  ASSERT_TRUE(cert) << cert.error().ToString();
  EXPECT_EQ(cert->san_dns_names(), (std::vector<std::string>{"est.example", "localhost"}));
  EXPECT_EQ(cert->san_ip_addresses(), (std::vector<std::string>{"127.0.0.1"}));
  EXPECT_EQ(cert->extended_key_usage(), (std::vector<std::string>{"serverAuth"}));
  const auto& ops = authority_->certificate(CaName::kOperational);
  const auto& root = authority_->certificate(CaName::kRoot);
  EXPECT_EQ(x509::VerifyChain(*cert, std::span(&ops, 1), std::span(&root, 1), clock_.NowUnix()),
            x509::Verdict::kValid);
  auto rec = authority_->store().GetCertificate(cert->serial_hex());
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->profile, store::CertProfile::kServer);
  EXPECT_FALSE(rec->device_id.has_value());
}

TEST_F(ServerCertTest, IssuesARecordedCommandCertificate) {
  auto key = crypto::PrivateKey::Generate();
  ASSERT_TRUE(key);
  auto locked = authority_->IssueCommandCertificate(key->public_key(), "iotpki-server", "t");
  ASSERT_FALSE(locked);
  EXPECT_EQ(locked.error().code(), Code::kFailedPrecondition);

  ASSERT_TRUE(authority_->Unlock(CaName::kOperational, kPass));
  auto p384 = crypto::PrivateKey::Generate(crypto::KeyType::kP384);
  ASSERT_TRUE(p384);
  EXPECT_FALSE(authority_->IssueCommandCertificate(p384->public_key(), "iotpki-server", "t"));
  auto cert = authority_->IssueCommandCertificate(key->public_key(), "iotpki-server", "t");
  ASSERT_TRUE(cert) << cert.error().ToString();
  EXPECT_EQ(cert->common_name(), "iotpki-server");
  EXPECT_EQ(cert->extended_key_usage(),
            (std::vector<std::string>{std::string(x509::kOidCommandSigning), "clientAuth"}));
  EXPECT_EQ(cert->not_after() - cert->not_before(), x509::Policy().command_signer.default_validity);
  const auto& ops = authority_->certificate(CaName::kOperational);
  EXPECT_EQ(x509::VerifyChain(*cert, {}, std::span(&ops, 1), clock_.NowUnix()),
            x509::Verdict::kValid);
  auto rec = authority_->store().GetCertificate(cert->serial_hex());
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->profile, store::CertProfile::kServer);
}

// What `iotpki serve` calls at start and then once a minute: the command certificate is kept
// through the first half of its life and renewed after it, on the authority's clock, with no
// restart. The files are replaced and the new pair is recorded.
TEST_F(ServerCertTest, TheCommandCertificateIsRenewedAtHalfItsLife) {
  EXPECT_FALSE(LoadOrIssueCommandIdentity(*authority_, kPass));  // the CA is locked
  ASSERT_TRUE(authority_->Unlock(CaName::kOperational, kPass));
  auto first = LoadOrIssueCommandIdentity(*authority_, kPass);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_TRUE(first->issued);
  EXPECT_EQ(fs::status(first->key_file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  const x509::Certificate& cert = first->certificate;
  int64_t half = (cert.not_after() - cert.not_before()) / 2;
  ASSERT_GT(half, 0);

  // The certificate is backdated a little (policy backdate): its half-life counts from notBefore.
  clock_.Advance(std::chrono::seconds(cert.not_before() + half - 1 - clock_.NowUnix()));
  EXPECT_TRUE(InFirstHalfOfLife(cert, clock_.NowUnix()));
  auto kept = LoadOrIssueCommandIdentity(*authority_, kPass);
  ASSERT_TRUE(kept) << kept.error().ToString();
  EXPECT_FALSE(kept->issued);
  EXPECT_EQ(kept->certificate.serial_hex(), cert.serial_hex());
  EXPECT_TRUE(kept->key->public_key() == cert.public_key());

  clock_.Advance(std::chrono::seconds(1));
  EXPECT_FALSE(InFirstHalfOfLife(cert, clock_.NowUnix()));
  auto renewed = LoadOrIssueCommandIdentity(*authority_, kPass);
  ASSERT_TRUE(renewed) << renewed.error().ToString();
  EXPECT_TRUE(renewed->issued);
  EXPECT_NE(renewed->certificate.serial_hex(), cert.serial_hex());
  EXPECT_FALSE(renewed->key->public_key() == cert.public_key());
  EXPECT_GT(renewed->certificate.not_before(), cert.not_before());
  EXPECT_TRUE(authority_->store().GetCertificate(renewed->certificate.serial_hex()));
  // The files now hold the new pair: a restarted server reads it rather than making a third.
  auto reread = LoadOrIssueCommandIdentity(*authority_, kPass);
  ASSERT_TRUE(reread);
  EXPECT_FALSE(reread->issued);
  EXPECT_EQ(reread->certificate.serial_hex(), renewed->certificate.serial_hex());
}

TEST_F(ServerCertTest, BirthKeyOnlyWhenAllowed) {
  ASSERT_TRUE(authority_->Unlock(CaName::kManufacturing, kPass));
  ASSERT_TRUE(authority_->Unlock(CaName::kOperational, kPass));
  auto key = crypto::PrivateKey::Generate();
  auto csr = x509::MakeCsr(*key, {.common_name = "device"});
  ASSERT_TRUE(csr);
  auto idevid = authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                   .csr = *csr,
                                   .serial = "SN-7",
                                   .hardware_fingerprint = {1, 2, 3}});
  ASSERT_TRUE(idevid) << idevid.error().ToString();
  std::string device_id = idevid->common_name();
  IssueRequest ldevid{.profile = x509::ProfileKind::kLDevID, .csr = *csr, .device_id = device_id};
  auto refused = authority_->Issue(ldevid);
  ASSERT_FALSE(refused);
  // The device's own birth key: a permission (403), as simpleenroll answers it.
  EXPECT_EQ(refused.error().code(), Code::kPermissionDenied);
  ldevid.allow_birth_key = true;
  auto issued = authority_->Issue(ldevid);
  ASSERT_TRUE(issued) << issued.error().ToString();
  EXPECT_EQ(issued->public_key(), key->public_key());
  // Another device still may not use that key, allowed or not.
  auto other = authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                  .csr = *csr,
                                  .serial = "SN-8",
                                  .hardware_fingerprint = {1, 2, 4}});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), Code::kAlreadyExists);
}

}  // namespace
}  // namespace iotpki::ca
