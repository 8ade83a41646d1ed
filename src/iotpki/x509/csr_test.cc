#include "iotpki/x509/csr.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/err.h>

#include "iotpki/x509/internal.h"
#include "iotpki/x509/profile.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using testing::FlipByte;
using ::testing::HasSubstr;
using testing::Identity;
using testing::Must;
using testing::NewKey;

// Made with the openssl CLI (an independent producer):
//   openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Acme Devices/
//     CN=0123...cdef/serialNumber=SN-000123"
//     -addext "subjectAltName=URI:urn:dev:os:32473-SN-000123,DNS:device.example"
constexpr std::string_view kOpensslP256Csr = R"(-----BEGIN CERTIFICATE REQUEST-----
MIIBejCCASACAQAwdjEVMBMGA1UECgwMQWNtZSBEZXZpY2VzMUkwRwYDVQQDDEAw
MTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYw
MTIzNDU2Nzg5YWJjZGVmMRIwEAYDVQQFEwlTTi0wMDAxMjMwWTATBgcqhkjOPQIB
BggqhkjOPQMBBwNCAATqgEVNZq3keVMraGiZph4P02F8oOKSRG4neI4plEw9jNHp
grHsMNwOZCaZnc5EgmT4q1MnzyRZo/uF4GS+lhQYoEgwRgYJKoZIhvcNAQkOMTkw
NzA1BgNVHREELjAshhp1cm46ZGV2Om9zOjMyNDczLVNOLTAwMDEyM4IOZGV2aWNl
LmV4YW1wbGUwCgYIKoZIzj0EAwIDSAAwRQIhANoyYCbjzRW5zaZT2SCp9DxsUvXn
DaUOHCJhjXyKQu4HAiAtbsyYGqBdkiA8dBIjn1kIy56mi9D4kbzufnd+0JDwgA==
-----END CERTIFICATE REQUEST-----
)";

// openssl req -new -newkey rsa:1024 -subj /CN=weak-rsa
constexpr std::string_view kRsa1024Csr = R"(-----BEGIN CERTIFICATE REQUEST-----
MIIBUjCBvAIBADATMREwDwYDVQQDDAh3ZWFrLXJzYTCBnzANBgkqhkiG9w0BAQEF
AAOBjQAwgYkCgYEAsXMnwRnowV983BGkC0hmd0yb+a43MnVp3KqQvhDe+15kMCfP
D8q4wqs3bMJXOZKQvJF0xViR+YVdW+FXuAdhn0EPPyzoMJJd1IVYok5fFMfW3odp
ANKFOUfHsWfZXaVtTbytLBlSqc9ZSXl7sLV/A7LZD5tYeHz55qubpwle4j0CAwEA
AaAAMA0GCSqGSIb3DQEBCwUAA4GBAEpL8Jtr1FaNtUAFyKo5Pjq+nN2jrdyShSUl
M4WXkDdnZe3lw39pI1QR1A6qaTHyvSgRsvM8bBn/5bTwDYxEWmH2jeCipU0hcvQS
1HOCEduZ2nWV/0kxNDWLEDSWP5wUE3N09kgNsdWVRK0U2nIYSZQ4zi2MHfT8KLpZ
8ucYPWUG
-----END CERTIFICATE REQUEST-----
)";

// openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime192v1 -subj /CN=weak-p192
constexpr std::string_view kP192Csr = R"(-----BEGIN CERTIFICATE REQUEST-----
MIGtMGYCAQAwFDESMBAGA1UEAwwJd2Vhay1wMTkyMEkwEwYHKoZIzj0CAQYIKoZI
zj0DAQEDMgAEawg2K8JjZnzoqanFn8NcUeDNu2la8sxJoj0o6E+A4Y/RfDm+eLy3
2gDKUancmOONoAAwCgYIKoZIzj0EAwIDNwAwNAIYO5gJvjTTLsZ33yqsdiQSOqKT
RES0ef/4Ahgv1DHcEaC7PCS0NdPwtZppxtjIIhUUkkU=
-----END CERTIFICATE REQUEST-----
)";

TEST(Csr, MakeAndParseRoundTrip) {
  auto key = NewKey();
  DeviceIdentity id = Identity();
  auto csr = MakeCsr(key, DeviceSubject(id), DeviceSubjectAltNames(id, 32473));
  ASSERT_TRUE(csr) << csr.error().ToString();
  EXPECT_TRUE(csr->VerifySignature());
  EXPECT_EQ(csr->public_key(), key.public_key());
  EXPECT_EQ(csr->common_name(), id.device_id);
  EXPECT_EQ(csr->serial_number(), "SN-000123");
  EXPECT_EQ(csr->organization(), "Acme Devices");
  EXPECT_EQ(csr->subject_alt_names(), DeviceSubjectAltNames(id, 32473));

  auto again = Csr::FromPem(csr->ToPem());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ToDer(), csr->ToDer());
  EXPECT_TRUE(again->VerifySignature());
  // OpenSSL's own verification agrees.
  auto verified = ossl::Own(X509_REQ_dup(csr->handle()));
  EXPECT_EQ(X509_REQ_verify(verified.get(), X509_REQ_get0_pubkey(verified.get())), 1);
}

TEST(Csr, WithoutSanAndWithOtherKeyTypes) {
  for (auto type : {crypto::KeyType::kP256, crypto::KeyType::kP384, crypto::KeyType::kEd25519}) {
    auto key = NewKey(type);
    auto csr = MakeCsr(key, NameFields{.common_name = "plain"});
    ASSERT_TRUE(csr) << csr.error().ToString();
    EXPECT_TRUE(csr->VerifySignature());
    EXPECT_TRUE(csr->subject_alt_names().empty());
    EXPECT_EQ(csr->subject(), "CN=plain");
  }
}

TEST(Csr, ParsesTheOpensslCliOutput) {
  auto csr = Csr::FromPem(kOpensslP256Csr);
  ASSERT_TRUE(csr) << csr.error().ToString();
  EXPECT_TRUE(csr->VerifySignature());
  EXPECT_EQ(csr->public_key().type(), crypto::KeyType::kP256);
  EXPECT_EQ(csr->serial_number(), "SN-000123");
  EXPECT_EQ(csr->organization(), "Acme Devices");
  EXPECT_EQ(csr->common_name().size(), 64u);
  EXPECT_EQ(csr->subject_alt_names().uris, std::vector<std::string>{"urn:dev:os:32473-SN-000123"});
  EXPECT_EQ(csr->subject_alt_names().dns_names, std::vector<std::string>{"device.example"});
  std::string legacy(kOpensslP256Csr);
  legacy.replace(legacy.find("BEGIN "), 6, "BEGIN NEW ");
  legacy.replace(legacy.find("END "), 4, "END NEW ");
  EXPECT_TRUE(Csr::FromPem(legacy));
}

// CSRs in the usual shapes are read by the strict DER reader, others by OpenSSL: every
// accessor and the signature check must agree.
void ExpectSameParse(ByteView der, const std::string& what) {
  SCOPED_TRACE(what);
  auto fast = Csr::FromDer(der);
  internal::g_fast_parse = false;
  auto slow = Csr::FromDer(der);
  internal::g_fast_parse = true;
  ASSERT_TRUE(fast) << fast.error().ToString();
  ASSERT_TRUE(slow) << slow.error().ToString();
  EXPECT_EQ(fast->public_key(), slow->public_key());
  EXPECT_EQ(fast->subject(), slow->subject());
  EXPECT_EQ(fast->common_name(), slow->common_name());
  EXPECT_EQ(fast->serial_number(), slow->serial_number());
  EXPECT_EQ(fast->organization(), slow->organization());
  EXPECT_EQ(fast->subject_alt_names(), slow->subject_alt_names());
  EXPECT_EQ(fast->VerifySignature(), slow->VerifySignature());
  ASSERT_NE(fast->handle(), nullptr);
  Bytes tampered = FlipByte(Bytes(der.begin(), der.end()), 3);
  auto bad_fast = Csr::FromDer(tampered);
  internal::g_fast_parse = false;
  auto bad_slow = Csr::FromDer(tampered);
  internal::g_fast_parse = true;
  ASSERT_TRUE(bad_fast && bad_slow);
  EXPECT_FALSE(bad_fast->VerifySignature());
  EXPECT_FALSE(bad_slow->VerifySignature());
}

TEST(Csr, FastAndOpenSslParsesAgree) {
  DeviceIdentity id = Identity();
  auto device = NewKey();
  ExpectSameParse(
      Must(MakeCsr(device, DeviceSubject(id), DeviceSubjectAltNames(id, 32473))).ToDer(),
      "device CSR");
  ExpectSameParse(Must(MakeCsr(NewKey(crypto::KeyType::kP384), {.common_name = "p384"})).ToDer(),
                  "P-384 without SAN");
  ExpectSameParse(
      Must(MakeCsr(NewKey(), {.organization = "Ger\xc3\xa4te", .common_name = "x"})).ToDer(),
      "non-ASCII organization");
  ExpectSameParse(Must(MakeCsr(NewKey(crypto::KeyType::kEd25519), {.common_name = "ed"})).ToDer(),
                  "Ed25519");
  ExpectSameParse(Must(Csr::FromPem(kOpensslP256Csr)).ToDer(), "openssl req, URI and DNS names");
  ExpectSameParse(Must(Csr::FromPem(kRsa1024Csr)).ToDer(), "RSA");
  ExpectSameParse(Must(Csr::FromPem(kP192Csr)).ToDer(), "P-192");
}

TEST(Csr, BadSignatureIsDetected) {
  auto key = NewKey();
  auto csr = Must(MakeCsr(key, NameFields{.common_name = "x"}));
  // Bytes near the end are inside the ECDSA s value: the DER stays well-formed.
  auto tampered = Csr::FromDer(FlipByte(csr.ToDer(), 3));
  ASSERT_TRUE(tampered);
  EXPECT_FALSE(tampered->VerifySignature());
  // Signed by one key, carrying another: no proof of possession.
  auto other = NewKey();
  Bytes der = csr.ToDer();
  const Bytes& mine = key.public_key().ToDer();
  const Bytes& theirs = other.public_key().ToDer();
  auto at = std::search(der.begin(), der.end(), mine.begin(), mine.end());
  ASSERT_NE(at, der.end());
  std::copy(theirs.begin(), theirs.end(), at);
  auto swapped = Csr::FromDer(der);
  ASSERT_TRUE(swapped);
  EXPECT_FALSE(swapped->VerifySignature());
}

TEST(Csr, RefusesGarbageAndTruncated) {
  auto csr = Must(MakeCsr(NewKey(), NameFields{.common_name = "x"}));
  const Bytes& der = csr.ToDer();
  std::vector<Bytes> bad = {{},
                            ToBytes("this is not a CSR"),
                            Bytes(der.begin(), der.end() - 1),
                            Bytes(der.begin(), der.begin() + der.size() / 2),
                            Bytes{0x30, 0x00}};
  Bytes trailing = der;
  trailing.push_back(0x00);
  bad.push_back(trailing);
  for (const auto& b : bad) {
    auto parsed = Csr::FromDer(b);
    ASSERT_FALSE(parsed) << ToHex(b);
    EXPECT_EQ(parsed.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(parsed.error().message(), "not a PKCS#10 CSR");
  }
  auto pem = Csr::FromPem("garbage");
  ASSERT_FALSE(pem);
  EXPECT_EQ(pem.error().message(), "not a PKCS#10 CSR");
  std::string truncated_pem(kOpensslP256Csr);
  truncated_pem.erase(truncated_pem.find("LmV4"), 40);
  auto cut = Csr::FromPem(truncated_pem);
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().code(), Code::kInvalidArgument);
}

// RFC 5280 4.2: "A certificate MUST NOT include more than one instance of a particular
// extension"; a request that asks twice, or carries a huge extension, is malformed and refused
// by both parsers with a short reason (nothing requested is ever copied into a certificate).
TEST(Csr, MalformedExtensionRequestsAreRefused) {
  auto key = NewKey();
  Bytes san = internal::EncodeExtension(
      internal::kOidSubjectAltName, false,
      Must(internal::EncodeGeneralNames({.uris = {"urn:dev:os:1-SN-1"}})));
  Bytes ku =
      internal::EncodeExtension(internal::kOidKeyUsage, true, internal::EncodeKeyUsage(0x80));
  Bytes big = internal::EncodeExtension("1.3.6.1.4.1.99999.1", false,
                                        der::OctetString(Bytes(40 * 1024, 'a')));
  struct Case {
    const char* what;
    Bytes attributes;
    const char* reason;
  };
  std::vector<Case> cases = {
      {"keyUsage twice", testing::ExtensionRequest({ku, san, ku}), "twice"},
      {"subjectAltName twice", testing::ExtensionRequest({san, san}), "twice"},
      {"40 KB extension", testing::ExtensionRequest({big}), "too large"},
      {"two extensionRequests",
       [&] {
         Bytes two = testing::ExtensionRequest({ku});
         Bytes second = testing::ExtensionRequest({san});
         two.insert(two.end(), second.begin(), second.end());
         return two;
       }(),
       "more than one extensionRequest"},
  };
  for (bool fast : {true, false}) {
    internal::g_fast_parse = fast;
    for (const Case& c : cases) {
      Bytes der =
          testing::RawCsrDer(key, key.public_key().ToDer(), {.common_name = "x"}, c.attributes);
      auto csr = Csr::FromDer(der);
      ASSERT_FALSE(csr) << c.what << (fast ? " (fast)" : " (OpenSSL)");
      EXPECT_EQ(csr.error().code(), Code::kInvalidArgument);
      EXPECT_THAT(csr.error().message(), HasSubstr(c.reason)) << c.what;
      EXPECT_LT(csr.error().message().size(), 120u);
      EXPECT_EQ(ERR_peek_error(), 0u) << c.what;
    }
    // One of each is fine.
    Bytes ok = testing::RawCsrDer(key, key.public_key().ToDer(), {.common_name = "x"},
                                  testing::ExtensionRequest({san, ku}));
    EXPECT_TRUE(Csr::FromDer(ok)) << (fast ? "fast" : "OpenSSL");
  }
  internal::g_fast_parse = true;
}

TEST(Csr, WeakKeysAreRefusedByPolicy) {
  Policy policy;
  auto rsa = Must(Csr::FromPem(kRsa1024Csr));
  EXPECT_TRUE(rsa.VerifySignature());
  auto refused = CheckKeyAllowed(policy, ProfileKind::kLDevID, rsa.public_key());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message(), "ldevid certificates need a P-256 key, not RSA-1024");

  auto p192 = Must(Csr::FromPem(kP192Csr));
  EXPECT_TRUE(p192.VerifySignature());
  refused = CheckKeyAllowed(policy, ProfileKind::kIDevID, p192.public_key());
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("need a P-256 key, not EC prime192v1"));

  // Even if a policy lists RSA, short keys stay refused.
  policy.ldevid.key_types.push_back(crypto::KeyType::kRsa);
  refused = CheckKeyAllowed(policy, ProfileKind::kLDevID, rsa.public_key());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message(),
            "ldevid certificates need a P-256 or RSA-2048 key, not RSA-1024");
  EXPECT_TRUE(CheckKeyAllowed(policy, ProfileKind::kLDevID, NewKey().public_key()));
}

}  // namespace
}  // namespace iotpki::x509
