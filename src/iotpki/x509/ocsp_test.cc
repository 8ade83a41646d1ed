#include "iotpki/x509/ocsp.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "iotpki/common/der.h"
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

// ParseOcspRequest reads common requests with the DER reader and leaves the rest to OpenSSL's
// decoder: on each request below, and on every one-octet change and truncation of them, both must
// accept the same requests with the same fields, or both refuse.
TEST_F(OcspTest, TheDerReaderAndOpenSslAgreeOnEveryRequest) {
  Certificate dev = Device();
  std::vector<Bytes> requests = {
      Request({dev}),
      Request({dev}, EVP_sha1(), 16),
      Request({dev}, EVP_sha256(), 32),
      Request({dev}, EVP_sha384(), 1),
      Request({dev, pki.ops}, EVP_sha512(), 33),
      Request({dev, dev, pki.ops}, EVP_sha256()),
      Request(std::vector<Certificate>(kMaxOcspCertIds, dev)),
      Request(std::vector<Certificate>(kMaxOcspCertIds + 1, dev)),
  };
  auto same = [](const Result<OcspRequest>& a, const Result<OcspRequest>& b) {
    if (!a || !b) return !a && !b && a.error().message() == b.error().message();
    if (a->nonce != b->nonce || a->cert_ids.size() != b->cert_ids.size()) return false;
    for (size_t i = 0; i < a->cert_ids.size(); ++i) {
      const OcspCertId &x = a->cert_ids[i], &y = b->cert_ids[i];
      if (x.hash != y.hash || x.issuer_name_hash != y.issuer_name_hash ||
          x.issuer_key_hash != y.issuer_key_hash || x.serial != y.serial || x.der != y.der) {
        return false;
      }
    }
    return true;
  };
  size_t accepted = 0, checked = 0;
  auto check = [&](ByteView der) {
    auto fast = ParseOcspRequest(der);
    auto reference = ParseOcspRequestWithOpenSsl(der);
    ++checked;
    if (fast) ++accepted;
    return same(fast, reference);
  };
  for (const Bytes& request : requests) {
    ASSERT_TRUE(check(request));
    // Small requests get many changes of every octet; the large ones (64 and 65 CertIDs, the
    // same CertID again) one change of each octet of their first CertIDs and their end.
    bool small = request.size() < 200;
    std::vector<int> deltas = {1, 2, 0x1f, 0x20, 0x40, 0x7f, 0x80, 0xfe, 0xff};
    if (!small) deltas = {0x80};
    for (size_t i = 0; i < request.size(); ++i) {
      if (!small && i >= 300 && i + 40 < request.size()) continue;
      for (int d : deltas) {
        Bytes changed = request;
        changed[i] = static_cast<uint8_t>(changed[i] + d);
        ASSERT_TRUE(check(changed)) << "octet " << i << " + " << d;
      }
      for (uint8_t v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {  // a serial's sign and minimality
        if (!small) break;
        Bytes changed = request;
        changed[i] = v;
        ASSERT_TRUE(check(changed)) << "octet " << i << " = " << int{v};
      }
      ASSERT_TRUE(check(ByteView(request).first(i))) << "truncated to " << i;
    }
  }
  // The changes that still parse: a hash's or serial's octets, the nonce's (not its length).
  EXPECT_GT(accepted, 100u) << checked;
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

// A successful OCSPResponse taken apart with the strict DER reader: the BasicOCSPResponse's
// fields and the ResponseData's producedAt.
struct BasicParts {
  Bytes tbs;
  Bytes algorithm;
  Bytes signature;
  Bytes certs;
  int64_t produced_at = 0;
};

BasicParts Split(const Bytes& der) {
  auto expect = [](der::Reader& r, uint8_t tag) { return Must(r.Expect(tag), "OCSP response"); };
  der::Reader outer(der);
  der::Reader response(expect(outer, der::kSequence).contents);
  if (!outer.empty()) throw std::runtime_error("bytes after the OCSPResponse");
  if (ToHex(expect(response, der::kEnumerated).contents) != "00") {
    throw std::runtime_error("not successful");
  }
  der::Reader explicit0(expect(response, der::ContextConstructed(0)).contents);
  der::Reader bytes(expect(explicit0, der::kSequence).contents);
  if (ToHex(expect(bytes, der::kOid).whole) != "06092b0601050507300101") {
    throw std::runtime_error("not id-pkix-ocsp-basic");
  }
  der::Reader octets(expect(bytes, der::kOctetString).contents);
  der::Reader basic(expect(octets, der::kSequence).contents);
  BasicParts parts;
  auto tbs = expect(basic, der::kSequence);
  parts.tbs.assign(tbs.whole.begin(), tbs.whole.end());
  auto algorithm = expect(basic, der::kSequence).whole;
  parts.algorithm.assign(algorithm.begin(), algorithm.end());
  auto signature = expect(basic, der::kBitString).contents;
  parts.signature.assign(signature.begin(), signature.end());
  auto certs = expect(basic, der::ContextConstructed(0)).whole;
  parts.certs.assign(certs.begin(), certs.end());
  if (!basic.empty() || !octets.empty() || !bytes.empty() || !response.empty()) {
    throw std::runtime_error("unexpected fields");
  }
  der::Reader data(tbs.contents);
  expect(data, der::ContextConstructed(2));  // responderID byKey
  parts.produced_at = Must(der::ParseTime(expect(data, der::kGeneralizedTime)), "producedAt");
  return parts;
}

// The template's answers against OpenSSL's builder (BuildOcspResponse, the reference): the same
// ResponseData, signatureAlgorithm and certs byte for byte, a signature that OCSP_basic_verify
// accepts, the nonce echoed and each status as asked; signed through the prepared context and
// through Signer::Sign.
TEST_F(OcspTest, TemplateAnswersAreOpenSslsBytesButForTheSignature) {
  Certificate dev = Device();
  crypto::PrivateKey other_key = NewKey();
  Certificate other = Must(pki.IssueFor(pki.DeviceTemplate(
      ProfileKind::kLDevID, other_key.public_key(), testing::Identity("SN-000124"))));
  Certificate responder = Responder();
  auto tmpl = Must(OcspResponseTemplate::Make(responder, responder_key));
  auto prepared = Must(OcspSigningContext::Make(responder_key));
  auto store = ossl::Own(X509_STORE_new());
  auto root = ToX509(pki.root);
  X509_STORE_add_cert(store.get(), root.get());
  auto chain = ossl::Own(sk_X509_new_null());
  auto ops = ToX509(pki.ops);
  sk_X509_push(chain.get(), ops.get());
  X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(store.get()), kNow + 60);

  struct Case {
    std::vector<OcspCertStatus> statuses;  // for dev, other, dev again, ...
    int nonce_len;
    const EVP_MD* md;
    RevocationReason reason;
    int64_t revoked_at;
    int64_t this_update;
  };
  const Case cases[] = {
      {{OcspCertStatus::kGood}, 0, EVP_sha1(), RevocationReason::kUnspecified, 0, kNow},
      {{OcspCertStatus::kGood}, 16, EVP_sha1(), RevocationReason::kUnspecified, 0, kNow},
      {{OcspCertStatus::kRevoked},
       32,
       EVP_sha256(),
       RevocationReason::kKeyCompromise,
       kNow - 61,
       kNow},
      // No reason: revocationReason absent. A leap day, the last second of a century and 2050
      // on (GeneralizedTime in OCSP throughout, unlike certificates).
      {{OcspCertStatus::kRevoked},
       0,
       EVP_sha1(),
       RevocationReason::kUnspecified,
       951868799,
       4102444799},
      {{OcspCertStatus::kUnknown}, 1, EVP_sha1(), RevocationReason::kUnspecified, 0, 2524608000},
      {{OcspCertStatus::kGood, OcspCertStatus::kRevoked, OcspCertStatus::kUnknown},
       20,
       EVP_sha256(),
       RevocationReason::kCessationOfOperation,
       kNow - 1,
       kNow},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE("case " + std::to_string(n));
    std::vector<Certificate> certs;
    for (size_t i = 0; i < c.statuses.size(); ++i) certs.push_back(i % 2 == 0 ? dev : other);
    Bytes request = Request(certs, c.md, c.nonce_len);
    auto req = Must(ParseOcspRequest(request));
    std::vector<OcspSingleAnswer> answers;
    for (size_t i = 0; i < c.statuses.size(); ++i) {
      bool revoked = c.statuses[i] == OcspCertStatus::kRevoked;
      answers.push_back({&req.cert_ids[i], c.statuses[i], revoked ? c.revoked_at : 0,
                         revoked ? c.reason : RevocationReason::kUnspecified, c.this_update,
                         c.this_update + 3600});
    }
    Bytes reference = Must(BuildOcspResponse(responder, responder_key, answers, req.nonce));
    BasicParts want = Split(reference);
    const OcspSigningContext* signing = n % 2 == 0 ? prepared.get() : nullptr;
    ++n;
    auto built = tmpl.Write(responder_key, answers, req.nonce, want.produced_at, signing);
    ASSERT_TRUE(built) << built.error().ToString();
    BasicParts got = Split(*built);
    EXPECT_EQ(ToHex(got.tbs), ToHex(want.tbs));
    EXPECT_EQ(got.algorithm, want.algorithm);
    EXPECT_EQ(got.certs, want.certs);
    EXPECT_EQ(got.produced_at, want.produced_at);

    const unsigned char* p = built->data();
    auto resp = ossl::Own(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(built->size())));
    ASSERT_TRUE(resp);
    EXPECT_EQ(p, built->data() + built->size());
    // DER: OpenSSL writes back exactly what it read.
    EXPECT_EQ(ossl::ToDer(resp.get(), i2d_OCSP_RESPONSE), *built);
    auto basic = ossl::Own(OCSP_response_get1_basic(resp.get()));
    ASSERT_TRUE(basic);
    EXPECT_EQ(OCSP_basic_verify(basic.get(), chain.get(), store.get(), 0), 1);
    auto oreq = ossl::Own(
        d2i_OCSP_REQUEST(nullptr, &(p = request.data()), static_cast<long>(request.size())));
    EXPECT_EQ(OCSP_check_nonce(oreq.get(), basic.get()), c.nonce_len > 0 ? 1 : 2);
    ASSERT_EQ(OCSP_resp_count(basic.get()), static_cast<int>(c.statuses.size()));
    for (size_t i = 0; i < c.statuses.size(); ++i) {
      int reason = -1;
      ASN1_GENERALIZEDTIME *rev = nullptr, *thisupd = nullptr, *nextupd = nullptr;
      int status = OCSP_single_get0_status(OCSP_resp_get0(basic.get(), static_cast<int>(i)),
                                           &reason, &rev, &thisupd, &nextupd);
      EXPECT_EQ(status, c.statuses[i] == OcspCertStatus::kGood      ? V_OCSP_CERTSTATUS_GOOD
                        : c.statuses[i] == OcspCertStatus::kRevoked ? V_OCSP_CERTSTATUS_REVOKED
                                                                    : V_OCSP_CERTSTATUS_UNKNOWN);
      if (c.statuses[i] == OcspCertStatus::kRevoked) {
        EXPECT_EQ(reason,
                  c.reason == RevocationReason::kUnspecified ? -1 : static_cast<int>(c.reason));
      }
    }
  }
  ossl::ClearErrors();
}

// `openssl ocsp -respin` as the relying party: the template's answers verify (delegated
// responder, chain to the root) and say good, revoked with its reason, or unknown, the nonce
// checked against the request.
TEST_F(OcspTest, TemplateAnswersPassOpenSslOcsp) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("iotpki-ocsp-template-" + std::to_string(::getpid()) +
                                              "-" + ToHex(crypto::RandomBytes(4)));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, ByteView bytes) {
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return (dir / name).string();
  };
  Certificate dev = Device();
  Certificate responder = Responder();
  auto tmpl = Must(OcspResponseTemplate::Make(responder, responder_key));
  std::string root = write("root.pem", AsBytes(pki.root.ToPem()));
  std::string issuer = write("ops.pem", AsBytes(pki.ops.ToPem()));
  struct Case {
    OcspCertStatus status;
    int nonce_len;
    std::string want;
  };
  const Case cases[] = {{OcspCertStatus::kGood, 16, "Cert Status: good"},
                        {OcspCertStatus::kGood, 0, "Cert Status: good"},
                        {OcspCertStatus::kRevoked, 8, "Revocation Reason: keyCompromise"},
                        {OcspCertStatus::kUnknown, 0, "Cert Status: unknown"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    Bytes request = Request({dev}, EVP_sha1(), c.nonce_len);
    auto req = Must(ParseOcspRequest(request));
    OcspSingleAnswer answers[] = {{&req.cert_ids[0], c.status, kNow - 30,
                                   RevocationReason::kKeyCompromise, kNow, kNow + 3600}};
    Bytes built = Must(tmpl.Write(responder_key, answers, req.nonce, kNow));
    // -no_nonce: the request read from -reqin is checked against the answer as it is.
    std::string command = "openssl ocsp -respin " + write("resp.der", built) + " -reqin " +
                          write("req.der", request) + " -no_nonce -verify_other " + issuer +
                          " -CAfile " + root + " -attime " + std::to_string(kNow + 60) +
                          " -resp_text 2>&1";
    std::string out;
    FILE* pipe = ::popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    char buf[4096];
    for (size_t got; (got = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, got);
    int rc = ::pclose(pipe);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("Response verify OK"), std::string::npos) << out;
    EXPECT_NE(out.find(c.want), std::string::npos) << out;
    EXPECT_EQ(out.find("Nonce Verify error"), std::string::npos) << out;
    EXPECT_EQ(out.find("no nonce in response"), std::string::npos) << out;
    EXPECT_EQ(out.find("OCSP Nonce") != std::string::npos, c.nonce_len > 0) << out;
  }
  fs::remove_all(dir);
}

TEST_F(OcspTest, TemplateRefusesWhatItCannotWrite) {
  Certificate dev = Device();
  Certificate responder = Responder();
  crypto::PrivateKey stranger = NewKey();
  auto mismatched = OcspResponseTemplate::Make(responder, stranger);
  ASSERT_FALSE(mismatched);
  EXPECT_EQ(mismatched.error().code(), Code::kFailedPrecondition);

  auto tmpl = Must(OcspResponseTemplate::Make(responder, responder_key));
  auto req = Must(ParseOcspRequest(Request({dev})));
  auto refused = [&](std::span<const OcspSingleAnswer> answers, const std::optional<Bytes>& nonce) {
    auto r = tmpl.Write(responder_key, answers, nonce, kNow);
    return !r && r.error().code() == Code::kInvalidArgument;
  };
  OcspSingleAnswer good{
      &req.cert_ids[0], OcspCertStatus::kGood, 0, RevocationReason::kUnspecified, kNow,
      kNow + 3600};
  EXPECT_TRUE(refused({}, std::nullopt));
  OcspSingleAnswer no_id = good;
  no_id.id = nullptr;
  EXPECT_TRUE(refused({&no_id, 1}, std::nullopt));
  EXPECT_TRUE(refused({&good, 1}, Bytes{}));
  EXPECT_TRUE(refused({&good, 1}, Bytes(kMaxOcspNonceBytes + 1, 7)));
  EXPECT_FALSE(refused({&good, 1}, Bytes(kMaxOcspNonceBytes, 7)));
  std::vector<OcspSingleAnswer> too_many(kMaxOcspCertIds + 1, good);
  EXPECT_TRUE(refused(too_many, std::nullopt));
  OcspSingleAnswer far = good;
  far.next_update = 253402300800;  // 10000-01-01
  EXPECT_TRUE(refused({&far, 1}, std::nullopt));
  OcspSingleAnswer before = good;
  before.this_update = -62167219201;  // 1 BC
  EXPECT_TRUE(refused({&before, 1}, std::nullopt));
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
