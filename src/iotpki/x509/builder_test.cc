#include "iotpki/x509/builder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <set>
#include <thread>

#include "iotpki/common/clock.h"
#include "iotpki/x509/test_util.h"
#include "iotpki/x509/verify.h"

namespace iotpki::x509 {
namespace {

using ::testing::HasSubstr;
using testing::Identity;
using testing::kNow;
using ::testing::MatchesRegex;
using testing::Must;
using testing::NewKey;
using testing::Pki;

TEST(Profile, ParseProfile) {
  EXPECT_EQ(ParseProfile("idevid"), ProfileKind::kIDevID);
  EXPECT_EQ(ParseProfile("LDevID"), ProfileKind::kLDevID);
  EXPECT_EQ(ParseProfile("root"), ProfileKind::kRoot);
  EXPECT_EQ(ParseProfile("issuing-ca"), ProfileKind::kIssuingCa);
  EXPECT_EQ(ParseProfile("tls-server"), ProfileKind::kTlsServer);
  EXPECT_EQ(ParseProfile("ocsp-responder"), ProfileKind::kOcspResponder);
  EXPECT_EQ(ParseProfile("command-signer"), ProfileKind::kCommandSigner);
  for (auto kind :
       {ProfileKind::kRoot, ProfileKind::kIssuingCa, ProfileKind::kIDevID, ProfileKind::kLDevID,
        ProfileKind::kTlsServer, ProfileKind::kOcspResponder, ProfileKind::kCommandSigner}) {
    EXPECT_EQ(ParseProfile(ProfileName(kind)), kind);
  }
  auto unknown = ParseProfile("devid");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(unknown.error().message(),
            "unknown profile (expected root, issuing-ca, idevid, ldevid, tls-server, "
            "ocsp-responder or command-signer)");
}

TEST(Profile, DeviceIdentity) {
  // printf 'SN-000123\x00\xde\xad\xbe\xef' | openssl dgst -sha256
  EXPECT_EQ(ComputeDeviceId("SN-000123", Bytes{0xde, 0xad, 0xbe, 0xef}),
            "4aeff21b3967965b9f684ec4aaf4c31a300b25da3537d1d614f7eec0717df3f6");
  EXPECT_EQ(DeviceUrn(32473, "SN-000123"), "urn:dev:os:32473-SN-000123");
  EXPECT_TRUE(ValidateDeviceIdentity(Identity()));
  EXPECT_TRUE(ValidateSerial("a.B-9"));
  EXPECT_TRUE(ValidateSerial(std::string(64, 'x')));
  auto bad = ValidateSerial("AB_12");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "serial with invalid characters (position 3): only A-Z, a-z, 0-9, '.' and '-' are "
            "allowed");
  EXPECT_TRUE(ValidateOrganization("Acme Gerätebau GmbH"));
  EXPECT_FALSE(ValidateOrganization("\xc3\x28"));
  EXPECT_FALSE(ValidateCommonName(std::string(65, 'c')));
}

TEST(NewSerial, SixteenPositiveOctetsAndUnique) {
  std::set<Bytes, BytesLess> seen;
  for (int i = 0; i < 2000; ++i) {
    Bytes s = NewSerial();
    ASSERT_EQ(s.size(), 16u);
    ASSERT_EQ(s[0] & 0x80, 0);
    ASSERT_NE(s[0], 0);
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 2000u);
}

// The first 7 octets are the issuance time (microseconds), the other 9 random: serials made later
// sort after, those made in the same microsecond still differ.
TEST(NewSerial, BeginsWithTheIssuanceTime) {
  auto micros = [] {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  };
  auto time_of = [](const Bytes& s) {
    uint64_t t = 0;
    for (size_t i = 0; i < 7; ++i) t = (t << 8) | s[i];
    return t;
  };
  uint64_t before = micros();
  Bytes first = NewSerial();
  uint64_t after = micros();
  EXPECT_GE(time_of(first), before);
  EXPECT_LE(time_of(first), after);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  Bytes second = NewSerial();
  EXPECT_LT(first, second);
  std::set<Bytes, BytesLess> tails;
  for (int i = 0; i < 1000; ++i) {
    Bytes s = NewSerial();
    tails.insert(Bytes(s.begin() + 7, s.end()));
  }
  EXPECT_EQ(tails.size(), 1000u);
}

TEST(NewTemplate, ValidityFromPolicy) {
  Policy policy;
  auto key = NewKey();
  auto ldevid = NewTemplate(ProfileKind::kLDevID, key.public_key(), kNow, policy);
  EXPECT_EQ(ldevid.not_before, kNow - 300);
  EXPECT_EQ(ldevid.not_after - ldevid.not_before, 90 * kSecondsPerDay);
  auto idevid = NewTemplate(ProfileKind::kIDevID, key.public_key(), kNow, policy);
  EXPECT_EQ(idevid.not_after, kNoExpiryUnix);
  auto ca = NewTemplate(ProfileKind::kIssuingCa, key.public_key(), kNow, policy);
  EXPECT_EQ(ca.path_len, 0);
  auto root = NewTemplate(ProfileKind::kRoot, key.public_key(), kNow, policy);
  EXPECT_EQ(root.path_len, std::nullopt);
  EXPECT_EQ(root.not_after - root.not_before, 7305 * kSecondsPerDay);
}

TEST(Issue, WholeHierarchyVerifies) {
  Pki pki;
  auto device_key = NewKey();
  auto idevid =
      Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, device_key.public_key())));
  auto ldevid = Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, NewKey().public_key())));
  auto server = Must(pki.IssueFor(pki.ServerTemplate(NewKey().public_key())));
  std::vector<Certificate> roots = {pki.root};
  std::vector<Certificate> mfg = {pki.mfg};
  std::vector<Certificate> ops = {pki.ops};
  EXPECT_EQ(VerifyChain(pki.mfg, {}, roots, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(pki.ops, {}, roots, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(idevid, mfg, roots, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(ldevid, ops, roots, kNow), Verdict::kValid);
  EXPECT_EQ(VerifyChain(server, ops, roots, kNow), Verdict::kValid);
  // The IDevID never expires, but its CA does.
  EXPECT_EQ(VerifyChain(idevid, mfg, roots, kNow + 5 * 365 * kSecondsPerDay), Verdict::kValid);
  EXPECT_EQ(VerifyChain(idevid, mfg, roots, kNow + 11 * 365 * kSecondsPerDay), Verdict::kExpired);
}

TEST(Issue, LDevIDProfile) {
  Pki pki;
  auto key = NewKey();
  auto cert = Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, key.public_key())));
  EXPECT_EQ(cert.extended_key_usage(), std::vector<std::string>{"clientAuth"});
  EXPECT_EQ(cert.key_usage(), key_usage::kDigitalSignature);
  EXPECT_EQ(cert.not_after() - cert.not_before(), 90 * kSecondsPerDay);
  EXPECT_EQ(cert.common_name(), Identity().device_id);
  EXPECT_EQ(cert.san_uris(), std::vector<std::string>{"urn:dev:os:32473-SN-000123"});
  EXPECT_EQ(cert.authority_key_id(), pki.ops.subject_key_id());
  EXPECT_EQ(cert.extensions().size(), 4u);
  for (const auto& ext : cert.extensions()) {
    EXPECT_EQ(ext.critical, ext.oid == "2.5.29.15") << ext.oid;
  }
}

TEST(Issue, IDevIDHasNoSkiAndCriticalKeyUsage) {
  Pki pki;
  auto cert = Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, NewKey().public_key())));
  ASSERT_EQ(cert.extensions().size(), 3u);
  EXPECT_EQ(cert.FindExtension("2.5.29.14"), nullptr);
  ASSERT_NE(cert.FindExtension("2.5.29.15"), nullptr);
  EXPECT_TRUE(cert.FindExtension("2.5.29.15")->critical);
  EXPECT_FALSE(cert.FindExtension("2.5.29.17")->critical);
}

TEST(Issue, TlsServerProfile) {
  Pki pki;
  auto cert = Must(pki.IssueFor(pki.ServerTemplate(NewKey().public_key())));
  EXPECT_EQ(cert.extended_key_usage(), std::vector<std::string>{"serverAuth"});
  EXPECT_EQ(cert.san_dns_names(), std::vector<std::string>{"pki.example.com"});
  EXPECT_EQ(cert.san_ip_addresses(), (std::vector<std::string>{"192.0.2.10", "2001:db8::10"}));
  EXPECT_EQ(cert.common_name(), "pki.example.com");
  EXPECT_EQ(cert.not_after() - cert.not_before(), 365 * kSecondsPerDay);
}

TEST(Issue, SignatureAlgorithmFollowsIssuerCurve) {
  Pki p384(crypto::KeyType::kP384);
  EXPECT_EQ(p384.root.public_key().type(), crypto::KeyType::kP384);
  EXPECT_EQ(p384.root.signature_algorithm(), "1.2.840.10045.4.3.3");  // ecdsa-with-SHA384
  EXPECT_EQ(p384.mfg.signature_algorithm(), "1.2.840.10045.4.3.3");
  auto leaf = Must(p384.IssueFor(p384.DeviceTemplate(ProfileKind::kIDevID, NewKey().public_key())));
  EXPECT_EQ(leaf.signature_algorithm(), "1.2.840.10045.4.3.2");  // the mfg CA is P-256
  std::vector<Certificate> roots = {p384.root}, mfg = {p384.mfg};
  EXPECT_EQ(VerifyChain(leaf, mfg, roots, kNow), Verdict::kValid);
}

TEST(Issue, TimesFrom2050AreGeneralizedTime) {
  Policy policy;
  auto key = NewKey();
  auto t = NewTemplate(ProfileKind::kRoot, key.public_key(), kNow, policy);
  t.subject.common_name = "Long Root";
  t.not_after = t.not_before + policy.root.max_validity;  // 2050-12-31
  auto root = Must(Issue(t, nullptr, key, policy));
  EXPECT_EQ(root.not_after(), t.not_after);
  EXPECT_EQ(FormatUtc(root.not_after()), "2050-12-31T23:55:00Z");
  std::string der(root.ToDer().begin(), root.ToDer().end());
  EXPECT_NE(der.find("\x18\x0f"
                     "20501231235500Z"),
            std::string::npos);
}

TEST(Issue, PrecertificateIsDeterministicAndNeverSmaller) {
  Pki pki;
  auto key = NewKey();
  auto t = pki.DeviceTemplate(ProfileKind::kIDevID, key.public_key());
  auto a = Must(BuildPrecertificate(t, &pki.mfg, pki.mfg_key, pki.policy));
  auto b = Must(BuildPrecertificate(t, &pki.mfg, pki.mfg_key, pki.policy));
  EXPECT_EQ(a.ToDer(), b.ToDer());
  for (int i = 0; i < 20; ++i) {
    auto cert = Must(pki.IssueFor(t));
    EXPECT_LE(cert.ToDer().size(), a.ToDer().size());
    EXPECT_TRUE(std::equal(cert.tbs_der().begin(), cert.tbs_der().end(), a.tbs_der().begin(),
                           a.tbs_der().end()));
  }
}

TEST(Issue, RefusesBadTemplatesWithInvalidArgument) {
  Pki pki;
  auto key = NewKey();
  struct Case {
    std::string serial;
    std::string device_id;
    std::string org;
    std::string expect;
  };
  const std::string good_id = Identity().device_id;
  const Case cases[] = {
      {"SN_0001", good_id, "Acme", "serial with invalid characters (position 3)"},
      {"SN 0001", good_id, "Acme", "serial with invalid characters"},
      {"SN/0001", good_id, "Acme", "serial with invalid characters"},
      {"", good_id, "Acme", "serial must be 1 to 64 characters long"},
      {std::string(65, 'A'), good_id, "Acme", "serial must be 1 to 64 characters long"},
      {"SN-1", "ABCDEF", "Acme", "device id must be 64 lowercase hex characters"},
      {"SN-1", std::string(64, 'A'), "Acme", "device id must be 64 lowercase hex characters"},
      {"SN-1", good_id, "", "organization must be 1 to 64 characters"},
      {"SN-1", good_id, std::string(65, 'o'), "organization must be 1 to 64 characters"},
      {"SN-1", good_id, "Acme\n", "organization must be 1 to 64 characters"},
      {"SN-1", good_id, "Acme \xff", "organization must be 1 to 64 characters"},
  };
  for (const auto& c : cases) {
    DeviceIdentity id;
    id.serial = c.serial;
    id.device_id = c.device_id;
    id.organization = c.org;
    auto cert = pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, key.public_key(), id));
    ASSERT_FALSE(cert) << c.serial;
    EXPECT_EQ(cert.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(cert.error().message(), HasSubstr(c.expect));
  }
  auto server = pki.ServerTemplate(key.public_key());
  server.ip_addresses = {"300.1.1.1"};
  EXPECT_FALSE(pki.IssueFor(server));
  auto root = NewTemplate(ProfileKind::kRoot, key.public_key(), kNow, pki.policy);
  EXPECT_FALSE(Issue(root, nullptr, key, pki.policy)) << "a root needs a common name";
}

TEST(Issue, RefusesAForeignIssuerKey) {
  Pki pki;
  auto t = pki.DeviceTemplate(ProfileKind::kIDevID, NewKey().public_key());
  auto cert = Issue(t, &pki.mfg, pki.ops_key, pki.policy);
  ASSERT_FALSE(cert);
  EXPECT_EQ(cert.error().code(), Code::kFailedPrecondition);
  auto key = NewKey();
  auto root = NewTemplate(ProfileKind::kRoot, key.public_key(), kNow, pki.policy);
  root.subject.common_name = "Root";
  EXPECT_FALSE(Issue(root, nullptr, pki.root_key, pki.policy));
}

// The issued certificate takes its fields over from the linted pre-certificate; a fresh parse
// of its DER by OpenSSL must agree field for field, and OpenSSL must verify its signature.
TEST(Issue, SignedCertificateMatchesAFreshParse) {
  Pki pki;
  for (auto kind : {ProfileKind::kIDevID, ProfileKind::kLDevID}) {
    auto issued = Must(pki.IssueFor(pki.DeviceTemplate(kind, NewKey().public_key())));
    auto parsed = Must(Certificate::FromDer(issued.ToDer()));
    EXPECT_EQ(issued.serial(), parsed.serial());
    EXPECT_EQ(issued.subject(), parsed.subject());
    EXPECT_EQ(issued.issuer(), parsed.issuer());
    EXPECT_EQ(issued.not_after(), parsed.not_after());
    EXPECT_EQ(issued.public_key(), parsed.public_key());
    EXPECT_EQ(issued.extensions(), parsed.extensions());
    EXPECT_EQ(issued.subject_alt_names(), parsed.subject_alt_names());
    EXPECT_TRUE(std::equal(issued.tbs_der().begin(), issued.tbs_der().end(),
                           parsed.tbs_der().begin(), parsed.tbs_der().end()));
    EXPECT_TRUE(std::equal(issued.signature().begin(), issued.signature().end(),
                           parsed.signature().begin(), parsed.signature().end()));
    ASSERT_NE(issued.handle(), nullptr);  // parsed on demand
    EXPECT_TRUE(issued.IsSignedBy(kind == ProfileKind::kIDevID ? pki.mfg_key.public_key()
                                                               : pki.ops_key.public_key()));
  }
}

// A signer outside the process (HSM, TPM, KMS) is not trusted to sign correctly: a wrong
// signature never becomes a certificate.
class WrongSigner final : public crypto::Signer {
 public:
  WrongSigner(const crypto::PrivateKey& claimed, crypto::PrivateKey actual)
      : claimed_(claimed), actual_(std::move(actual)) {}
  const crypto::PublicKey& public_key() const override { return claimed_.public_key(); }
  Result<Bytes> Sign(ByteView data) const override { return actual_.Sign(data); }
  std::string uri() const override { return "test:wrong"; }
  EVP_PKEY* handle() const override { return nullptr; }

 private:
  const crypto::PrivateKey& claimed_;
  crypto::PrivateKey actual_;
};

TEST(Issue, ExternalSignerSignatureIsChecked) {
  Pki pki;
  auto t = pki.DeviceTemplate(ProfileKind::kIDevID, NewKey().public_key());
  WrongSigner wrong(pki.mfg_key, NewKey());
  auto cert = Issue(t, &pki.mfg, wrong, pki.policy);
  ASSERT_FALSE(cert);
  EXPECT_EQ(cert.error().code(), Code::kInternal);
  EXPECT_EQ(cert.error().message(),
            "the issuer's signature on the new certificate does not verify");
  WrongSigner right(pki.mfg_key, pki.mfg_key);
  EXPECT_TRUE(Issue(t, &pki.mfg, right, pki.policy));
}

TEST(Issue, LintFailureNamesTheLint) {
  Pki pki;
  pki.policy.idevid.max_der_size = 400;
  auto cert = pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, NewKey().public_key()));
  ASSERT_FALSE(cert);
  EXPECT_EQ(cert.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(cert.error().message(),
              MatchesRegex("lint e_der_size_budget: certificate is [0-9]+ bytes, budget 400"));
}

TEST(Issue, FirstFailingLintIsReported) {
  Pki pki;
  pki.policy.ldevid.max_der_size = 300;
  auto t = pki.DeviceTemplate(ProfileKind::kLDevID, NewKey().public_key());
  t.not_after = t.not_before + 500 * kSecondsPerDay;
  auto cert = pki.IssueFor(t);
  ASSERT_FALSE(cert);
  EXPECT_THAT(cert.error().message(), HasSubstr("lint e_validity_within_policy: "));
  EXPECT_THAT(cert.error().detail(), HasSubstr("e_der_size_budget: "));
}

// Measures the DER sizes the profiles produce and checks the device budget has room for the
// longest identity the validation accepts. Sizes are printed for the documentation.
TEST(Issue, MeasuredSizesFitTheDeviceBudget) {
  for (auto root_curve : {crypto::KeyType::kP256, crypto::KeyType::kP384}) {
    Pki pki(root_curve);
    std::string curve = root_curve == crypto::KeyType::kP256 ? "P-256" : "P-384";
    std::cout << "[size] root (" << curve
              << ", CN=Acme Root CA, O=Acme Devices): " << pki.root.ToDer().size() << "\n"
              << "[size] issuing CA (P-256 under " << curve
              << " root, CN=Acme Manufacturing CA, O=Acme Devices): " << pki.mfg.ToDer().size()
              << "\n";
  }
  Pki pki;
  auto key = NewKey();
  const DeviceIdentity short_id = Identity("SN-000123", "Acme Devices");
  const DeviceIdentity long_id = Identity(std::string(64, '9'), std::string(64, 'O'));
  for (const auto& [name, id] : {std::pair{"short (serial SN-000123, O=Acme Devices)", short_id},
                                 std::pair{"maximal (64-char serial, 64-char O)", long_id}}) {
    for (auto kind : {ProfileKind::kIDevID, ProfileKind::kLDevID}) {
      auto precert =
          Must(BuildPrecertificate(pki.DeviceTemplate(kind, key.public_key(), id),
                                   &pki.IssuerFor(kind), pki.IssuerKeyFor(kind), pki.policy));
      std::cout << "[size] " << ProfileName(kind) << " " << name << ": at most "
                << precert.ToDer().size() << "\n";
      EXPECT_LE(precert.ToDer().size(), kDefaultDeviceDerBudget);
      auto cert = pki.IssueFor(pki.DeviceTemplate(kind, key.public_key(), id));
      EXPECT_TRUE(cert) << cert.error().ToString();
    }
  }
}

}  // namespace
}  // namespace iotpki::x509
