#include "iotpki/x509/ocsp.h"

#include <gtest/gtest.h>

#include "iotpki/x509/lint.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using testing::kNow;
using testing::Must;
using testing::NewKey;
using testing::Pki;

ossl::UniquePtr<X509> ToX509(const Certificate& c) {
  const unsigned char* p = c.ToDer().data();
  return ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(c.ToDer().size())));
}

Bytes RequestDer(OCSP_REQUEST* req) { return ossl::ToDer(req, i2d_OCSP_REQUEST); }

class OcspTest : public ::testing::Test {
 protected:
  Pki pki;
  crypto::PrivateKey responder_key = NewKey();
  crypto::PrivateKey device_key = NewKey();

  Certificate Responder() {
    CertificateTemplate t =
        NewTemplate(ProfileKind::kOcspResponder, responder_key.public_key(), kNow, pki.policy);
    t.subject = {.organization = "Acme Devices", .common_name = "Acme Operational OCSP"};
    return Must(Issue(t, &pki.ops, pki.ops_key, pki.policy), "issue responder");
  }
  Certificate Device() {
    return Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key())));
  }
  // A request from OpenSSL's own builder, as `openssl ocsp` makes it.
  Bytes Request(const std::vector<Certificate>& certs, const EVP_MD* md = EVP_sha1(),
                int nonce_len = 0) {
    auto req = ossl::Own(OCSP_REQUEST_new());
    auto issuer = ToX509(pki.ops);
    for (const auto& c : certs) {
      auto x = ToX509(c);
      OCSP_CERTID* id = OCSP_cert_to_id(md, x.get(), issuer.get());
      if (id == nullptr || OCSP_request_add0_id(req.get(), id) == nullptr) {
        throw std::runtime_error("building request");
      }
    }
    if (nonce_len > 0) OCSP_request_add1_nonce(req.get(), nullptr, nonce_len);
    return RequestDer(req.get());
  }
};

TEST_F(OcspTest, ResponderProfileCarriesOcspSigningAndNoCheck) {
  Certificate r = Responder();
  EXPECT_EQ(r.extended_key_usage(), std::vector<std::string>{"OCSPSigning"});
  ASSERT_NE(r.FindExtension("1.3.6.1.5.5.7.48.1.5"), nullptr);
  EXPECT_FALSE(r.is_ca());
  EXPECT_EQ(r.not_after() - r.not_before(), 30 * kSecondsPerDay);
  // OpenSSL agrees it may sign OCSP responses for the operational CA.
  auto x = ToX509(r);
  EXPECT_EQ(X509_check_purpose(x.get(), X509_PURPOSE_OCSP_HELPER, 0), 1);
  EXPECT_NE(X509_get_extension_flags(x.get()) & EXFLAG_XKUSAGE, 0u);
}

TEST_F(OcspTest, DeviceCertificatesNameTheirCrlAndResponderWhenAsked) {
  CertificateTemplate t = pki.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key());
  t.crl_url = "https://pki.example.com/crl/operational.crl";
  t.ocsp_url = "https://pki.example.com/ocsp";
  Certificate c = Must(pki.IssueFor(t));
  auto x = ToX509(c);
  // Test-only OpenSSL types, freed here rather than given deleters in ossl.h.
  std::unique_ptr<STACK_OF(OPENSSL_STRING), decltype(&X509_email_free)> ocsp(
      X509_get1_ocsp(x.get()), X509_email_free);
  ASSERT_TRUE(ocsp);
  ASSERT_EQ(sk_OPENSSL_STRING_num(ocsp.get()), 1);
  EXPECT_STREQ(sk_OPENSSL_STRING_value(ocsp.get(), 0), "https://pki.example.com/ocsp");
  std::unique_ptr<CRL_DIST_POINTS, decltype(&CRL_DIST_POINTS_free)> cdp(
      static_cast<CRL_DIST_POINTS*>(
          X509_get_ext_d2i(x.get(), NID_crl_distribution_points, nullptr, nullptr)),
      CRL_DIST_POINTS_free);
  ASSERT_TRUE(cdp);
  ASSERT_EQ(sk_DIST_POINT_num(cdp.get()), 1);
  DIST_POINT* dp = sk_DIST_POINT_value(cdp.get(), 0);
  GENERAL_NAME* gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
  ASSERT_EQ(gn->type, GEN_URI);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(
                ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier))),
            "https://pki.example.com/crl/operational.crl");
  // The URLs do not count against the identity's size budget.
  EXPECT_GT(c.ToDer().size(),
            Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key())))
                .ToDer()
                .size());

  t.crl_url = "ftp://pki.example.com/x.crl";
  auto bad = pki.IssueFor(t);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  t.crl_url = "https://pki.example.com/a b";
  EXPECT_FALSE(pki.IssueFor(t));
}

TEST_F(OcspTest, ParsesWhatOpenSslSends) {
  Certificate dev = Device();
  auto req = ParseOcspRequest(Request({dev, pki.ops}, EVP_sha1(), 16));
  ASSERT_TRUE(req) << req.error().ToString();
  ASSERT_EQ(req->cert_ids.size(), 2u);
  EXPECT_EQ(req->cert_ids[0].hash, "sha1");
  EXPECT_EQ(req->cert_ids[0].serial, dev.serial());
  auto hashes = OcspIssuerHashesOf(pki.ops, "sha1");
  ASSERT_TRUE(hashes);
  EXPECT_EQ(req->cert_ids[0].issuer_name_hash, hashes->name_hash);
  EXPECT_EQ(req->cert_ids[0].issuer_key_hash, hashes->key_hash);
  ASSERT_TRUE(req->nonce);
  EXPECT_EQ(req->nonce->size(), 16u);

  auto sha256 = ParseOcspRequest(Request({dev}, EVP_sha256()));
  ASSERT_TRUE(sha256);
  EXPECT_EQ(sha256->cert_ids[0].hash, "sha256");
  EXPECT_EQ(sha256->cert_ids[0].issuer_key_hash, OcspIssuerHashesOf(pki.ops, "sha256")->key_hash);
  EXPECT_FALSE(sha256->nonce);
  EXPECT_FALSE(OcspIssuerHashesOf(pki.ops, "md5"));
}

TEST_F(OcspTest, RefusesMalformedRequests) {
  Certificate dev = Device();
  Bytes good = Request({dev});
  auto refused = [](ByteView der) {
    auto r = ParseOcspRequest(der);
    return !r && r.error().code() == Code::kInvalidArgument;
  };
  EXPECT_TRUE(refused(Bytes{}));
  EXPECT_TRUE(refused(ByteView(good).first(good.size() - 1)));  // truncated
  Bytes trailing = good;
  trailing.push_back(0);
  EXPECT_TRUE(refused(trailing));
  EXPECT_TRUE(refused(Bytes{0x30, 0x00}));
  EXPECT_TRUE(refused(Request({dev}, EVP_md5())));  // wrong hash algorithm
  std::vector<Certificate> many(kMaxOcspCertIds + 1, dev);
  EXPECT_TRUE(refused(Request(many)));
  std::vector<Certificate> cap(kMaxOcspCertIds, dev);
  EXPECT_TRUE(ParseOcspRequest(Request(cap)));
  EXPECT_TRUE(refused(Request({dev}, EVP_sha1(), 33)));  // RFC 8954: at most 32 octets
  EXPECT_TRUE(ParseOcspRequest(Request({dev}, EVP_sha1(), 32)));
}

TEST_F(OcspTest, SignedAnswersVerifyWithOpenSsl) {
  Certificate dev = Device();
  crypto::PrivateKey other_key = NewKey();
  Certificate other = Must(pki.IssueFor(pki.DeviceTemplate(
      ProfileKind::kLDevID, other_key.public_key(), testing::Identity("SN-000124"))));
  Certificate responder = Responder();
  Bytes der = Request({dev, other}, EVP_sha1(), 20);
  auto req = Must(ParseOcspRequest(der));
  OcspSingleAnswer answers[] = {
      {&req.cert_ids[0], OcspCertStatus::kRevoked, kNow - 60, RevocationReason::kKeyCompromise,
       kNow, kNow + 3600},
      {&req.cert_ids[1], OcspCertStatus::kUnknown, 0, RevocationReason::kUnspecified, kNow,
       kNow + 3600},
  };
  auto built = BuildOcspResponse(responder, responder_key, answers, req.nonce);
  ASSERT_TRUE(built) << built.error().ToString();

  const unsigned char* p = built->data();
  auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(built->size())));
  ASSERT_TRUE(resp);
  EXPECT_EQ(OCSP_response_status(resp.get()), OCSP_RESPONSE_STATUS_SUCCESSFUL);
  auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
  ASSERT_TRUE(basic);
  auto store = ossl::Own(X509_STORE_new());
  auto root = ToX509(pki.root);
  X509_STORE_add_cert(store.get(), root.get());
  auto chain = ossl::Own(sk_X509_new_null());
  auto ops = ToX509(pki.ops);
  sk_X509_push(chain.get(), ops.get());
  X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), kNow + 60);
  EXPECT_EQ(OCSP_basic_verify(basic.get(), chain.get(), store.get(), 0), 1);
  auto oreq =
      ossl::Own(d2i_OCSP_REQUEST(nullptr, &(p = der.data()), static_cast<long>(der.size())));
  EXPECT_EQ(OCSP_check_nonce(oreq.get(), basic.get()), 1);

  auto dev_x = ToX509(dev);
  auto id = ossl::Own(OCSP_cert_to_id(EVP_sha1(), dev_x.get(), ops.get()));
  int status = -1, reason = -1;
  ASN1_GENERALIZEDTIME *rev = nullptr, *thisupd = nullptr, *nextupd = nullptr;
  ASSERT_EQ(
      OCSP_resp_find_status(basic.get(), id.get(), &status, &reason, &rev, &thisupd, &nextupd), 1);
  EXPECT_EQ(status, V_OCSP_CERTSTATUS_REVOKED);
  EXPECT_EQ(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
  ossl::ClearErrors();
}

// OcspSigningContext: answers signed from the one prepared context verify, again and again (each
// signs with its own copy), and a context made for another key is not used.
TEST_F(OcspTest, APreparedSigningContextSignsVerifiableAnswers) {
  Certificate dev = Device();
  Certificate responder = Responder();
  auto ctx = OcspSigningContext::Make(responder_key);
  ASSERT_TRUE(ctx) << ctx.error().ToString();
  crypto::PrivateKey stranger = NewKey();
  auto stranger_ctx = OcspSigningContext::Make(stranger);
  ASSERT_TRUE(stranger_ctx) << stranger_ctx.error().ToString();
  auto store = ossl::Own(X509_STORE_new());
  auto root = ToX509(pki.root);
  X509_STORE_add_cert(store.get(), root.get());
  auto chain = ossl::Own(sk_X509_new_null());
  auto ops = ToX509(pki.ops);
  sk_X509_push(chain.get(), ops.get());
  X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), kNow + 60);
  for (const OcspSigningContext* prepared : {ctx->get(), ctx->get(), stranger_ctx->get()}) {
    Bytes der = Request({dev}, EVP_sha1(), 16);
    auto req = Must(ParseOcspRequest(der));
    OcspSingleAnswer answers[] = {{&req.cert_ids[0], OcspCertStatus::kGood, 0,
                                   RevocationReason::kUnspecified, kNow, kNow + 3600}};
    auto built = BuildOcspResponse(responder, responder_key, answers, req.nonce, prepared);
    ASSERT_TRUE(built) << built.error().ToString();
    const unsigned char* p = built->data();
    auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(built->size())));
    ASSERT_TRUE(resp);
    auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
    ASSERT_TRUE(basic);
    EXPECT_EQ(OCSP_basic_verify(basic.get(), chain.get(), store.get(), 0), 1);
    auto oreq =
        ossl::Own(d2i_OCSP_REQUEST(nullptr, &(p = der.data()), static_cast<long>(der.size())));
    EXPECT_EQ(OCSP_check_nonce(oreq.get(), basic.get()), 1);
  }
  ossl::ClearErrors();
}

TEST(OcspErrorResponseTest, IsAnUnsuccessfulOcspResponse) {
  Bytes der = OcspErrorResponse(OcspResponseStatus::kMalformedRequest);
  EXPECT_EQ(der, (Bytes{0x30, 0x03, 0x0a, 0x01, 0x01}));
  const unsigned char* p = der.data();
  auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_TRUE(resp);
  EXPECT_EQ(OCSP_response_status(resp.get()), OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
}

TEST(CrlLintTest, RefusesDisorderAndFutureRevocations) {
  std::vector<RevokedEntry> ok = {{Bytes{0x05}, kNow - 5, RevocationReason::kSuperseded},
                                  {Bytes{0x00, 0x7f}, kNow, RevocationReason::kKeyCompromise},
                                  {Bytes{0x01, 0x00}, kNow - 1, RevocationReason::kUnspecified}};
  EXPECT_TRUE(LintCrlEntries(ok, kNow, kNow + 1));
  auto swapped = ok;
  std::swap(swapped[1], swapped[2]);
  EXPECT_FALSE(LintCrlEntries(swapped, kNow, kNow + 1));
  auto twice = ok;
  twice[1].serial = Bytes{0x05};
  EXPECT_FALSE(LintCrlEntries(twice, kNow, kNow + 1));
  auto future = ok;
  future[0].revoked_at = kNow + 1;
  EXPECT_FALSE(LintCrlEntries(future, kNow, kNow + 1));
  EXPECT_FALSE(LintCrlEntries(ok, kNow, kNow));
  auto zero = ok;
  zero[0].serial = Bytes{0x00};
  EXPECT_FALSE(LintCrlEntries(zero, kNow, kNow + 1));
}

}  // namespace
}  // namespace iotpki::x509
