// EnrollService handlers called directly (no TLS): the straight lines, concurrency through the
// group commit, and the JSON bootstrap checks. The transport and real clients are covered by
// tests/serve_*_test.sh.
#include "iotpki/enroll/service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "iotpki/c509/c509.h"
#include "iotpki/ca/bootstrap.h"
#include "iotpki/ca/revocation.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/audit.h"
#include "iotpki/x509/cms.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::enroll {
namespace {

namespace fs = std::filesystem;
constexpr char kPass[] = "unit-test-passphrase";

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("iotpki-enroll-" + std::to_string(::getpid()) + "-" + ToHex(crypto::RandomBytes(4)));
    ASSERT_TRUE(ca::InitCa(base_ / "ca", {.organization = "Acme"}, kPass, clock_));
    auto a = ca::Authority::Open(base_ / "ca", clock_);
    ASSERT_TRUE(a) << a.error().ToString();
    authority_ = std::move(*a);
    ASSERT_TRUE(authority_->Unlock(ca::CaName::kManufacturing, kPass));
    ASSERT_TRUE(authority_->Unlock(ca::CaName::kOperational, kPass));
    ASSERT_TRUE(authority_->UnlockBootstrap(kPass));
    auto s = EnrollService::Create(*authority_, metrics_, {});
    ASSERT_TRUE(s) << s.error().ToString();
    service_ = std::move(*s);
    // As `iotpki serve` does: its TLS identity signs serverkeygen's key packages.
    auto tls = authority_->IssueServerCertificate(server_key_.public_key(), "est.test",
                                                  {"est.test"}, {}, "test");
    ASSERT_TRUE(tls) << tls.error().ToString();
    server_chain_ = {*tls, authority_->certificate(ca::CaName::kOperational)};
    service_->SetKeyPackageSigner(&server_key_, server_chain_);
  }
  void TearDown() override {
    service_.reset();
    authority_.reset();
    fs::remove_all(base_);
  }

  struct Dev {
    x509::Certificate idevid;
    crypto::PrivateKey key;
  };
  Dev Provision(const std::string& serial) {
    auto key = crypto::PrivateKey::Generate();
    auto csr = x509::MakeCsr(*key, {.common_name = "x"});
    auto cert = authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                   .csr = *csr,
                                   .serial = serial,
                                   .hardware_fingerprint = {1, 2, 3}});
    EXPECT_TRUE(cert) << cert.error().ToString();
    return Dev{*cert, *key};
  }
  static x509::Csr NewCsr(const std::string& cn, const crypto::PrivateKey* key = nullptr) {
    auto k = key ? *key : *crypto::PrivateKey::Generate();
    return *x509::MakeCsr(k, {.common_name = cn});
  }
  static server::Request Est(const x509::Certificate* client, const x509::Csr& csr,
                             int issuer_index = 0) {
    server::Request r{.method = "POST",
                      .path = "/.well-known/est/simpleenroll",
                      .content_type = "application/pkcs10",
                      .body = Base64Encode(csr.ToDer())};
    if (client) {
      r.client_cert = server::ClientCertificate{
          .certificate = *client, .chain_valid = true, .issuer_index = issuer_index};
    }
    return r;
  }
  std::string Json(const Dev& d, const x509::Csr& csr, int64_t ts, std::string token = {}) {
    std::string id = d.idevid.common_name();
    if (token.empty()) token = ca::BootstrapToken(authority_->BootstrapSecret(id)->bytes(), id, ts);
    return nlohmann::json({{"device_id", id},
                           {"csr", Base64Encode(csr.ToDer())},
                           {"device_cert", Base64Encode(d.idevid.ToDer())},
                           {"timestamp", ts},
                           {"token", token}})
        .dump();
  }

  FakeClock clock_{1790000000};
  fs::path base_;
  std::unique_ptr<ca::Authority> authority_;
  server::Registry metrics_;
  crypto::PrivateKey server_key_ = *crypto::PrivateKey::Generate();
  std::vector<x509::Certificate> server_chain_;
  std::unique_ptr<EnrollService> service_;
};

TEST_F(ServiceTest, SimpleEnrollIssuesAndActivates) {
  Dev d = Provision("SN-1");
  std::string id = d.idevid.common_name();
  auto r = service_->SimpleEnroll(Est(&d.idevid, NewCsr(id)));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/pkcs7-mime; smime-type=certs-only");
  EXPECT_TRUE(Base64Decode(r.body));
  EXPECT_EQ(authority_->store().GetDevice(id)->state, store::DeviceState::kActive);
  EXPECT_EQ(metrics_.CounterValue("iotpki_certificates_issued_total", {{"profile", "ldevid"}}), 1u);
}

TEST_F(ServiceTest, SimpleEnrollAnswersInC509WhenAsked) {
  Dev d = Provision("SN-C1");
  std::string id = d.idevid.common_name();
  auto request = Est(&d.idevid, NewCsr(id));
  request.accept = "application/pkcs7-mime;q=0.5, application/cose-c509-cert+cbor";
  auto r = service_->SimpleEnroll(request);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/cose-c509-cert+cbor");
  EXPECT_TRUE(r.headers.empty());  // no Content-Transfer-Encoding for CBOR
  auto c509 = Base64Decode(r.body);
  ASSERT_TRUE(c509);
  auto der = c509::DecodeToX509(*c509);
  ASSERT_TRUE(der) << der.error().ToString();
  auto cert = x509::Certificate::FromDer(*der);
  ASSERT_TRUE(cert);
  auto records = authority_->store().ListCertificatesForDevice(id);
  ASSERT_TRUE(records);
  EXPECT_TRUE(std::any_of(records->begin(), records->end(),
                          [&](const auto& rec) { return rec.der == *der; }));
  EXPECT_EQ(cert->issuer(), authority_->certificate(ca::CaName::kOperational).subject());
}

TEST_F(ServiceTest, UnacceptableOrMalformedAcceptIssuesNothing) {
  Dev d = Provision("SN-C2");
  std::string id = d.idevid.common_name();
  auto request = Est(&d.idevid, NewCsr(id));
  request.accept = "application/json, text/plain;q=0.5";
  auto r = service_->SimpleEnroll(request);
  EXPECT_EQ(r.status, 406);
  EXPECT_EQ(r.content_type, "application/json");  // errors still as the client asked
  EXPECT_NE(r.body.find("not_acceptable"), std::string::npos);
  request.accept = "application/cose-c509-cert+cbor;q=x";
  EXPECT_EQ(service_->SimpleEnroll(request).status, 400);
  // Authentication comes first: a client without a certificate learns nothing about formats.
  auto anonymous = Est(nullptr, NewCsr(id));
  anonymous.accept = "application/json";
  EXPECT_EQ(service_->SimpleEnroll(anonymous).status, 401);
  EXPECT_EQ(authority_->store().GetDevice(id)->state, store::DeviceState::kManufactured);
  EXPECT_EQ(metrics_.CounterValue("iotpki_certificates_issued_total", {{"profile", "ldevid"}}), 0u);
}

TEST_F(ServiceTest, CaCertsInC509) {
  server::Request request{.method = "GET", .path = "/.well-known/est/cacerts"};
  request.accept = "application/cose-c509+cbor; usage=chain";
  auto r = service_->CaCerts(request);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/cose-c509+cbor; usage=chain");
  std::vector<x509::Certificate> cas = {authority_->certificate(ca::CaName::kOperational),
                                        authority_->certificate(ca::CaName::kRoot)};
  EXPECT_EQ(*Base64Decode(r.body), *CoseC509(cas));
  request.accept = "application/cose-c509-cert+cbor";
  r = service_->CaCerts(request);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(*c509::DecodeToX509(*Base64Decode(r.body)), cas[0].ToDer());
  request.accept = "";
  EXPECT_EQ(service_->CaCerts(request).content_type, "application/pkcs7-mime");
  request.accept = "image/png";
  EXPECT_EQ(service_->CaCerts(request).status, 406);
}

TEST_F(ServiceTest, AuthenticationAndAuthorizationFailures) {
  Dev d = Provision("SN-2");
  std::string id = d.idevid.common_name();
  EXPECT_EQ(service_->SimpleEnroll(Est(nullptr, NewCsr(id))).status, 401);
  auto unverified = Est(&d.idevid, NewCsr(id));
  unverified.client_cert->chain_valid = false;
  unverified.client_cert->verify_error = "certificate has expired";
  auto r = service_->SimpleEnroll(unverified);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("expired"), std::string::npos);
  EXPECT_EQ(service_->SimpleEnroll(Est(&d.idevid, NewCsr(id), /*issuer_index=*/1)).status, 403);
  EXPECT_EQ(service_->SimpleEnroll(Est(&d.idevid, NewCsr(id, &d.key))).status, 403);
  EXPECT_EQ(service_->SimpleEnroll(Est(&d.idevid, NewCsr(std::string(64, 'a')))).status, 403);
  auto wrong_type = Est(&d.idevid, NewCsr(id));
  wrong_type.content_type = "application/json";
  EXPECT_EQ(service_->SimpleEnroll(wrong_type).status, 415);
  auto garbage = Est(&d.idevid, NewCsr(id));
  garbage.body = "@@@";
  EXPECT_EQ(service_->SimpleEnroll(garbage).status, 400);
  auto label = Est(&d.idevid, NewCsr(id));
  label.params = {"simplereenroll"};
  EXPECT_EQ(service_->SimpleEnroll(label).status, 404);
  EXPECT_EQ(authority_->store().GetDevice(id)->state, store::DeviceState::kManufactured);
}

TEST_F(ServiceTest, ConcurrentEnrollmentsAreAllDurable) {
  constexpr int kDevices = 24, kThreads = 6;
  std::vector<Dev> devs;
  for (int i = 0; i < kDevices; ++i) devs.push_back(Provision("SN-C" + std::to_string(i)));
  std::atomic<int> next{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kDevices; i = next++) {
        auto r = service_->SimpleEnroll(Est(&devs[i].idevid, NewCsr(devs[i].idevid.common_name())));
        if (r.status == 200) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kDevices);
  store::DeviceFilter active{.state = store::DeviceState::kActive};
  EXPECT_EQ(*authority_->store().CountDevices(active), kDevices);
  auto stats = service_->committer().stats();
  EXPECT_EQ(stats.batches, static_cast<uint64_t>(kDevices));
  EXPECT_LE(stats.transactions, stats.batches);
}

TEST_F(ServiceTest, ConcurrentRetriesOfOneDeviceAllSucceed) {
  // Each request plans manufactured -> active; all but the first lose the compare-and-set and
  // are decided again on the fresh state (active -> active: an idempotent retry).
  Dev d = Provision("SN-R");
  std::string id = d.idevid.common_name();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      if (service_->SimpleEnroll(Est(&d.idevid, NewCsr(id))).status == 200) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(authority_->store().ListCertificatesForDevice(id)->size(), 7u);  // IDevID + 6
}

TEST_F(ServiceTest, JsonBootstrapChecksTokenWindowAndReplay) {
  Dev d = Provision("SN-J");
  std::string id = d.idevid.common_name();
  int64_t now = clock_.NowUnix();
  auto req = [&](std::string body, bool tls) {
    server::Request r{.method = "POST",
                      .path = "/api/v1/bootstrap",
                      .content_type = "application/json",
                      .body = std::move(body)};
    if (tls) {
      r.client_cert = server::ClientCertificate{
          .certificate = d.idevid, .chain_valid = true, .issuer_index = 0};
    }
    return r;
  };
  EXPECT_EQ(service_->Bootstrap(req(Json(d, NewCsr(id), now, std::string(64, '0')), true)).status,
            401);
  EXPECT_EQ(service_->Bootstrap(req(Json(d, NewCsr(id), now - 301), true)).status, 401);
  EXPECT_EQ(service_->Bootstrap(req(Json(d, NewCsr(id), now + 301), true)).status, 401);
  EXPECT_EQ(service_->Bootstrap(req(Json(d, NewCsr(id), now, std::string(64, 'Z')), true)).status,
            400);
  // Without a client certificate the CSR must carry the IDevID key.
  EXPECT_EQ(service_->Bootstrap(req(Json(d, NewCsr(id), now), false)).status, 401);
  std::string good = Json(d, NewCsr(id, &d.key), now + 1);
  auto r = service_->Bootstrap(req(good, false));
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = nlohmann::json::parse(r.body);
  auto cert = x509::Certificate::FromDer(*Base64Decode(j["certificate"].get<std::string>()));
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->public_key(), d.key.public_key());
  EXPECT_EQ(j["chain"].size(), 1u);
  EXPECT_EQ(service_->Bootstrap(req(good, false)).status, 409);  // replay
  // A TLS client certificate that is not device_cert.
  Dev other = Provision("SN-K");
  auto mismatched = req(Json(d, NewCsr(id), now + 2), true);
  mismatched.client_cert->certificate = other.idevid;
  EXPECT_EQ(service_->Bootstrap(mismatched).status, 401);
}

server::Request BootstrapRequest(std::string body, const x509::Certificate* client) {
  server::Request r{.method = "POST",
                    .path = "/api/v1/bootstrap",
                    .content_type = "application/json",
                    .body = std::move(body)};
  if (client) {
    r.client_cert =
        server::ClientCertificate{.certificate = *client, .chain_valid = true, .issuer_index = 0};
  }
  return r;
}

TEST_F(ServiceTest, ConcurrentUsesOfOneTokenIssueOnce) {
  // The same request several times at once: the token is claimed in memory before the CA signs,
  // so one request goes on and the others are refused; the replay row in the issuance's
  // transaction guards across servers.
  constexpr int kThreads = 6;
  for (int round = 0; round < 5; ++round) {
    Dev d = Provision("SN-T" + std::to_string(round));
    std::string id = d.idevid.common_name();
    std::string body = Json(d, NewCsr(id), clock_.NowUnix() - round);
    std::atomic<int> ok{0}, replayed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        auto r = service_->Bootstrap(BootstrapRequest(body, &d.idevid));
        if (r.status == 200) ++ok;
        if (r.status == 409) {
          EXPECT_NE(r.body.find("bootstrap token already used"), std::string::npos) << r.body;
          ++replayed;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 1) << "round " << round;
    EXPECT_EQ(replayed.load(), kThreads - 1) << "round " << round;
    EXPECT_EQ(authority_->store().ListCertificatesForDevice(id)->size(), 2u);  // IDevID + 1
  }
  // The losers were refused before the CA signed anything for them: only the winners' batches
  // reached the store, and no merged commit failed over a duplicate token.
  auto stats = service_->committer().stats();
  EXPECT_EQ(stats.batches, 5u);
  EXPECT_EQ(stats.fallbacks, 0u);
}

TEST_F(ServiceTest, TokenOfARefusedRequestIsNotConsumed) {
  Dev d = Provision("SN-P");
  std::string id = d.idevid.common_name();
  ASSERT_TRUE(authority_->store().Commit(store::WriteBatch().UpdateDeviceState(
      id, store::DeviceState::kManufactured, store::DeviceState::kSuspended)));
  int64_t ts = clock_.NowUnix();
  auto refused = service_->Bootstrap(BootstrapRequest(Json(d, NewCsr(id), ts), &d.idevid));
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(*authority_->store().IsTokenRecorded(id, ts), false);
  ASSERT_TRUE(authority_->store().Commit(store::WriteBatch().UpdateDeviceState(
      id, store::DeviceState::kSuspended, store::DeviceState::kManufactured)));
  // The same token, with a new CSR, once the device may enroll: issued, and then spent.
  auto issued = service_->Bootstrap(BootstrapRequest(Json(d, NewCsr(id), ts), &d.idevid));
  EXPECT_EQ(issued.status, 200) << issued.body;
  EXPECT_EQ(*authority_->store().IsTokenRecorded(id, ts), true);
  EXPECT_EQ(service_->Bootstrap(BootstrapRequest(Json(d, NewCsr(id), ts), &d.idevid)).status, 409);
}

// --- Revocation, renewal bound to the current working certificate, re-entry after expiry ---

class LifecycleTest : public ServiceTest {
 protected:
  // The device's LDevIDs as issued, oldest first (the clock moves between issuances).
  std::vector<x509::Certificate> Ldevids(const std::string& id) {
    std::vector<x509::Certificate> out;
    auto certs = authority_->store().ListCertificatesForDevice(id);
    EXPECT_TRUE(certs);
    for (const auto& c : *certs) {
      if (c.profile == store::CertProfile::kLDevId)
        out.push_back(*x509::Certificate::FromDer(c.der));
    }
    return out;
  }
  // A working certificate for a new device, issued by simpleenroll.
  x509::Certificate Enroll(const Dev& d) {
    auto r = service_->SimpleEnroll(Est(&d.idevid, NewCsr(d.idevid.common_name())));
    EXPECT_EQ(r.status, 200) << r.body;
    clock_.Advance(std::chrono::seconds(60));
    return Ldevids(d.idevid.common_name()).back();
  }
  // simplereenroll with `current` (rekey, with a new key unless `key` is given); the status,
  // and the clock moved on.
  int Reenroll(const x509::Certificate& current, std::string* body = nullptr,
               const crypto::PrivateKey* key = nullptr) {
    x509::NameFields subject{.organization = current.organization(),
                             .common_name = current.common_name(),
                             .serial_number = current.serial_number()};
    crypto::PrivateKey k = key ? *key : *crypto::PrivateKey::Generate();
    auto csr = x509::MakeCsr(k, subject, current.subject_alt_names());
    EXPECT_TRUE(csr);
    auto request = Est(&current, *csr, /*issuer_index=*/1);
    request.path = "/.well-known/est/simplereenroll";
    auto r = service_->SimpleReenroll(request);
    if (body != nullptr) *body = r.body;
    clock_.Advance(std::chrono::seconds(60));
    return r.status;
  }
  store::CertificateRecord Record(const x509::Certificate& c) {
    return *authority_->store().GetCertificate(c.serial_hex());
  }
  size_t AuditCount(const std::string& action) {
    size_t n = 0;
    auto rows = authority_->store().ReadAudit(1, store::kMaxPageSize);
    EXPECT_TRUE(rows);
    for (const auto& r : *rows) {
      n += r.action == action;
    }
    return n;
  }
};

TEST_F(LifecycleTest, RevokedClientCertificateIsRefusedAtOnceOthersStillRenew) {
  Dev a = Provision("SN-RA"), b = Provision("SN-RB");
  x509::Certificate la = Enroll(a), lb = Enroll(b);
  ASSERT_TRUE(ca::RevokeSerial(authority_->store(), clock_, la.serial_hex(),
                               store::RevocationReason::kKeyCompromise, "cli:test"));
  std::string body;
  EXPECT_EQ(Reenroll(la, &body), 403);
  EXPECT_NE(body.find("revoked (keyCompromise)"), std::string::npos) << body;
  EXPECT_EQ(Ldevids(a.idevid.common_name()).size(), 1u);  // nothing issued
  EXPECT_EQ(Reenroll(lb), 200);
  EXPECT_EQ(
      metrics_.CounterValue("iotpki_enroll_refusals_total",
                            {{"endpoint", "est_simplereenroll"}, {"reason", "permission_denied"}}),
      1u);

  // A revoked IDevID: simpleenroll and the JSON API refuse it the same way.
  Dev c = Provision("SN-RC");
  ASSERT_TRUE(ca::RevokeSerial(authority_->store(), clock_, c.idevid.serial_hex(),
                               store::RevocationReason::kKeyCompromise, "cli:test"));
  EXPECT_EQ(service_->SimpleEnroll(Est(&c.idevid, NewCsr(c.idevid.common_name()))).status, 403);
  server::Request json{.method = "POST",
                       .path = "/api/v1/bootstrap",
                       .content_type = "application/json",
                       .body = Json(c, NewCsr(c.idevid.common_name(), &c.key), clock_.NowUnix())};
  EXPECT_EQ(service_->Bootstrap(json).status, 403);
}

TEST_F(LifecycleTest, CopiedOldLdevidIsRefusedOnceTheRenewalIsUsed) {
  Dev d = Provision("SN-CP");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  ASSERT_EQ(Reenroll(l1), 200);  // l2 issued; l1 still valid until l2 is seen in use
  x509::Certificate l2 = Ldevids(id).back();
  EXPECT_EQ(Record(l1).status, store::CertStatus::kValid);
  ASSERT_EQ(Reenroll(l2), 200);  // the device uses l2: l1 is retired
  EXPECT_EQ(Record(l1).status, store::CertStatus::kRevoked);
  EXPECT_EQ(Record(l1).revocation_reason, store::RevocationReason::kSuperseded);
  EXPECT_TRUE(Record(l2).first_used_at.has_value());
  std::string body;
  EXPECT_EQ(Reenroll(l1, &body), 403);  // the copy kept by an attacker
  EXPECT_NE(body.find("revoked (superseded)"), std::string::npos) << body;
  EXPECT_EQ(Ldevids(id).size(), 3u);
}

TEST_F(LifecycleTest, FirstUseAndTheRenewalAreOneTransaction) {
  // A rotation re-enrolls with a working certificate the server has not seen in use: its first
  // use, the revocations it brings and the renewal are one commit (one fsync), not two.
  Dev d = Provision("SN-ONE");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  ASSERT_EQ(Reenroll(l1), 200);  // l2, never used
  x509::Certificate l2 = Ldevids(id).back();
  uint64_t before = service_->committer().stats().transactions;
  ASSERT_EQ(Reenroll(l2), 200);  // first use of l2: l1 retired, l3 issued
  EXPECT_EQ(service_->committer().stats().transactions - before, 1u);
  EXPECT_TRUE(Record(l2).first_used_at.has_value());
  EXPECT_EQ(Record(l1).status, store::CertStatus::kRevoked);
  EXPECT_EQ(Ldevids(id).size(), 3u);
  EXPECT_TRUE(store::VerifyAuditChain(authority_->store())->intact);
}

TEST_F(LifecycleTest, FirstUseStandsWhenTheRenewalIsRefused) {
  Dev d = Provision("SN-FU"), other = Provision("SN-FU2");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  ASSERT_EQ(Reenroll(l1), 200);  // l2, never used
  x509::Certificate l2 = Ldevids(id).back();
  // Another device's key: the CA refuses the renewal, but l2 was used, so l1 is retired.
  std::string body;
  EXPECT_EQ(Reenroll(l2, &body, &other.key), 409) << body;
  EXPECT_EQ(Ldevids(id).size(), 2u);
  EXPECT_TRUE(Record(l2).first_used_at.has_value());
  EXPECT_EQ(Record(l1).status, store::CertStatus::kRevoked);
  EXPECT_EQ(Record(l1).revocation_reason, store::RevocationReason::kSuperseded);
  EXPECT_TRUE(store::VerifyAuditChain(authority_->store())->intact);
}

TEST_F(LifecycleTest, DeviceThatLostItsRenewalRenewsWithTheOldOne) {
  Dev d = Provision("SN-LOST");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  ASSERT_EQ(Reenroll(l1), 200);
  x509::Certificate lost = Ldevids(id).back();
  // The device crashed before installing `lost`, and renews with l1 again.
  ASSERT_EQ(Reenroll(l1), 200);
  x509::Certificate l3 = Ldevids(id).back();
  EXPECT_EQ(Record(lost).status, store::CertStatus::kRevoked);  // replaced, never used
  EXPECT_EQ(Record(lost).revocation_reason, store::RevocationReason::kSuperseded);
  EXPECT_EQ(Record(l1).status, store::CertStatus::kValid);
  ASSERT_EQ(Reenroll(l3), 200);
  EXPECT_EQ(Record(l1).status, store::CertStatus::kRevoked);
  // Every revocation has its audit row.
  EXPECT_EQ(AuditCount("cert.revoke"), 2u);
}

TEST_F(LifecycleTest, OnlyTheNewestOrTheOneBeforeMayRenew) {
  Dev d = Provision("SN-OLD");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  // Two more working certificates by simpleenroll (a device in service enrolling again); none
  // of them used yet.
  Enroll(d);
  Enroll(d);
  std::string body;
  EXPECT_EQ(Reenroll(l1, &body), 403);
  EXPECT_NE(body.find("not the device's current working certificate"), std::string::npos) << body;
  // The newest renews, and its first use retires the two before it.
  x509::Certificate newest = Ldevids(id).back();
  ASSERT_EQ(Reenroll(newest), 200);
  EXPECT_EQ(Record(l1).status, store::CertStatus::kRevoked);
  EXPECT_EQ(Record(Ldevids(id)[1]).status, store::CertStatus::kRevoked);
}

TEST_F(LifecycleTest, ExpiredDeviceReentersWithItsIdevidWithinThePolicy) {
  Dev d = Provision("SN-EXP");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  // Offline past the LDevID's expiry, by 100 days.
  clock_.Set(l1.not_after() + 100 * 86400);
  auto r = service_->SimpleEnroll(Est(&d.idevid, NewCsr(id)));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(AuditCount("cert.reentry"), 1u);
  // The JSON API too, for another device, a year and a day late: refused.
  Dev e = Provision("SN-EXP2");
  x509::Certificate le = Enroll(e);
  clock_.Set(le.not_after() + 366 * 86400);
  server::Request json{.method = "POST",
                       .path = "/api/v1/bootstrap",
                       .content_type = "application/json",
                       .body = Json(e, NewCsr(e.idevid.common_name(), &e.key), clock_.NowUnix())};
  auto late = service_->Bootstrap(json);
  EXPECT_EQ(late.status, 403) << late.body;
  EXPECT_NE(late.body.find("reentry_max_days_expired"), std::string::npos) << late.body;
  EXPECT_EQ(AuditCount("cert.reentry"), 1u);
}

TEST_F(LifecycleTest, KeyCompromiseBarsReentry) {
  Dev d = Provision("SN-KC");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  ASSERT_TRUE(ca::RevokeDevice(authority_->store(), clock_, id, /*all=*/false,
                               store::RevocationReason::kKeyCompromise, "cli:test"));
  auto r = service_->SimpleEnroll(Est(&d.idevid, NewCsr(id)));
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("keyCompromise"), std::string::npos) << r.body;
  EXPECT_EQ(Ldevids(id).size(), 1u);
  EXPECT_EQ(AuditCount("cert.reentry"), 0u);
}

TEST_F(LifecycleTest, ReentryRefusedWhenThePolicySaysZero) {
  Dev d = Provision("SN-Z");
  std::string id = d.idevid.common_name();
  x509::Certificate l1 = Enroll(d);
  // A CA whose policy refuses re-entry, over the same directory and store.
  ca::CaConfig config = authority_->config();
  config.reentry_max_days_expired = 0;
  ASSERT_TRUE(ca::SaveConfig(base_ / "ca", config));
  service_.reset();
  authority_.reset();
  auto a = ca::Authority::Open(base_ / "ca", clock_);
  ASSERT_TRUE(a);
  authority_ = std::move(*a);
  ASSERT_TRUE(authority_->Unlock(ca::CaName::kManufacturing, kPass));
  ASSERT_TRUE(authority_->Unlock(ca::CaName::kOperational, kPass));
  ASSERT_TRUE(authority_->UnlockBootstrap(kPass));
  service_ = std::move(*EnrollService::Create(*authority_, metrics_, {}));
  clock_.Set(l1.not_after() + 86400);
  auto r = service_->SimpleEnroll(Est(&d.idevid, NewCsr(id)));
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("reentry_max_days_expired = 0"), std::string::npos) << r.body;
}

// The SPKI of `key` with its point in SEC1 form `form`: 0x04 uncompressed, 0x02 compressed,
// 0x06 hybrid (the parity bits of 0x02/0x06 follow y).
Bytes SpkiInForm(const crypto::PublicKey& key, uint8_t form) {
  Bytes point = key.Sec1Point(form == 0x02);
  if (form != 0x04) point[0] = static_cast<uint8_t>(form | (key.Sec1Point(false).back() & 1));
  return crypto::EncodeEcSpki(key.type(), point);
}

x509::Csr CsrWithSpki(const crypto::PrivateKey& key, ByteView spki, const x509::NameFields& name) {
  auto csr = x509::Csr::FromDer(x509::testing::RawCsrDer(key, spki, name));
  EXPECT_TRUE(csr) << csr.error().ToString();
  EXPECT_TRUE(csr->VerifySignature());
  return *csr;
}

bool Contains(const Bytes& haystack, const Bytes& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

TEST_F(ServiceTest, EstRefusesTheSameKeyInEveryPointForm) {
  Dev d = Provision("SN-F1");
  Dev other = Provision("SN-F2");
  std::string id = d.idevid.common_name();
  for (uint8_t form : {0x04, 0x02, 0x06}) {
    // The IDevID's own key: 403, whichever way the point is written.
    auto own = service_->SimpleEnroll(Est(
        &d.idevid, CsrWithSpki(d.key, SpkiInForm(d.key.public_key(), form), {.common_name = id})));
    EXPECT_EQ(own.status, 403) << "form " << int{form} << ": " << own.body;
    EXPECT_NE(own.body.find("IDevID's key"), std::string::npos) << own.body;
    // Another device's key: 409, the key-compromise twin found by its fingerprint.
    auto twin = service_->SimpleEnroll(
        Est(&d.idevid,
            CsrWithSpki(other.key, SpkiInForm(other.key.public_key(), form), {.common_name = id})));
    EXPECT_EQ(twin.status, 409) << "form " << int{form} << ": " << twin.body;
  }
  EXPECT_EQ(authority_->store().GetDevice(id)->state, store::DeviceState::kManufactured);
  EXPECT_EQ(authority_->store().ListCertificatesForDevice(id)->size(), 1u);
}

TEST_F(ServiceTest, JsonKeyIdentityIgnoresThePointForm) {
  Dev a = Provision("SN-F3");
  Dev b = Provision("SN-F4");
  std::string id_b = b.idevid.common_name();
  int64_t ts = clock_.NowUnix();
  for (uint8_t form : {0x04, 0x02, 0x06}) {
    // Device b asks for a working certificate on device a's key.
    x509::Csr csr = CsrWithSpki(a.key, SpkiInForm(a.key.public_key(), form), {.common_name = id_b});
    auto r = service_->Bootstrap(BootstrapRequest(Json(b, csr, ts--), &b.idevid));
    EXPECT_EQ(r.status, 409) << "form " << int{form} << ": " << r.body;
  }
  EXPECT_EQ(authority_->store().ListCertificatesForDevice(id_b)->size(), 1u);

  // Without a client certificate the CSR proves possession of the IDevID key: a compressed
  // point is that key, and the certificate carries it uncompressed.
  std::string id_a = a.idevid.common_name();
  Bytes compressed = SpkiInForm(a.key.public_key(), 0x02);
  auto r = service_->Bootstrap(BootstrapRequest(
      Json(a, CsrWithSpki(a.key, compressed, {.common_name = id_a}), clock_.NowUnix()), nullptr));
  ASSERT_EQ(r.status, 200) << r.body;
  Bytes der = *Base64Decode(nlohmann::json::parse(r.body)["certificate"].get<std::string>());
  EXPECT_TRUE(Contains(der, a.key.public_key().ToDer()));
  EXPECT_FALSE(Contains(der, compressed));
  auto records = authority_->store().ListCertificatesForDevice(id_a);
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ(records->at(0).key_fingerprint, records->at(1).key_fingerprint);
}

TEST_F(ServiceTest, ACsrNamingAnotherDeviceIsRefusedOnEveryPath) {
  Dev d = Provision("SN-N1");
  Dev other = Provision("SN-N2");
  std::string id = d.idevid.common_name();
  std::vector<x509::NameFields> names = {
      {.common_name = other.idevid.common_name()},
      {.common_name = id, .serial_number = "SN-N2"},
      {.serial_number = "SN-N2"},
  };
  int64_t ts = clock_.NowUnix();
  for (const auto& name : names) {
    auto est = service_->SimpleEnroll(
        Est(&d.idevid, *x509::MakeCsr(*crypto::PrivateKey::Generate(), name)));
    EXPECT_EQ(est.status, 403) << est.body;
    auto tls = service_->Bootstrap(BootstrapRequest(
        Json(d, *x509::MakeCsr(*crypto::PrivateKey::Generate(), name), ts--), &d.idevid));
    EXPECT_EQ(tls.status, 403) << tls.body;
    auto no_tls =
        service_->Bootstrap(BootstrapRequest(Json(d, *x509::MakeCsr(d.key, name), ts--), nullptr));
    EXPECT_EQ(no_tls.status, 403) << no_tls.body;
    EXPECT_EQ(tls.body.substr(0, tls.body.find("request_id")),
              no_tls.body.substr(0, no_tls.body.find("request_id")));
  }
  EXPECT_EQ(authority_->store().ListCertificatesForDevice(id)->size(), 1u);
  // The device's own name, or none, is accepted.
  auto ok = service_->Bootstrap(BootstrapRequest(
      Json(d, *x509::MakeCsr(d.key, {.common_name = id, .serial_number = "SN-N1"}), ts--),
      nullptr));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(ServiceTest, JsonChecksTheTokenBeforeTheCertificateChain) {
  Dev d = Provision("SN-V1");
  std::string id = d.idevid.common_name();
  // device_cert is the operational CA's own certificate: no IDevID, and its chain fails against
  // the manufacturing CA. With a wrong token the answer is the token's, computed first.
  std::string body =
      nlohmann::json(
          {{"device_id", id},
           {"csr", Base64Encode(NewCsr(id, &d.key).ToDer())},
           {"device_cert", Base64Encode(authority_->certificate(ca::CaName::kOperational).ToDer())},
           {"timestamp", clock_.NowUnix()},
           {"token", std::string(64, '0')}})
          .dump();
  auto r = service_->Bootstrap(BootstrapRequest(body, nullptr));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("invalid bootstrap token"), std::string::npos) << r.body;
  // With the right token, the chain is what fails.
  std::string token =
      ca::BootstrapToken(authority_->BootstrapSecret(id)->bytes(), id, clock_.NowUnix());
  auto j = nlohmann::json::parse(body);
  j["token"] = token;
  r = service_->Bootstrap(BootstrapRequest(j.dump(), nullptr));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("not a valid IDevID"), std::string::npos) << r.body;
}

TEST_F(ServiceTest, MalformedCsrExtensionsAreRefusedWith400) {
  Dev d = Provision("SN-X1");
  std::string id = d.idevid.common_name();
  auto key = *crypto::PrivateKey::Generate();
  Bytes ku = x509::internal::EncodeExtension(x509::internal::kOidKeyUsage, true,
                                             x509::internal::EncodeKeyUsage(0x80));
  Bytes big = x509::internal::EncodeExtension("1.3.6.1.4.1.99999.1", false,
                                              der::OctetString(Bytes(40 * 1024, 'a')));
  int64_t ts = clock_.NowUnix();
  for (const Bytes& attrs :
       {x509::testing::ExtensionRequest({ku, ku}), x509::testing::ExtensionRequest({big})}) {
    Bytes der = x509::testing::RawCsrDer(key, key.public_key().ToDer(), {.common_name = id}, attrs);
    server::Request est = Est(&d.idevid, NewCsr(id));
    est.body = Base64Encode(der);
    auto r = service_->SimpleEnroll(est);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("extension"), std::string::npos) << r.body;
    std::string body = Json(d, NewCsr(id), ts--);
    auto j = nlohmann::json::parse(body);
    j["csr"] = Base64Encode(der);
    auto json = service_->Bootstrap(BootstrapRequest(j.dump(), &d.idevid));
    EXPECT_EQ(json.status, 400) << json.body;
  }
  EXPECT_EQ(authority_->store().ListCertificatesForDevice(id)->size(), 1u);
}

TEST_F(ServiceTest, TheIDevIDKeyIsRefusedWithOneStatusOnBothEstEndpoints) {
  Dev d = Provision("SN-K1");
  std::string id = d.idevid.common_name();
  auto issued = service_->Bootstrap(BootstrapRequest(Json(d, NewCsr(id), clock_.NowUnix()),
                                                     &d.idevid));  // a new key, over mutual TLS
  ASSERT_EQ(issued.status, 200) << issued.body;
  auto ldevid = x509::Certificate::FromDer(
      *Base64Decode(nlohmann::json::parse(issued.body)["certificate"].get<std::string>()));
  ASSERT_TRUE(ldevid);
  auto csr =
      x509::MakeCsr(d.key, {.organization = "Acme", .common_name = id, .serial_number = "SN-K1"});
  ASSERT_TRUE(csr);
  ASSERT_EQ(csr->subject(), ldevid->subject());
  auto reenroll = service_->SimpleReenroll(Est(&*ldevid, *csr, /*issuer_index=*/1));
  EXPECT_EQ(reenroll.status, 403) << reenroll.body;
  EXPECT_NE(reenroll.body.find("birth"), std::string::npos) << reenroll.body;
  auto enroll = service_->SimpleEnroll(Est(&d.idevid, NewCsr(id, &d.key)));
  EXPECT_EQ(enroll.status, 403) << enroll.body;
}

// ---------------------------------------------------------------------------------------------
// serverkeygen (RFC 7030 4.4).

// The base64 content of each part of a serverkeygen answer, with its Content-Type.
std::vector<std::pair<std::string, Bytes>> Parts(const std::string& body) {
  std::vector<std::pair<std::string, Bytes>> parts;
  const std::string delimiter = std::string("--") + kServerKeygenBoundary;
  size_t at = 0;
  while ((at = body.find(delimiter, at)) != std::string::npos) {
    at += delimiter.size();
    if (body.compare(at, 2, "--") == 0) break;
    size_t headers_end = body.find("\r\n\r\n", at);
    size_t next = body.find(delimiter, at);
    if (headers_end == std::string::npos || next == std::string::npos) break;
    std::string headers = body.substr(at, headers_end - at);
    size_t ct = headers.find("Content-Type: ");
    std::string type = headers.substr(ct + 14, headers.find("\r\n", ct) - ct - 14);
    auto der = Base64Decode(body.substr(headers_end + 4, next - headers_end - 4));
    parts.emplace_back(type, der ? *der : Bytes());
  }
  return parts;
}

server::Request Keygen(const x509::Certificate* client, const x509::Csr& csr,
                       int issuer_index = 0) {
  server::Request r{.method = "POST",
                    .path = "/.well-known/est/serverkeygen",
                    .content_type = "application/pkcs10",
                    .body = Base64Encode(csr.ToDer())};
  if (client) {
    r.client_cert = server::ClientCertificate{
        .certificate = *client, .chain_valid = true, .issuer_index = issuer_index};
  }
  return r;
}

TEST_F(ServiceTest, ServerKeygenSealsANewKeyToTheIdevidAndIssuesItsCertificate) {
  Dev d = Provision("SN-SKG1");
  std::string id = d.idevid.common_name();
  // The CSR's key is ignored: a device without a good random source may send its IDevID's.
  auto r = service_->ServerKeygen(Keygen(&d.idevid, NewCsr(id, &d.key)));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "multipart/mixed; boundary=iotpki-est-serverkeygen");
  auto parts = Parts(r.body);
  ASSERT_EQ(parts.size(), 2u) << r.body;
  EXPECT_EQ(parts[0].first, "application/pkcs7-mime; smime-type=server-generated-key");
  EXPECT_EQ(parts[1].first, "application/pkcs7-mime; smime-type=certs-only");

  // RFC 7030 4.4.2: the key package is signed by this server (its TLS certificate), then sealed.
  auto opened = x509::OpenKeyPackage(parts[0].second, d.key, d.idevid);
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ(opened->signer.ToDer(), server_chain_[0].ToDer());
  auto key = crypto::PrivateKey::FromDer(opened->pkcs8.bytes());
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(key->public_key().type(), crypto::KeyType::kP256);

  const unsigned char* p = parts[1].second.data();
  auto p7 = ossl::Own(d2i_PKCS7(nullptr, &p, static_cast<long>(parts[1].second.size())));
  ASSERT_TRUE(p7 && PKCS7_type_is_signed(p7.get()));
  ASSERT_EQ(sk_X509_num(p7->d.sign->cert), 1);
  auto cert = x509::Certificate::FromDer(ossl::ToDer(sk_X509_value(p7->d.sign->cert, 0), i2d_X509));
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->public_key(), key->public_key());
  EXPECT_FALSE(cert->public_key() == d.idevid.public_key());
  EXPECT_EQ(cert->common_name(), id);
  EXPECT_EQ(cert->issuer(), authority_->certificate(ca::CaName::kOperational).subject());

  // Durable and audited like simpleenroll; the device is active.
  EXPECT_EQ(authority_->store().GetDevice(id)->state, store::DeviceState::kActive);
  auto stored = authority_->store().GetCertificate(cert->serial_hex());
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->profile, store::CertProfile::kLDevId);
  EXPECT_EQ(metrics_.CounterValue("iotpki_certificates_issued_total", {{"profile", "ldevid"}}), 1u);
  // The key never appears in the clear in the answer.
  Bytes pkcs8 = *key->ToDer();
  std::string raw(r.body);
  EXPECT_EQ(raw.find(Base64Encode(pkcs8).substr(0, 40)), std::string::npos);

  // Another IDevID cannot open the envelope.
  Dev other = Provision("SN-SKG2");
  EXPECT_FALSE(x509::OpenKeyPackage(parts[0].second, other.key, other.idevid));
}

// The certificate and the opened key of a serverkeygen answer.
std::pair<x509::Certificate, crypto::PrivateKey> Opened(const server::Response& r,
                                                        const crypto::PrivateKey& idevid_key,
                                                        const x509::Certificate& idevid) {
  auto parts = Parts(r.body);
  EXPECT_EQ(parts.size(), 2u);
  auto opened = x509::OpenKeyPackage(parts.at(0).second, idevid_key, idevid);
  EXPECT_TRUE(opened);
  auto key = crypto::PrivateKey::FromDer(opened->pkcs8.bytes());
  const unsigned char* p = parts.at(1).second.data();
  auto p7 = ossl::Own(d2i_PKCS7(nullptr, &p, static_cast<long>(parts[1].second.size())));
  auto cert = x509::Certificate::FromDer(ossl::ToDer(sk_X509_value(p7->d.sign->cert, 0), i2d_X509));
  return {*cert, *key};
}

TEST_F(ServiceTest, ServerKeygenRetiresEarlierWorkingCertificatesLikeSimpleEnroll) {
  Dev d = Provision("SN-SKG3");
  std::string id = d.idevid.common_name();
  auto first = service_->SimpleEnroll(Est(&d.idevid, NewCsr(id)));
  ASSERT_EQ(first.status, 200) << first.body;
  auto r = service_->ServerKeygen(Keygen(&d.idevid, NewCsr(id)));
  ASSERT_EQ(r.status, 200) << r.body;
  auto [ldevid, key] = Opened(r, d.key, d.idevid);
  // As after a second simpleenroll: once the new LDevID is used (here to renew with the key the
  // server made), the one before it is revoked (superseded).
  auto csr = x509::MakeCsr(key, {.organization = ldevid.organization(),
                                 .common_name = id,
                                 .serial_number = ldevid.serial_number()});
  ASSERT_TRUE(csr);
  auto renewed = service_->SimpleReenroll(Est(&ldevid, *csr, /*issuer_index=*/1));
  EXPECT_EQ(renewed.status, 200) << renewed.body;
  auto records = authority_->store().ListCertificatesForDevice(id);
  ASSERT_TRUE(records);
  // Named outside the lambda: clang 14 cannot capture a structured binding.
  const std::string sealed_serial = ldevid.serial_hex();
  size_t superseded = std::count_if(records->begin(), records->end(), [&](const auto& rec) {
    return rec.profile == store::CertProfile::kLDevId &&
           rec.status == store::CertStatus::kRevoked && rec.serial != sealed_serial &&
           rec.revocation_reason == store::RevocationReason::kSuperseded;
  });
  EXPECT_EQ(superseded, 1u);  // simpleenroll's LDevID
}

TEST_F(ServiceTest, ServerKeygenRefusalsIssueNothing) {
  Dev d = Provision("SN-SKG4");
  std::string id = d.idevid.common_name();
  // No client certificate: 401.
  auto anonymous = service_->ServerKeygen(Keygen(nullptr, NewCsr(id)));
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  // A working certificate instead of the IDevID: 403.
  EXPECT_EQ(service_->ServerKeygen(Keygen(&d.idevid, NewCsr(id), /*issuer_index=*/1)).status, 403);
  // A CSR naming another device: 403.
  EXPECT_EQ(service_->ServerKeygen(Keygen(&d.idevid, NewCsr(std::string(64, 'b')))).status, 403);
  // A CSR whose signature does not verify: 400.
  auto signer = *crypto::PrivateKey::Generate();
  auto other = *crypto::PrivateKey::Generate();
  auto forged = x509::Csr::FromDer(
      x509::testing::RawCsrDer(signer, other.public_key().ToDer(), {.common_name = id}));
  ASSERT_TRUE(forged);
  auto bad_sig = service_->ServerKeygen(Keygen(&d.idevid, *forged));
  EXPECT_EQ(bad_sig.status, 400) << bad_sig.body;
  EXPECT_NE(bad_sig.body.find("signature"), std::string::npos) << bad_sig.body;
  // Not a CSR, or the wrong media type.
  auto garbage = Keygen(&d.idevid, NewCsr(id));
  garbage.body = "@@@";
  EXPECT_EQ(service_->ServerKeygen(garbage).status, 400);
  auto wrong_type = Keygen(&d.idevid, NewCsr(id));
  wrong_type.content_type = "application/json";
  EXPECT_EQ(service_->ServerKeygen(wrong_type).status, 415);

  // An IDevID whose key is not P-256 cannot have a key sealed to it: a clear 403. Our IDevID
  // profile only signs P-256 keys; another manufacturer's CA (trusted by the TLS layer, here
  // simulated) may not.
  x509::Policy policy;
  auto p384 = x509::testing::NewKey(crypto::KeyType::kP384);
  std::string other_id(64, 'c');
  auto p384_cert = x509::testing::MakeRoot(p384, policy, other_id);
  auto not_p256 = service_->ServerKeygen(Keygen(&p384_cert, NewCsr(other_id)));
  EXPECT_EQ(not_p256.status, 403) << not_p256.body;
  EXPECT_NE(not_p256.body.find("P-256"), std::string::npos) << not_p256.body;

  // A server with no key to sign key packages with: 503, nothing issued.
  auto unsigned_service = EnrollService::Create(*authority_, metrics_, {});
  ASSERT_TRUE(unsigned_service);
  EXPECT_EQ((*unsigned_service)->ServerKeygen(Keygen(&d.idevid, NewCsr(id))).status, 503);

  EXPECT_EQ(authority_->store().GetDevice(id)->state, store::DeviceState::kManufactured);
  EXPECT_EQ(metrics_.CounterValue("iotpki_certificates_issued_total", {{"profile", "ldevid"}}), 0u);
}

// --- Rotation: the job records the re-enrollment; the device confirms with the new certificate

class RotationTest : public LifecycleTest {
 protected:
  // A running campaign over `devices`, each job notified (attempt 1).
  store::Campaign Campaign(const std::string& name, const std::vector<std::string>& devices,
                           int64_t max_attempts = 3, bool notify = true) {
    auto created = authority_->store().CreateCampaign(
        {.name = name, .filter_json = "{}", .max_attempts = max_attempts, .deadline = kFar},
        {.device_ids = devices}, {.actor = "test", .action = "campaign.create", .subject = name},
        false, 0);
    EXPECT_TRUE(created) << created.error().ToString();
    for (int64_t i = 0; notify && i < static_cast<int64_t>(devices.size()); ++i) {
      EXPECT_TRUE(authority_->store().Commit(
          store::WriteBatch().UpdateJob({.campaign_id = created->campaign.id,
                                         .ordinal = i,
                                         .from = store::JobState::kPending,
                                         .to = store::JobState::kNotified,
                                         .attempts = 1,
                                         .next_attempt_at = clock_.NowUnix() + 3600})));
    }
    return created->campaign;
  }
  store::Job Job(const store::Campaign& c, int64_t ordinal) {
    return *authority_->store().GetJob(c.id, ordinal);
  }
  server::Response Answer(const x509::Certificate* client, const std::string& device_id,
                          const std::string& body, int issuer_index = 1) {
    server::Request r{.method = "POST",
                      .path = "/api/v1/devices/" + device_id + "/rotation",
                      .content_type = "application/json",
                      .body = body,
                      .params = {device_id}};
    if (client) {
      r.client_cert = server::ClientCertificate{
          .certificate = *client, .chain_valid = true, .issuer_index = issuer_index};
    }
    return service_->ConfirmRotation(r);
  }
  static std::string Body(const std::string& campaign, int64_t job, const std::string& status,
                          const std::string& reason = "") {
    nlohmann::json j = {{"campaign", campaign}, {"job", job}, {"status", status}};
    if (!reason.empty()) j["reason"] = reason;
    return j.dump();
  }
  static constexpr int64_t kFar = int64_t{1} << 40;
};

TEST_F(RotationTest, ReenrollRecordsTheJobAndOnlyTheNewCertificateConfirmsIt) {
  Dev a = Provision("SN-RO1"), b = Provision("SN-RO2");
  std::string ida = a.idevid.common_name(), idb = b.idevid.common_name();
  x509::Certificate old_a = Enroll(a), lb = Enroll(b);
  auto c = Campaign("rot", {ida, idb});
  ASSERT_EQ(Job(c, 0).old_serial, old_a.serial_hex());

  ASSERT_EQ(Reenroll(old_a), 200);
  x509::Certificate new_a = Ldevids(ida).back();
  store::Job job = Job(c, 0);
  EXPECT_EQ(job.state, store::JobState::kEnrolled);
  EXPECT_EQ(job.new_serial, new_a.serial_hex());
  EXPECT_EQ(AuditCount("campaign.job.enrolled"), 1u);

  const std::string ok = Body("rot", 0, "installed");
  // Refusals: each a clear 4xx, nothing changed.
  EXPECT_EQ(Answer(&old_a, ida, ok).status, 403);        // the certificate it replaces
  EXPECT_EQ(Answer(&lb, ida, ok).status, 403);           // another device's certificate
  EXPECT_EQ(Answer(&new_a, idb, ok).status, 403);        // the new one, for another device
  EXPECT_EQ(Answer(&a.idevid, ida, ok, 0).status, 403);  // the birth certificate
  EXPECT_EQ(Answer(nullptr, ida, ok).status, 401);       // no certificate
  EXPECT_EQ(Answer(&new_a, ida, Body("rot", 7, "installed")).status, 404);   // no such job
  EXPECT_EQ(Answer(&new_a, ida, Body("nope", 0, "installed")).status, 404);  // no campaign
  EXPECT_EQ(Answer(&new_a, ida, Body("rot", 1, "installed")).status, 404);   // b's job
  EXPECT_EQ(Answer(&new_a, ida, "{\"campaign\":\"rot\"").status, 400);
  EXPECT_EQ(Answer(&new_a, ida, Body("rot", 0, "done")).status, 400);
  EXPECT_EQ(Answer(&new_a, ida, R"({"campaign":"rot","job":-1,"status":"installed"})").status, 400);
  server::Request text{
      .method = "POST",
      .content_type = "text/plain",
      .body = ok,
      .client_cert =
          server::ClientCertificate{.certificate = new_a, .chain_valid = true, .issuer_index = 1},
      .params = {ida}};
  EXPECT_EQ(service_->ConfirmRotation(text).status, 415);
  EXPECT_EQ(Record(old_a).status, store::CertStatus::kValid) << "refusals change nothing";
  EXPECT_EQ(Job(c, 0).state, store::JobState::kEnrolled);
  EXPECT_EQ(AuditCount("campaign.job.confirmed"), 0u);
}

TEST_F(RotationTest, ConfirmationRevokesTheOldCertificateInOneStepAndRepeatsIdempotently) {
  Dev a = Provision("SN-RC1");
  std::string ida = a.idevid.common_name();
  x509::Certificate old_a = Enroll(a);
  auto c = Campaign("rot2", {ida});
  ASSERT_EQ(Reenroll(old_a), 200);
  x509::Certificate new_a = Ldevids(ida).back();
  EXPECT_EQ(Record(old_a).status, store::CertStatus::kValid) << "valid until confirmed";

  auto r = Answer(&new_a, ida, Body("rot2", 0, "installed"));
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["state"], "confirmed");
  EXPECT_EQ(j["revoked"], nlohmann::json::array({old_a.serial_hex()}));
  EXPECT_EQ(Job(c, 0).state, store::JobState::kConfirmed);
  auto old_rec = Record(old_a);
  EXPECT_EQ(old_rec.status, store::CertStatus::kRevoked);
  EXPECT_EQ(old_rec.revocation_reason, store::RevocationReason::kSuperseded);
  EXPECT_TRUE(Record(new_a).first_used_at);
  EXPECT_EQ(AuditCount("campaign.job.confirmed"), 1u);
  EXPECT_EQ(AuditCount("cert.revoke"), 1u);

  // The same serial again (its answer was lost): 200, nothing more written.
  auto again = Answer(&new_a, ida, Body("rot2", 0, "installed"));
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(AuditCount("campaign.job.confirmed"), 1u);
  // A final job takes no other answer; the old certificate is refused as revoked.
  EXPECT_EQ(Answer(&new_a, ida, Body("rot2", 0, "failed", "late")).status, 409);
  EXPECT_EQ(Answer(&old_a, ida, Body("rot2", 0, "installed")).status, 403);
}

TEST_F(RotationTest, ReportedFailureRetriesThenFailsAndRetiresTheUninstalledCertificate) {
  Dev a = Provision("SN-RF1");
  std::string ida = a.idevid.common_name();
  x509::Certificate old_a = Enroll(a);
  auto c = Campaign("rot3", {ida}, /*max_attempts=*/2);
  ASSERT_EQ(Reenroll(old_a), 200);
  x509::Certificate new_a = Ldevids(ida).back();

  auto r = Answer(&old_a, ida, Body("rot3", 0, "failed", "disk full\n"));
  ASSERT_EQ(r.status, 200) << r.body;
  store::Job job = Job(c, 0);
  EXPECT_EQ(job.state, store::JobState::kPending);
  EXPECT_EQ(job.last_error, "device: disk full ");
  EXPECT_GE(job.next_attempt_at, clock_.NowUnix() + 3600);
  EXPECT_EQ(Record(new_a).status, store::CertStatus::kRevoked);
  EXPECT_EQ(Record(old_a).status, store::CertStatus::kValid);
  // Pending: not awaiting an answer.
  EXPECT_EQ(Answer(&old_a, ida, Body("rot3", 0, "failed")).status, 409);

  // The second (last) attempt fails too: failed for good.
  ASSERT_TRUE(authority_->store().Commit(
      store::WriteBatch().UpdateJob({.campaign_id = c.id,
                                     .ordinal = 0,
                                     .from = store::JobState::kPending,
                                     .to = store::JobState::kNotified,
                                     .attempts = 2,
                                     .next_attempt_at = clock_.NowUnix() + 3600})));
  r = Answer(&old_a, ida, Body("rot3", 0, "failed"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Job(c, 0).state, store::JobState::kFailed);
  EXPECT_EQ(Job(c, 0).last_error, "device: install failed");
  EXPECT_EQ(Answer(&old_a, ida, Body("rot3", 0, "installed")).status, 409);  // final
  EXPECT_EQ(Record(old_a).status, store::CertStatus::kValid) << "a failed job keeps the old one";
}

TEST_F(RotationTest, AReenrollmentDuringAStartedWaveCountsAsAnAttemptOfItsPendingJob) {
  Dev a = Provision("SN-RP1"), b = Provision("SN-RP2");
  std::string ida = a.idevid.common_name(), idb = b.idevid.common_name();
  x509::Certificate old_a = Enroll(a), old_b = Enroll(b);
  // Wave size 1: a's job is in wave 0 (due), b's in wave 1 (not started).
  auto created = authority_->store().CreateCampaign(
      {.name = "op", .filter_json = "{}", .wave_size = 1, .deadline = kFar},
      {.device_ids = std::vector<std::string>{ida, idb}},
      {.actor = "test", .action = "campaign.create", .subject = "op"}, false, 0);
  ASSERT_TRUE(created) << created.error().ToString();
  ASSERT_EQ(Reenroll(old_a), 200);
  ASSERT_EQ(Reenroll(old_b), 200);
  store::Job ja = Job(created->campaign, 0), jb = Job(created->campaign, 1);
  EXPECT_EQ(ja.state, store::JobState::kEnrolled);
  EXPECT_EQ(ja.attempts, 1);
  EXPECT_EQ(ja.new_serial, Ldevids(ida).back().serial_hex());
  EXPECT_GE(ja.next_attempt_at, clock_.NowUnix() - 120 + 3600);  // from its re-enrollment
  EXPECT_EQ(jb.state, store::JobState::kPending) << "its wave has not started";
  EXPECT_EQ(jb.new_serial, std::nullopt);
}

}  // namespace
}  // namespace iotpki::enroll
