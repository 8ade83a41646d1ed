#include "iotpki/x509/certificate.h"

#include <gtest/gtest.h>
#include <openssl/err.h>

#include <cctype>

#include "iotpki/common/clock.h"
#include "iotpki/common/der.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/crl.h"
#include "iotpki/x509/csr.h"
#include "iotpki/x509/internal.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using testing::Identity;
using testing::kNow;
using testing::Must;
using testing::NewKey;
using testing::Pki;

class CertificateTest : public ::testing::Test {
 protected:
  Pki pki;
  crypto::PrivateKey device_key = NewKey();
  Certificate idevid =
      Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, device_key.public_key())));
};

TEST_F(CertificateTest, DerAndPemRoundTrip) {
  auto again = Certificate::FromDer(idevid.ToDer());
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(*again, idevid);
  std::string pem = idevid.ToPem();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
  auto from_pem = Certificate::FromPem(pem);
  ASSERT_TRUE(from_pem);
  EXPECT_EQ(from_pem->ToDer(), idevid.ToDer());
  EXPECT_EQ(idevid.fingerprint_sha256(), ToHex(crypto::Sha256(idevid.ToDer())));
}

TEST_F(CertificateTest, ChainFromPem) {
  std::string text = "leaf\n" + idevid.ToPem() + pki.mfg.ToPem() + "\n" + pki.root.ToPem();
  auto chain = Certificate::ChainFromPem(text);
  ASSERT_TRUE(chain) << chain.error().ToString();
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ((*chain)[0], idevid);
  EXPECT_EQ((*chain)[1], pki.mfg);
  EXPECT_EQ((*chain)[2], pki.root);

  EXPECT_FALSE(Certificate::ChainFromPem("no pem here"));
  std::string broken =
      idevid.ToPem() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  auto bad = Certificate::ChainFromPem(broken);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("certificate 2"), std::string::npos);
}

TEST_F(CertificateTest, IDevIDAccessors) {
  DeviceIdentity id = Identity();
  EXPECT_EQ(idevid.common_name(), id.device_id);
  EXPECT_EQ(idevid.serial_number(), "SN-000123");
  EXPECT_EQ(idevid.organization(), "Acme Devices");
  EXPECT_EQ(idevid.subject(), "serialNumber=SN-000123,CN=" + id.device_id + ",O=Acme Devices");
  EXPECT_EQ(idevid.issuer(), pki.mfg.subject());
  EXPECT_EQ(idevid.issuer(), "CN=Acme Manufacturing CA,O=Acme Devices");
  EXPECT_EQ(idevid.not_before(), kNow - pki.policy.backdate);
  EXPECT_EQ(idevid.not_after(), kNoExpiryUnix);
  EXPECT_EQ(idevid.public_key(), device_key.public_key());
  EXPECT_FALSE(idevid.is_ca());
  EXPECT_EQ(idevid.path_len(), std::nullopt);
  EXPECT_EQ(idevid.key_usage(), key_usage::kDigitalSignature);
  EXPECT_TRUE(idevid.extended_key_usage().empty());
  EXPECT_TRUE(idevid.subject_key_id().empty());
  EXPECT_EQ(idevid.authority_key_id(), pki.mfg.subject_key_id());
  EXPECT_EQ(idevid.san_uris(), std::vector<std::string>{"urn:dev:os:32473-SN-000123"});
  EXPECT_TRUE(idevid.san_dns_names().empty());
  ASSERT_TRUE(idevid.hardware_module_name());
  EXPECT_EQ(idevid.hardware_module_name()->hw_type, "1.3.6.1.4.1.32473.1");
  EXPECT_EQ(idevid.hardware_module_name()->hw_serial, ToBytes("SN-000123"));
  EXPECT_EQ(idevid.signature_algorithm(), "1.2.840.10045.4.3.2");
  EXPECT_EQ(idevid.serial().size(), 16u);
  EXPECT_EQ(idevid.serial_hex().size(), 32u);
  EXPECT_TRUE(idevid.IsSignedBy(pki.mfg.public_key()));
  EXPECT_FALSE(idevid.IsSignedBy(pki.ops.public_key()));
}

TEST_F(CertificateTest, NotAfter9999IsGeneralizedTime) {
  // 99991231235959Z, GeneralizedTime, as 802.1AR requires.
  std::string needle =
      "\x18\x0f"
      "99991231235959Z";
  std::string der(idevid.ToDer().begin(), idevid.ToDer().end());
  EXPECT_NE(der.find(needle), std::string::npos);
  EXPECT_EQ(FormatUtc(idevid.not_after()), "9999-12-31T23:59:59Z");
}

TEST_F(CertificateTest, CaAccessors) {
  EXPECT_TRUE(pki.root.is_ca());
  EXPECT_EQ(pki.root.path_len(), std::nullopt);
  EXPECT_EQ(pki.root.key_usage(), key_usage::kKeyCertSign | key_usage::kCrlSign);
  EXPECT_EQ(pki.root.subject_key_id(), pki.root_key.public_key().KeyIdentifier());
  EXPECT_TRUE(pki.root.authority_key_id().empty());
  EXPECT_EQ(pki.root.subject(), pki.root.issuer());
  EXPECT_TRUE(pki.root.IsSignedBy(pki.root.public_key()));
  EXPECT_TRUE(pki.mfg.is_ca());
  EXPECT_EQ(pki.mfg.path_len(), 0);
  EXPECT_EQ(pki.mfg.authority_key_id(), pki.root.subject_key_id());
  EXPECT_EQ(pki.mfg.not_after() - pki.mfg.not_before(), pki.policy.issuing_ca.default_validity);
  EXPECT_EQ(pki.root.not_after(), pki.root.not_before() + pki.policy.root.default_validity);
  const Extension* bc = pki.root.FindExtension("2.5.29.19");
  ASSERT_NE(bc, nullptr);
  EXPECT_TRUE(bc->critical);
}

TEST_F(CertificateTest, SubjectDerIsByteExact) {
  ByteView issuer = idevid.issuer_der();
  ByteView subject = pki.mfg.subject_der();
  EXPECT_TRUE(std::equal(issuer.begin(), issuer.end(), subject.begin(), subject.end()));
}

TEST_F(CertificateTest, RefusesGarbageTruncatedAndTrailing) {
  const Bytes& der = idevid.ToDer();
  EXPECT_FALSE(Certificate::FromDer({}));
  EXPECT_FALSE(Certificate::FromDer(ToBytes("garbage, not DER")));
  for (size_t cut : {size_t{1}, size_t{10}, der.size() / 2, der.size() - 1}) {
    auto truncated = Certificate::FromDer(ByteView(der).first(cut));
    ASSERT_FALSE(truncated) << cut;
    EXPECT_EQ(truncated.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(truncated.error().message(), "not an X.509 certificate");
  }
  Bytes trailing = der;
  trailing.push_back(0);
  EXPECT_FALSE(Certificate::FromDer(trailing));
  // The same certificate with an indefinite outer length (BER) is refused too.
  der::Reader r(der);
  auto outer = r.Next();
  ASSERT_TRUE(outer);
  Bytes ber = {0x30, 0x80};
  ber.insert(ber.end(), outer->contents.begin(), outer->contents.end());
  ber.insert(ber.end(), {0x00, 0x00});
  EXPECT_FALSE(Certificate::FromDer(ber));
  EXPECT_FALSE(Certificate::FromPem("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"));
}

TEST_F(CertificateTest, CopiesShareTheParse) {
  Certificate copy = idevid;
  EXPECT_EQ(copy.handle(), idevid.handle());
  EXPECT_EQ(copy.ToDer().data(), idevid.ToDer().data());
}

// Certificates in our shapes are read by the strict DER reader, others by OpenSSL. Every
// accessor must give the same answer either way.
Certificate ParseWith(bool fast, ByteView der) {
  internal::g_fast_parse = fast;
  auto cert = Certificate::FromDer(der);
  internal::g_fast_parse = true;
  EXPECT_TRUE(cert) << cert.error().ToString();
  return std::move(*cert);
}

void ExpectSameFields(const Certificate& a, const Certificate& b) {
  EXPECT_EQ(a.ToDer(), b.ToDer());
  EXPECT_EQ(a.serial(), b.serial());
  EXPECT_EQ(a.subject(), b.subject());
  EXPECT_EQ(a.issuer(), b.issuer());
  EXPECT_EQ(a.common_name(), b.common_name());
  EXPECT_EQ(a.serial_number(), b.serial_number());
  EXPECT_EQ(a.organization(), b.organization());
  EXPECT_EQ(a.not_before(), b.not_before());
  EXPECT_EQ(a.not_after(), b.not_after());
  EXPECT_EQ(a.public_key(), b.public_key());
  EXPECT_EQ(a.public_key().Describe(), b.public_key().Describe());
  EXPECT_EQ(a.is_ca(), b.is_ca());
  EXPECT_EQ(a.path_len(), b.path_len());
  EXPECT_EQ(a.key_usage(), b.key_usage());
  EXPECT_EQ(a.extended_key_usage(), b.extended_key_usage());
  EXPECT_EQ(a.subject_key_id(), b.subject_key_id());
  EXPECT_EQ(a.authority_key_id(), b.authority_key_id());
  EXPECT_EQ(a.subject_alt_names(), b.subject_alt_names());
  EXPECT_EQ(a.extensions(), b.extensions());
  EXPECT_EQ(a.signature_algorithm(), b.signature_algorithm());
  EXPECT_EQ(a.version(), b.version());
  EXPECT_EQ(a.tbs_signature_algorithm(), b.tbs_signature_algorithm());
  EXPECT_EQ(a.tbs_signature_has_parameters(), b.tbs_signature_has_parameters());
  EXPECT_EQ(a.not_before_is_utc_time(), b.not_before_is_utc_time());
  EXPECT_EQ(a.not_after_is_utc_time(), b.not_after_is_utc_time());
  EXPECT_EQ(a.subject_attributes(), b.subject_attributes());
  EXPECT_EQ(a.extensions_decode(), b.extensions_decode());
  ASSERT_NE(a.handle(), nullptr);
  EXPECT_EQ(X509_cmp(a.handle(), b.handle()), 0);
}

void ExpectSameParse(ByteView der, const std::string& what) {
  SCOPED_TRACE(what);
  ExpectSameFields(ParseWith(true, der), ParseWith(false, der));
}

// FromParsed, as the TLS server uses it: the same fields as FromDer, OpenSSL's X509 and key
// shared rather than parsed again, on the fast path and on OpenSSL's.
void ExpectFromParsedAgrees(ByteView der, const std::string& what) {
  SCOPED_TRACE(what);
  const unsigned char* p = der.data();
  auto x = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_NE(x, nullptr);
  for (bool fast : {true, false}) {
    internal::g_fast_parse = fast;
    auto parsed = Certificate::FromParsed(x.get());
    internal::g_fast_parse = true;
    ASSERT_TRUE(parsed) << parsed.error().ToString();
    ExpectSameFields(*parsed, ParseWith(true, der));
    EXPECT_EQ(parsed->handle(), x.get());
    EXPECT_EQ(parsed->public_key().get(), X509_get0_pubkey(x.get()));
  }
  // The value holds its own reference: it outlives the handshake's.
  auto parsed = Certificate::FromParsed(x.get());
  ASSERT_TRUE(parsed);
  x.reset();
  EXPECT_EQ(parsed->ToDer(), Bytes(der.begin(), der.end()));
  EXPECT_EQ(parsed->common_name(), ParseWith(true, der).common_name());
  EXPECT_NE(parsed->handle(), nullptr);
}

// Certificates of every shape we issue, and one the fast reader leaves to OpenSSL.
std::vector<std::pair<std::string, Bytes>> Samples(const Pki& pki, const Certificate& idevid) {
  auto ldevid = Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, NewKey().public_key())));
  auto server = Must(pki.IssueFor(pki.ServerTemplate(NewKey().public_key())));
  Pki p384(crypto::KeyType::kP384);
  // Not ASCII: read by OpenSSL.
  DeviceIdentity umlaut = Identity();
  umlaut.organization = "Acme Ger\xc3\xa4tebau GmbH";
  auto other =
      Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, NewKey().public_key(), umlaut)));
  return {{"root", pki.root.ToDer()},
          {"manufacturing CA", pki.mfg.ToDer()},
          {"idevid", idevid.ToDer()},
          {"ldevid", ldevid.ToDer()},
          {"tls server with DNS and IP names", server.ToDer()},
          {"P-384 root", p384.root.ToDer()},
          {"non-ASCII organization", other.ToDer()}};
}

TEST_F(CertificateTest, FastAndOpenSslParsesAgree) {
  auto samples = Samples(pki, idevid);
  for (const auto& [what, der] : samples) ExpectSameParse(der, what);
  EXPECT_EQ(ParseWith(true, samples.back().second).organization(), "Acme Ger\xc3\xa4tebau GmbH");
  // The C509 draft's examples: RSA keys, other attributes and extensions.
  for (const char* name : {"c509_example_x509", "c509_cab_ecdsa_x509", "c509_cab_rsa_x509"}) {
    auto hex = ReadFile(std::string(IOTPKI_SHARED_DIR) + "/vectors/c509/" + name + ".hex");
    ASSERT_TRUE(hex) << name;
    std::string text(hex->begin(), hex->end());
    std::erase_if(text, [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
    auto der = FromHex(text);
    ASSERT_TRUE(der) << name;
    ExpectSameParse(*der, name);
  }
}

TEST_F(CertificateTest, FromParsedAgreesWithFromDer) {
  for (const auto& [what, der] : Samples(pki, idevid)) ExpectFromParsedAgrees(der, what);
  EXPECT_EQ(Certificate::FromParsed(nullptr).error().code(), Code::kInvalidArgument);
}

// Rebuilds a certificate with one TBSCertificate field replaced (the signature no longer
// matters: parsing does not check it).
Bytes WithTbsField(const Bytes& cert_der, size_t index, const Bytes& field) {
  der::Reader outer(cert_der);
  auto cert = Must(outer.Expect(der::kSequence));
  der::Reader parts(cert.contents);
  auto tbs = Must(parts.Expect(der::kSequence));
  Bytes rest(parts.rest().begin(), parts.rest().end());
  der::Reader fields(tbs.contents);
  Bytes new_tbs_contents;
  for (size_t i = 0; !fields.empty(); ++i) {
    auto f = Must(fields.Next());
    const Bytes whole = i == index ? field : Bytes(f.whole.begin(), f.whole.end());
    new_tbs_contents.insert(new_tbs_contents.end(), whole.begin(), whole.end());
  }
  Bytes inner = der::Tlv(der::kSequence, new_tbs_contents);
  inner.insert(inner.end(), rest.begin(), rest.end());
  return der::Tlv(der::kSequence, inner);
}

// Found by fuzz_x509: both parsers must refuse what DER forbids, in the same way.
TEST_F(CertificateTest, BothParsersRefuseANonMinimalSerial) {
  Bytes serial = {0x00, 0x01, 0x02};  // 0x00 before a byte without its top bit: not DER
  Bytes bad = WithTbsField(idevid.ToDer(), 1, der::Tlv(der::kInteger, serial));
  for (bool fast : {true, false}) {
    internal::g_fast_parse = fast;
    auto cert = Certificate::FromDer(bad);
    internal::g_fast_parse = true;
    ASSERT_FALSE(cert) << (fast ? "fast" : "OpenSSL");
    EXPECT_EQ(cert.error().code(), Code::kInvalidArgument);
  }
  // The same rebuild with a valid serial parses, so the refusal above is about the serial.
  Bytes good = {0x01, 0x02};
  EXPECT_TRUE(Certificate::FromDer(WithTbsField(idevid.ToDer(), 1, der::Tlv(der::kInteger, good))));
}

// Found by fuzz_x509: a key whose BIT STRING declares unused bits. OpenSSL accepts it and
// re-encodes it without them, so the parsers disagreed on the key's bytes; both now refuse it.
TEST_F(CertificateTest, BothParsersRefuseAKeyWithUnusedBits) {
  for (auto type : {crypto::KeyType::kP256, crypto::KeyType::kEd25519}) {
    // A key whose last two bits are 0, which OpenSSL's clearing of unused bits leaves as it is
    // (so OpenSSL alone would accept the certificate).
    Bytes spki;
    do spki = NewKey(type).public_key().ToDer();
    while (spki.back() & 3);
    // SEQUENCE { AlgorithmIdentifier, BIT STRING }: the BIT STRING's first content byte.
    size_t at = 2 + 2 + spki[3] + 2;
    ASSERT_EQ(spki[at - 2], 0x03);
    ASSERT_EQ(spki[at], 0x00);
    for (uint8_t unused : {1, 2}) {
      Bytes odd = spki;
      odd[at] = unused;
      Bytes bad = WithTbsField(idevid.ToDer(), 6, odd);
      for (bool fast : {true, false}) {
        SCOPED_TRACE(std::string(fast ? "fast" : "OpenSSL") + " " + std::to_string(unused));
        internal::g_fast_parse = fast;
        auto cert = Certificate::FromDer(bad);
        internal::g_fast_parse = true;
        ASSERT_FALSE(cert);
        EXPECT_EQ(cert.error().code(), Code::kInvalidArgument);
      }
    }
    // The same rebuild with the key as it was parses, so the refusal is about the unused bits.
    EXPECT_TRUE(Certificate::FromDer(WithTbsField(idevid.ToDer(), 6, spki)));
  }
}

// DESIGN.md: OpenSSL's error queue is drained in one place and is empty afterwards. A factory
// that fails on bad input must not leave entries behind, or the next OpenSSL call on the same
// thread (a TLS handshake, say) would report them as its own.
TEST(OpenSslErrorQueue, EmptyAfterEveryFailingFactory) {
  Pki pki;
  auto device = NewKey();
  Certificate cert = Must(Issue(pki.DeviceTemplate(ProfileKind::kIDevID, device.public_key()),
                                &pki.mfg, pki.mfg_key, pki.policy));
  Csr csr = Must(MakeCsr(device, {.common_name = "x"}));
  Crl crl = Must(BuildCrl(pki.ops, pki.ops_key, {}, kNow, kNow + 86400, 1));
  std::string key_pem = Must(device.ToEncryptedPem("right"));
  Bytes key_der = Must(device.ToDer());
  // Garbage, truncations and corruptions of each kind of input.
  auto bad_forms = [](const Bytes& good) {
    std::vector<Bytes> out = {Bytes{}, ToBytes("garbage"), Bytes{0x30, 0x03, 0x02, 0x01, 0x00},
                              Bytes(good.begin(), good.end() - 1),
                              Bytes(good.begin(), good.begin() + good.size() / 2)};
    Bytes inner = good;
    inner[inner.size() / 3] ^= 0x80;
    out.push_back(inner);
    Bytes tag = good;
    tag[0] = 0x31;
    out.push_back(tag);
    return out;
  };
  std::string pem_garbage = "-----BEGIN X-----\nnot base64!\n-----END X-----\n";
  for (bool fast : {true, false}) {
    internal::g_fast_parse = fast;
    ERR_clear_error();
    // Most of these fail; a corruption that still parses must leave the queue empty too.
    auto check = [&](const char* what, bool /*failed*/) {
      EXPECT_EQ(ERR_peek_error(), 0u) << what << (fast ? " (fast parse)" : " (OpenSSL parse)");
      ERR_clear_error();
    };
    for (const Bytes& b : bad_forms(cert.ToDer())) {
      check("Certificate::FromDer", !Certificate::FromDer(b));
      check("Certificate::FromDer with a known key", !Certificate::FromDer(b, device.public_key()));
    }
    for (const Bytes& b : bad_forms(csr.ToDer())) check("Csr::FromDer", !Csr::FromDer(b));
    for (const Bytes& b : bad_forms(crl.ToDer())) check("Crl::FromDer", !Crl::FromDer(b));
    for (const Bytes& b : bad_forms(device.public_key().ToDer())) {
      check("PublicKey::FromDer", !crypto::PublicKey::FromDer(b));
    }
    for (const Bytes& b : bad_forms(key_der)) {
      check("PrivateKey::FromDer", !crypto::PrivateKey::FromDer(b));
    }
    Bytes off_curve = device.public_key().Sec1Point(false);
    off_curve.back() ^= 1;
    check("PublicKey::FromSec1", !crypto::PublicKey::FromSec1(crypto::KeyType::kP256, off_curve));
    check("Certificate::FromPem", !Certificate::FromPem(pem_garbage));
    check("Certificate::ChainFromPem", !Certificate::ChainFromPem(pem_garbage));
    check("Csr::FromPem", !Csr::FromPem(pem_garbage));
    check("Crl::FromPem", !Crl::FromPem(pem_garbage));
    check("PublicKey::FromPem", !crypto::PublicKey::FromPem(pem_garbage));
    check("PrivateKey::FromPem, wrong passphrase", !crypto::PrivateKey::FromPem(key_pem, "wrong"));
    check("PrivateKey::FromPem, garbage", !crypto::PrivateKey::FromPem(pem_garbage, "right"));
    check("PrivateKey::FromScalar",
          !crypto::PrivateKey::FromScalar(crypto::KeyType::kP256, Bytes(32, 0)));
  }
  internal::g_fast_parse = true;
}

}  // namespace
}  // namespace iotpki::x509
