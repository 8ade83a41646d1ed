#include "iotpki/enroll/est.h"

#include <gtest/gtest.h>

#include "iotpki/c509/c509.h"
#include "iotpki/c509/cbor.h"
#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/builder.h"

namespace iotpki::enroll {
namespace {

x509::Certificate SelfSigned(const std::string& cn) {
  auto key = crypto::PrivateKey::Generate();
  x509::Policy policy;
  auto tmpl = x509::NewTemplate(x509::ProfileKind::kRoot, key->public_key(), 1790000000, policy);
  tmpl.subject = {.organization = "Test", .common_name = cn};
  return *x509::Issue(tmpl, nullptr, *key, policy);
}

TEST(EstTest, CertsOnlyPkcs7IsADegenerateSignedDataWithTheCertsInOrder) {
  std::vector<x509::Certificate> certs = {SelfSigned("A"), SelfSigned("B")};
  auto der = CertsOnlyPkcs7(certs);
  ASSERT_TRUE(der) << der.error().ToString();
  const unsigned char* p = der->data();
  auto p7 = ossl::Own(d2i_PKCS7(nullptr, &p, static_cast<long>(der->size())));
  ASSERT_TRUE(p7);
  ASSERT_TRUE(PKCS7_type_is_signed(p7.get()));
  EXPECT_EQ(sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info), 0);
  EXPECT_EQ(p7->d.sign->contents->d.ptr, nullptr);  // no encapsulated content
  ASSERT_EQ(sk_X509_num(p7->d.sign->cert), 2);
  EXPECT_EQ(ossl::ToDer(sk_X509_value(p7->d.sign->cert, 0), i2d_X509), certs[0].ToDer());
  EXPECT_EQ(ossl::ToDer(sk_X509_value(p7->d.sign->cert, 1), i2d_X509), certs[1].ToDer());
  // Written without OpenSSL's PKCS7, byte for byte what i2d_PKCS7 writes.
  EXPECT_EQ(ossl::ToDer(p7.get(), i2d_PKCS7), *der);
}

TEST(EstTest, Base64LinesAreAtMost64Characters) {
  Bytes data(200, 0xab);
  std::string text = EstBase64(data);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - start, 64u);
    start = end + 1;
  }
  EXPECT_EQ(*Base64Decode(text), data);
}

TEST(EstTest, CsrBodiesTolerateLineBreaksAndRefuseGarbage) {
  auto key = crypto::PrivateKey::Generate();
  auto csr = x509::MakeCsr(*key, {.common_name = "x"});
  ASSERT_TRUE(csr);
  // Lines of 64 characters joined by CRLF, then one LF inside. Built by appending: GCC 12 at -O3
  // warns falsely (-Wrestrict) on inserting a literal into a string.
  std::string one_line = Base64Encode(csr->ToDer());
  std::string body;
  for (size_t i = 0; i < one_line.size(); i += 64) {
    if (i > 0) body += "\r\n";
    body.append(one_line, i, 64);
  }
  auto parsed = ParseEstCsr(body);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->ToDer(), csr->ToDer());
  std::string lf = one_line.substr(0, 10);
  lf += '\n';
  lf.append(one_line, 10);
  EXPECT_TRUE(ParseEstCsr(lf));

  for (std::string bad : {"", "!!!!", "aGVsbG8gd29ybGQ=", "-----BEGIN CERTIFICATE REQUEST-----"}) {
    auto r = ParseEstCsr(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
}

TEST(EstTest, CsrAttributesNameEcdsaSha256AndP256) {
  Bytes attrs = CsrAttributes();
  der::Reader r(attrs);
  auto seq = r.Expect(der::kSequence);
  ASSERT_TRUE(seq);
  der::Reader items(seq->contents);
  auto alg = items.Expect(der::kOid);
  ASSERT_TRUE(alg);
  EXPECT_EQ(der::OidToText(alg->contents), "1.2.840.10045.4.3.2");
  EXPECT_TRUE(items.Expect(der::kSequence));
  EXPECT_TRUE(items.empty());
}

using F = CertFormat;
constexpr F kAll[] = {F::kPkcs7, F::kC509Cert, F::kC509Set, F::kC509Chain};
constexpr F kEnroll[] = {F::kPkcs7, F::kC509Cert, F::kC509Chain};

std::vector<F> Negotiate(std::string_view accept, std::span<const F> offered = kAll) {
  auto r = NegotiateCertFormat(accept, offered);
  EXPECT_TRUE(r) << accept << ": " << r.error().ToString();
  return r ? *r : std::vector<F>{F::kPkcs7, F::kPkcs7, F::kPkcs7, F::kPkcs7, F::kPkcs7};
}

TEST(EstAcceptTest, NoPreferenceKeepsPkcs7First) {
  for (std::string_view accept : {"", "  ", ",", "*/*", "application/*", "*/* ; q=1.000"}) {
    EXPECT_EQ(Negotiate(accept), std::vector<F>(std::begin(kAll), std::end(kAll))) << accept;
  }
}

TEST(EstAcceptTest, ExactTypesSelectTheirForm) {
  EXPECT_EQ(Negotiate("application/cose-c509-cert+cbor"), std::vector<F>{F::kC509Cert});
  EXPECT_EQ(Negotiate("Application/COSE-C509-Cert+CBOR"), std::vector<F>{F::kC509Cert});
  EXPECT_EQ(Negotiate("application/cose-c509+cbor"), (std::vector<F>{F::kC509Set, F::kC509Chain}));
  EXPECT_EQ(Negotiate("application/cose-c509+cbor", kEnroll), std::vector<F>{F::kC509Chain});
  EXPECT_EQ(Negotiate("application/cose-c509+cbor; usage=chain"), std::vector<F>{F::kC509Chain});
  EXPECT_EQ(Negotiate("application/cose-c509+cbor;usage=\"CHAIN\""), std::vector<F>{F::kC509Chain});
  EXPECT_EQ(Negotiate("application/cose-c509+cbor; usage=bag"), std::vector<F>{});
  EXPECT_EQ(Negotiate("application/pkcs7-mime"), std::vector<F>{F::kPkcs7});
  EXPECT_EQ(Negotiate("application/pkcs7-mime; smime-type=certs-only"), std::vector<F>{F::kPkcs7});
  EXPECT_EQ(Negotiate("application/pkcs7-mime; smime-type=CMC-response"), std::vector<F>{});
  // Other parameters do not select anything.
  EXPECT_EQ(Negotiate("application/cose-c509-cert+cbor; charset=x"), std::vector<F>{F::kC509Cert});
}

TEST(EstAcceptTest, QValuesOrderAndQZeroExcludes) {
  EXPECT_EQ(Negotiate("application/pkcs7-mime;q=0.5, application/cose-c509-cert+cbor"),
            (std::vector<F>{F::kC509Cert, F::kPkcs7}));
  EXPECT_EQ(
      Negotiate("application/cose-c509-cert+cbor;q=0.2,application/cose-c509+cbor;q=0.9", kEnroll),
      (std::vector<F>{F::kC509Chain, F::kC509Cert}));
  // The most specific range decides, whatever the order.
  EXPECT_EQ(Negotiate("*/*;q=0.1, application/cose-c509-cert+cbor"),
            (std::vector<F>{F::kC509Cert, F::kPkcs7, F::kC509Set, F::kC509Chain}));
  EXPECT_EQ(Negotiate("application/cose-c509-cert+cbor;q=0, */*"),
            (std::vector<F>{F::kPkcs7, F::kC509Set, F::kC509Chain}));
  EXPECT_EQ(Negotiate("application/cose-c509+cbor;q=0.5, application/cose-c509+cbor;usage=chain"),
            (std::vector<F>{F::kC509Chain, F::kC509Set}));
  EXPECT_EQ(Negotiate("application/cose-c509+cbor, application/cose-c509+cbor;usage=chain;q=0"),
            std::vector<F>{F::kC509Set});
  EXPECT_EQ(Negotiate("application/pkcs7-mime;q=0"), std::vector<F>{});
  EXPECT_EQ(Negotiate("*/*;q=0"), std::vector<F>{});
  EXPECT_EQ(Negotiate("application/cose-c509-cert+cbor;q=0.001"), std::vector<F>{F::kC509Cert});
}

TEST(EstAcceptTest, TypesWeCannotProduceAreNotAcceptable) {
  EXPECT_EQ(Negotiate("application/json"), std::vector<F>{});
  EXPECT_EQ(Negotiate("text/*, image/png;q=0.5"), std::vector<F>{});
  EXPECT_EQ(Negotiate("application/cose-c509-pkcs10+cbor"), std::vector<F>{});
  // JSON errors and a certificate type together: the certificate type counts.
  EXPECT_EQ(Negotiate("application/json, application/cose-c509-cert+cbor"),
            std::vector<F>{F::kC509Cert});
}

TEST(EstAcceptTest, MalformedHeadersAreRefusedWithTheReason) {
  for (std::string_view bad :
       {"application", "application/", "/cbor", "*/cbor", "application/cbor;q=2",
        "application/cbor;q=1.5", "application/cbor;q=0.0001", "application/cbor;q=abc",
        "application/cbor;q=", "application/cbor;usage", "application/cbor;usage=\"chain",
        "application/cbor text/plain", "application /cbor", "application/cbor;q=-1"}) {
    auto r = NegotiateCertFormat(bad, kAll);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.error().message().find("malformed Accept header"), std::string::npos) << bad;
  }
  // Quoted strings may hold the list's separators.
  EXPECT_EQ(Negotiate("application/cose-c509-cert+cbor;x=\"a,b;c\\\"d\", text/plain"),
            std::vector<F>{F::kC509Cert});
}

TEST(EstC509Test, CoseC509IsOneByteStringOrAnArrayOfThem) {
  std::vector<x509::Certificate> certs = {SelfSigned("A"), SelfSigned("B")};
  auto one = CoseC509(std::span(certs.data(), 1));
  ASSERT_TRUE(one) << one.error().ToString();
  auto item = cbor::Reader(*one).Next();
  ASSERT_TRUE(item && item->is_bytes());
  EXPECT_EQ(Bytes(item->bytes().begin(), item->bytes().end()), *c509::EncodeX509(certs[0].ToDer()));

  auto two = CoseC509(certs);
  ASSERT_TRUE(two) << two.error().ToString();
  cbor::Reader reader(*two);
  auto array = reader.Next();
  ASSERT_TRUE(array && array->is_array());
  EXPECT_TRUE(reader.empty());
  ASSERT_EQ(array->items().size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(array->items()[i].is_bytes());
    auto der = c509::DecodeToX509(array->items()[i].bytes());
    ASSERT_TRUE(der) << der.error().ToString();
    EXPECT_EQ(*der, certs[i].ToDer());
  }
  EXPECT_FALSE(CoseC509({}));
}

TEST(EstC509Test, BodiesAreBase64OfTheCbor) {
  std::vector<x509::Certificate> certs = {SelfSigned("A"), SelfSigned("B")};
  auto cert = C509Body(F::kC509Cert, certs);
  ASSERT_TRUE(cert);
  EXPECT_EQ(*Base64Decode(*cert), *c509::EncodeX509(certs[0].ToDer()));
  auto chain = C509Body(F::kC509Chain, certs);
  ASSERT_TRUE(chain);
  EXPECT_EQ(*Base64Decode(*chain), *CoseC509(certs));
  EXPECT_EQ(C509ContentType(F::kC509Cert), "application/cose-c509-cert+cbor");
  EXPECT_EQ(C509ContentType(F::kC509Set), "application/cose-c509+cbor");
  EXPECT_EQ(C509ContentType(F::kC509Chain), "application/cose-c509+cbor; usage=chain");
}

}  // namespace
}  // namespace iotpki::enroll
