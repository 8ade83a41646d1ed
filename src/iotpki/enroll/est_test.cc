#include "iotpki/enroll/est.h"

#include <gtest/gtest.h>

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
  std::string body = Base64Encode(csr->ToDer());
  for (size_t i = 64; i < body.size(); i += 66) body.insert(i, "\r\n");
  auto parsed = ParseEstCsr(body);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->ToDer(), csr->ToDer());
  std::string lf = Base64Encode(csr->ToDer());
  lf.insert(10, "\n");
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

}  // namespace
}  // namespace iotpki::enroll
