#include "iotpki/enroll/ocsp_responder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "iotpki/ca/authority.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"

namespace iotpki::enroll {
namespace {

namespace fs = std::filesystem;
constexpr char kPass[] = "unit-test-passphrase";

ossl::UniquePtr<X509> ToX509(const x509::Certificate& c) {
  const unsigned char* p = c.ToDer().data();
  return ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(c.ToDer().size())));
}

// The test's relying party: OpenSSL's own OCSP client functions.
class OcspResponderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("iotpki-ocsp-test-" + std::to_string(::getpid()) + "-" +
                                         ToHex(crypto::RandomBytes(4)));
    ASSERT_TRUE(ca::InitCa(base_, {.organization = "Acme"}, kPass, clock_));
    auto a = ca::Authority::Open(base_, clock_);
    ASSERT_TRUE(a) << a.error().ToString();
    authority_ = std::move(*a);
    ASSERT_TRUE(authority_->Unlock(ca::CaName::kManufacturing, kPass));
    ASSERT_TRUE(authority_->Unlock(ca::CaName::kOperational, kPass));
    responder_ = std::make_unique<OcspResponder>(authority_->store(), clock_, metrics_);
    for (ca::CaName ca : {ca::CaName::kManufacturing, ca::CaName::kOperational}) {
      auto key = std::make_shared<crypto::PrivateKey>(*crypto::PrivateKey::Generate());
      auto cert = authority_->IssueOcspResponderCertificate(ca, key->public_key(), "test");
      ASSERT_TRUE(cert) << cert.error().ToString();
      responder_->SetIssuer(std::string(ca::CaNameText(ca)), authority_->certificate(ca), *cert,
                            key);
    }
    for (int i = 1; i <= 2; ++i) {
      auto key = crypto::PrivateKey::Generate();
      auto csr = x509::MakeCsr(*key, {.common_name = "device"});
      auto cert = authority_->Issue({.profile = x509::ProfileKind::kIDevID,
                                     .csr = *csr,
                                     .serial = "SN-" + std::to_string(i),
                                     .hardware_fingerprint = {0xde, 0xad, static_cast<uint8_t>(i)},
                                     .model = "thermostat"});
      ASSERT_TRUE(cert) << cert.error().ToString();
      devices_.push_back(*cert);
    }
  }
  void TearDown() override {
    responder_.reset();
    authority_.reset();
    fs::remove_all(base_);
  }

  const x509::Certificate& Mfg() { return authority_->certificate(ca::CaName::kManufacturing); }

  Bytes Request(const std::vector<const x509::Certificate*>& certs, bool nonce = false,
                const x509::Certificate* issuer = nullptr) {
    auto req = ossl::Own(OCSP_REQUEST_new());
    auto iss = ToX509(issuer ? *issuer : Mfg());
    for (const auto* c : certs) {
      auto x = ToX509(*c);
      OCSP_request_add0_id(req.get(), OCSP_cert_to_id(EVP_sha1(), x.get(), iss.get()));
    }
    if (nonce) OCSP_request_add1_nonce(req.get(), nullptr, 16);
    last_request_ = std::move(req);
    return ossl::ToDer(last_request_.get(), i2d_OCSP_REQUEST);
  }

  // The status of `cert` in `der`, after OpenSSL verified the answer against the root.
  int StatusOf(const Bytes& der, const x509::Certificate& cert, int* reason = nullptr) {
    const unsigned char* p = der.data();
    auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
    if (!resp || OCSP_response_status(resp.get()) != OCSP_RESPONSE_STATUS_SUCCESSFUL) return -2;
    auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
    auto store = ossl::Own(X509_STORE_new());
    auto root = ToX509(authority_->certificate(ca::CaName::kRoot));
    X509_STORE_add_cert(store.get(), root.get());
    auto chain = ossl::Own(sk_X509_new_null());
    auto mfg = ToX509(Mfg());
    sk_X509_push(chain.get(), mfg.get());
    X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), clock_.NowUnix());
    if (OCSP_basic_verify(basic.get(), chain.get(), store.get(), 0) != 1) return -3;
    auto x = ToX509(cert);
    auto id = ossl::Own(OCSP_cert_to_id(EVP_sha1(), x.get(), mfg.get()));
    int status = -1, why = -1;
    ASN1_GENERALIZEDTIME *rev = nullptr, *thisupd = nullptr, *nextupd = nullptr;
    if (OCSP_resp_find_status(basic.get(), id.get(), &status, &why, &rev, &thisupd, &nextupd) !=
        1) {
      return -4;
    }
    if (reason) *reason = why;
    ossl::ClearErrors();
    return status;
  }

  int ResponseStatus(const Bytes& der) {
    const unsigned char* p = der.data();
    auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
    return resp ? OCSP_response_status(resp.get()) : -1;
  }

  void Revoke(const x509::Certificate& c) {
    ASSERT_TRUE(authority_->store().Commit(store::WriteBatch().RevokeCertificate(
        c.serial_hex(), store::RevocationReason::kKeyCompromise)));
  }

  FakeClock clock_{1790000000};
  fs::path base_;
  server::Registry metrics_;
  std::unique_ptr<ca::Authority> authority_;
  std::unique_ptr<OcspResponder> responder_;
  std::vector<x509::Certificate> devices_;
  ossl::UniquePtr<OCSP_REQUEST> last_request_;
};

TEST_F(OcspResponderTest, GoodRevokedAndUnknown) {
  auto good = responder_->Respond(Request({&devices_[0]}));
  EXPECT_EQ(StatusOf(good.der, devices_[0]), V_OCSP_CERTSTATUS_GOOD);
  EXPECT_EQ(good.max_age, 3600);

  Revoke(devices_[1]);
  int reason = -1;
  auto revoked = responder_->Respond(Request({&devices_[1]}));
  EXPECT_EQ(StatusOf(revoked.der, devices_[1], &reason), V_OCSP_CERTSTATUS_REVOKED);
  EXPECT_EQ(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);

  // CertIDs built from the issuer and a serial, as `openssl ocsp -serial` does: unknown for a
  // serial the manufacturing CA never issued, good for one it did.
  auto mfg = ToX509(Mfg());
  for (ByteView serial : {ByteView(Bytes{0x01, 0x23, 0x45}), ByteView(devices_[0].serial())}) {
    auto req = ossl::Own(OCSP_REQUEST_new());
    auto bn = ossl::Own(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
    auto asn1 = ossl::Own(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    auto id = ossl::Own(OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(mfg.get()),
                                         X509_get0_pubkey_bitstr(mfg.get()), asn1.get()));
    OCSP_CERTID* copy = OCSP_CERTID_dup(id.get());
    OCSP_request_add0_id(req.get(), copy);
    auto unknown = responder_->Respond(ossl::ToDer(req.get(), i2d_OCSP_REQUEST));
    const unsigned char* p = unknown.der.data();
    auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(unknown.der.size())));
    ASSERT_TRUE(resp);
    auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
    int status = -1;
    ASSERT_EQ(
        OCSP_resp_find_status(basic.get(), id.get(), &status, nullptr, nullptr, nullptr, nullptr),
        1);
    if (serial.size() == 3) {
      EXPECT_EQ(status, V_OCSP_CERTSTATUS_UNKNOWN);
      EXPECT_EQ(unknown.max_age, 0);
    } else {
      EXPECT_EQ(status, V_OCSP_CERTSTATUS_GOOD);
    }
  }

  EXPECT_EQ(metrics_.CounterValue("iotpki_ocsp_answers_total", {{"status", "good"}}), 2u);
  EXPECT_EQ(metrics_.CounterValue("iotpki_ocsp_answers_total", {{"status", "revoked"}}), 1u);
  EXPECT_EQ(metrics_.CounterValue("iotpki_ocsp_answers_total", {{"status", "unknown"}}), 1u);
}

TEST_F(OcspResponderTest, ARevocationInvalidatesTheCachedAnswerAtOnce) {
  Bytes req = Request({&devices_[0]});
  auto first = responder_->Respond(req);
  auto second = responder_->Respond(req);
  EXPECT_EQ(first.der, second.der);  // served from the cache: the same signature
  Revoke(devices_[0]);
  auto third = responder_->Respond(req);
  EXPECT_EQ(StatusOf(third.der, devices_[0]), V_OCSP_CERTSTATUS_REVOKED);
  // Past half its validity a cached good answer is signed again.
  Bytes other = Request({&devices_[1]});
  auto a = responder_->Respond(other);
  clock_.Advance(std::chrono::seconds(1800));
  auto b = responder_->Respond(other);
  EXPECT_NE(a.der, b.der);
  EXPECT_EQ(StatusOf(b.der, devices_[1]), V_OCSP_CERTSTATUS_GOOD);
}

TEST_F(OcspResponderTest, NonceEchoedAndNeverCached) {
  Bytes req = Request({&devices_[0], &devices_[1]}, /*nonce=*/true);
  auto answer = responder_->Respond(req);
  const unsigned char* p = answer.der.data();
  auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(answer.der.size())));
  ASSERT_TRUE(resp);
  auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
  EXPECT_EQ(OCSP_check_nonce(last_request_.get(), basic.get()), 1);
  EXPECT_EQ(StatusOf(answer.der, devices_[0]), V_OCSP_CERTSTATUS_GOOD);
  EXPECT_EQ(StatusOf(answer.der, devices_[1]), V_OCSP_CERTSTATUS_GOOD);
  EXPECT_EQ(answer.max_age, 0);
  EXPECT_NE(responder_->Respond(Request({&devices_[0]}, true)).der,
            responder_->Respond(Request({&devices_[0]}, true)).der);
}

TEST_F(OcspResponderTest, RefusalsAreOcspErrorResponses) {
  EXPECT_EQ(ResponseStatus(responder_->Respond(Bytes{0x30, 0x03}).der),
            OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
  // The root is no issuer this responder serves.
  const x509::Certificate& root = authority_->certificate(ca::CaName::kRoot);
  auto foreign = responder_->Respond(
      Request({&authority_->certificate(ca::CaName::kOperational)}, false, &root));
  EXPECT_EQ(ResponseStatus(foreign.der), OCSP_RESPONSE_STATUS_UNAUTHORIZED);
  EXPECT_EQ(metrics_.CounterValue("iotpki_ocsp_answers_total", {{"status", "malformed"}}), 1u);
  EXPECT_EQ(metrics_.CounterValue("iotpki_ocsp_answers_total", {{"status", "unauthorized"}}), 1u);
}

// The DER of the responder certificate an answer carries (the delegated signer).
Bytes SignerOf(const Bytes& der) {
  const unsigned char* p = der.data();
  auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (!resp) return {};
  auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
  if (!basic) return {};
  const STACK_OF(X509)* certs = OCSP_resp_get0_certs(basic.get());
  if (certs == nullptr || sk_X509_num(certs) != 1) return {};
  return ossl::ToDer(sk_X509_value(certs, 0), i2d_X509);
}

TEST_F(OcspResponderTest, ResponderRotationNearExpiryKeepsEveryAnswerValid) {
  // A responder certificate near its end (as `iotpki serve` finds it past half its life).
  auto old_key = std::make_shared<crypto::PrivateKey>(*crypto::PrivateKey::Generate());
  auto old_cert = authority_->IssueOcspResponderCertificate(ca::CaName::kManufacturing,
                                                            old_key->public_key(), "test");
  ASSERT_TRUE(old_cert) << old_cert.error().ToString();
  responder_->SetIssuer("manufacturing", Mfg(), *old_cert, old_key);
  clock_.Set(old_cert->not_after() - 3600);
  Bytes cached_req = Request({&devices_[0]});
  auto before = responder_->Respond(cached_req);
  ASSERT_EQ(StatusOf(before.der, devices_[0]), V_OCSP_CERTSTATUS_GOOD);
  ASSERT_EQ(SignerOf(before.der), old_cert->ToDer());
  Revoke(devices_[1]);

  // Clients keep asking while the certificate is replaced: every answer verifies against the
  // root, each signed by the old responder or the new one, never anything else.
  auto new_key = std::make_shared<crypto::PrivateKey>(*crypto::PrivateKey::Generate());
  auto new_cert = authority_->IssueOcspResponderCertificate(ca::CaName::kManufacturing,
                                                            new_key->public_key(), "test");
  ASSERT_TRUE(new_cert) << new_cert.error().ToString();
  Bytes good_req = Request({&devices_[0]});
  Bytes revoked_req = Request({&devices_[1]});
  Bytes nonce_req = Request({&devices_[0]}, /*nonce=*/true);
  std::atomic<bool> rotated{false};
  std::atomic<int> bad{0}, by_old{0}, by_new{0}, old_after_rotation{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 60; ++i) {
        bool was_rotated = rotated.load();
        const Bytes& req = (i + t) % 3 == 0 ? good_req : (i + t) % 3 == 1 ? revoked_req : nonce_req;
        auto answer = responder_->Respond(req);
        const x509::Certificate& asked = &req == &revoked_req ? devices_[1] : devices_[0];
        int want = &req == &revoked_req ? V_OCSP_CERTSTATUS_REVOKED : V_OCSP_CERTSTATUS_GOOD;
        if (StatusOf(answer.der, asked) != want) ++bad;
        Bytes signer = SignerOf(answer.der);
        if (signer == old_cert->ToDer()) {
          ++by_old;
          if (was_rotated) ++old_after_rotation;
        } else if (signer == new_cert->ToDer()) {
          ++by_new;
        } else {
          ++bad;
        }
      }
    });
  }
  while (by_old.load() + by_new.load() + bad.load() < 40) std::this_thread::yield();
  responder_->SetIssuer("manufacturing", Mfg(), *new_cert, new_key);
  rotated = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(by_old.load(), 0);
  EXPECT_GT(by_new.load(), 0);
  // A request that began after the rotation is never answered by the old responder, cached
  // answers included (they were dropped with it).
  EXPECT_EQ(old_after_rotation.load(), 0);

  // Past the old certificate's end, the cached request and fresh ones verify, signed by the new.
  clock_.Set(old_cert->not_after() + 60);
  for (const Bytes* req : {&cached_req, &revoked_req}) {
    auto answer = responder_->Respond(*req);
    EXPECT_EQ(SignerOf(answer.der), new_cert->ToDer());
    const x509::Certificate& asked = req == &revoked_req ? devices_[1] : devices_[0];
    EXPECT_EQ(StatusOf(answer.der, asked),
              req == &revoked_req ? V_OCSP_CERTSTATUS_REVOKED : V_OCSP_CERTSTATUS_GOOD);
  }
}

// A responder key whose handle() (where BuildOcspResponse starts signing) waits, once armed,
// until the test releases it: an answer held in the middle of its signature.
class HeldSigner final : public crypto::Signer, public crypto::OpenSslKey {
 public:
  explicit HeldSigner(crypto::PrivateKey key) : key_(std::move(key)) {}
  const crypto::PublicKey& public_key() const override { return key_.public_key(); }
  Result<Bytes> Sign(ByteView data) const override { return key_.Sign(data); }
  std::string uri() const override { return "memory:held"; }
  bool in_process() const override { return true; }
  EVP_PKEY* handle() const override {
    std::unique_lock lock(mu_);
    if (armed_) {
      entered_ = true;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !armed_; });
    }
    return key_.handle();
  }
  void Arm() {
    std::lock_guard lock(mu_);
    armed_ = true;
  }
  void WaitEntered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    armed_ = false;
    cv_.notify_all();
  }

 private:
  crypto::PrivateKey key_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable bool armed_ = false;
  mutable bool entered_ = false;
};

TEST_F(OcspResponderTest, AnAnswerSignedAcrossARotationIsNotCached) {
  auto old_signer = std::make_shared<HeldSigner>(*crypto::PrivateKey::Generate());
  auto old_cert = authority_->IssueOcspResponderCertificate(ca::CaName::kManufacturing,
                                                            old_signer->public_key(), "test");
  ASSERT_TRUE(old_cert) << old_cert.error().ToString();
  responder_->SetIssuer("manufacturing", Mfg(), *old_cert, old_signer);
  auto new_key = std::make_shared<crypto::PrivateKey>(*crypto::PrivateKey::Generate());
  auto new_cert = authority_->IssueOcspResponderCertificate(ca::CaName::kManufacturing,
                                                            new_key->public_key(), "test");
  ASSERT_TRUE(new_cert) << new_cert.error().ToString();

  // A good answer is being signed by the old responder when the new one takes over.
  Bytes req = Request({&devices_[0]});
  old_signer->Arm();
  Bytes in_flight;
  std::thread client([&] { in_flight = responder_->Respond(req).der; });
  old_signer->WaitEntered();
  responder_->SetIssuer("manufacturing", Mfg(), *new_cert, new_key);
  old_signer->Release();
  client.join();
  EXPECT_EQ(SignerOf(in_flight), old_cert->ToDer());  // begun before: still a valid answer
  EXPECT_EQ(StatusOf(in_flight, devices_[0]), V_OCSP_CERTSTATUS_GOOD);
  // It must not be kept: the next request is answered by the new responder.
  auto next = responder_->Respond(req);
  EXPECT_EQ(SignerOf(next.der), new_cert->ToDer());
  EXPECT_EQ(StatusOf(next.der, devices_[0]), V_OCSP_CERTSTATUS_GOOD);
}

}  // namespace
}  // namespace iotpki::enroll
