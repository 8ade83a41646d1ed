#include "iotpki/x509/lint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "iotpki/common/clock.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::x509 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Identity;
using testing::kNow;
using testing::Must;
using testing::Mutate;
using testing::NewKey;
using testing::Pki;
using testing::ReplaceExtension;

// A template and the pre-certificate built from it, plus who issues it.
struct Case {
  std::string name;
  CertificateTemplate tmpl;
  Certificate precert;
  const Certificate* issuer;
  const crypto::PrivateKey* issuer_key;
};

class LintTest : public ::testing::Test {
 protected:
  Case Build(const CertificateTemplate& t, const Certificate* issuer,
             const crypto::PrivateKey& issuer_key, std::string name = "") {
    return Case{std::move(name), t, Must(BuildPrecertificate(t, issuer, issuer_key, pki.policy)),
                issuer, &issuer_key};
  }
  Case Device(ProfileKind kind, DeviceIdentity id = Identity()) {
    return Build(pki.DeviceTemplate(kind, device_key.public_key(), id), &pki.IssuerFor(kind),
                 pki.IssuerKeyFor(kind), std::string(ProfileName(kind)));
  }
  Case Root() {
    auto t = NewTemplate(ProfileKind::kRoot, pki.root_key.public_key(), kNow, pki.policy);
    t.subject = {.organization = "Acme Devices", .common_name = "Acme Root CA"};
    return Build(t, nullptr, pki.root_key, "root");
  }
  Case IssuingCa() {
    auto t = NewTemplate(ProfileKind::kIssuingCa, pki.mfg_key.public_key(), kNow, pki.policy);
    t.subject = {.organization = "Acme Devices", .common_name = "Acme Manufacturing CA"};
    return Build(t, &pki.root, pki.root_key, "issuing-ca");
  }
  Case Server() {
    return Build(pki.ServerTemplate(device_key.public_key()), &pki.ops, pki.ops_key, "tls-server");
  }
  std::vector<Case> GoodCases() {
    return {Root(), IssuingCa(), Device(ProfileKind::kIDevID), Device(ProfileKind::kLDevID),
            Server()};
  }

  std::vector<LintFinding> Run(const Case& c) {
    return Lint(c.precert, c.tmpl, pki.policy, c.issuer);
  }
  std::vector<LintFinding> Run(const Case& c, const Certificate& precert) {
    return Lint(precert, c.tmpl, pki.policy, c.issuer);
  }
  // Messages of the findings of one rule.
  static std::vector<std::string> Of(const std::vector<LintFinding>& findings,
                                     std::string_view lint) {
    std::vector<std::string> out;
    for (const auto& f : findings) {
      if (f.lint == lint) out.push_back(f.message);
    }
    return out;
  }
  // Re-signs a mutated copy of the case's pre-certificate with its issuer's key.
  Certificate Mutated(const Case& c, const std::function<void(X509*)>& edit) {
    return Mutate(
        c.precert, *c.issuer_key, edit,
        c.issuer_key->public_key().type() == crypto::KeyType::kP384 ? EVP_sha384() : EVP_sha256());
  }

  Pki pki;
  crypto::PrivateKey device_key = NewKey();
};

TEST_F(LintTest, RulesRunInTheDocumentedOrder) {
  EXPECT_THAT(
      LintNames(),
      ElementsAre("e_serial_length_and_sign", "e_signature_algorithm", "e_issuer_matches",
                  "e_key_algorithm_allowed", "e_validity_within_policy", "e_validity_within_issuer",
                  "e_extensions_well_formed", "e_required_extensions", "e_extension_criticality",
                  "e_ca_basic_constraints", "e_key_usage", "e_extended_key_usage",
                  "e_key_identifiers", "e_san_well_formed", "e_identity_matches_request",
                  "e_der_size_budget"));
}

// The positive test of every rule: no finding on a good certificate of any profile.
class LintRulePasses : public LintTest, public ::testing::WithParamInterface<std::string_view> {};

TEST_P(LintRulePasses, OnEveryGoodProfile) {
  for (const Case& c : GoodCases()) {
    auto findings = Run(c);
    EXPECT_THAT(Of(findings, GetParam()), ::testing::IsEmpty()) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(AllRules, LintRulePasses, ::testing::ValuesIn(LintNames()),
                         [](const auto& info) { return std::string(info.param); });

TEST_F(LintTest, GoodCertificatesAreClean) {
  for (const Case& c : GoodCases()) {
    auto findings = Run(c);
    EXPECT_TRUE(findings.empty()) << c.name << ": " << findings.front().lint << ": "
                                  << findings.front().message;
  }
}

// --- One negative test per rule --------------------------------------------------------------

TEST_F(LintTest, SerialLengthAndSign) {
  auto c = Device(ProfileKind::kIDevID);
  c.tmpl.serial = Bytes(15, 0x11);
  c.precert = Must(BuildPrecertificate(c.tmpl, c.issuer, *c.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(c), "e_serial_length_and_sign"),
              ElementsAre("serial is 15 octets; the policy requires a positive 16-octet INTEGER"));
  // Top bit set: DER needs a 17th octet to keep the INTEGER positive.
  c.tmpl.serial = Bytes(16, 0x91);
  c.precert = Must(BuildPrecertificate(c.tmpl, c.issuer, *c.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(c), "e_serial_length_and_sign"), ::testing::SizeIs(1));
  // A certificate whose serial is not the template's.
  auto other = Device(ProfileKind::kIDevID);
  EXPECT_THAT(Of(Run(c, other.precert), "e_serial_length_and_sign"),
              ElementsAre("serial differs from the template's"));
}

TEST_F(LintTest, SignatureAlgorithm) {
  auto c = Device(ProfileKind::kLDevID);
  auto sha384 = Mutate(
      c.precert, *c.issuer_key, [](X509*) {}, EVP_sha384());
  EXPECT_THAT(Of(Run(c, sha384), "e_signature_algorithm"),
              ElementsAre(HasSubstr("does not match the P-256 issuer key")));
}

TEST_F(LintTest, IssuerMatches) {
  auto c = Device(ProfileKind::kIDevID);
  c.issuer = &pki.ops;  // built under the manufacturing CA
  EXPECT_THAT(Of(Run(c), "e_issuer_matches"),
              ElementsAre("issuer name is not byte-identical to the issuer certificate's subject"));
  // An end-entity certificate as issuer.
  auto leaf = Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key())));
  auto t = pki.DeviceTemplate(ProfileKind::kLDevID, NewKey().public_key(), Identity("SN-2"));
  auto issued = Issue(t, &leaf, device_key, pki.policy);
  ASSERT_FALSE(issued);
  EXPECT_EQ(issued.error().message(), "lint e_issuer_matches: the issuer certificate is not a CA");
}

TEST_F(LintTest, KeyAlgorithmAllowed) {
  for (auto type : {crypto::KeyType::kP384, crypto::KeyType::kEd25519}) {
    auto key = NewKey(type);
    auto t = pki.DeviceTemplate(ProfileKind::kIDevID, key.public_key());
    auto c = Build(t, &pki.mfg, pki.mfg_key);
    EXPECT_THAT(
        Of(Run(c), "e_key_algorithm_allowed"),
        ElementsAre("idevid certificates need a P-256 key, not " + key.public_key().Describe()));
  }
  // The policy decides: allow P-384 devices and the same certificate passes.
  pki.policy.idevid.key_types.push_back(crypto::KeyType::kP384);
  auto c =
      Build(pki.DeviceTemplate(ProfileKind::kIDevID, NewKey(crypto::KeyType::kP384).public_key()),
            &pki.mfg, pki.mfg_key);
  EXPECT_THAT(Of(Run(c), "e_key_algorithm_allowed"), ::testing::IsEmpty());
}

TEST_F(LintTest, ValidityWithinPolicy) {
  auto c = Device(ProfileKind::kLDevID);
  c.tmpl.not_after = c.tmpl.not_before + 398 * kSecondsPerDay;
  c.precert = Must(BuildPrecertificate(c.tmpl, c.issuer, *c.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(c), "e_validity_within_policy"),
              ElementsAre("validity of 398 days exceeds the ldevid maximum of 397 days"));

  auto idevid = Device(ProfileKind::kIDevID);
  idevid.tmpl.not_after = kNow + 365 * kSecondsPerDay;
  idevid.precert =
      Must(BuildPrecertificate(idevid.tmpl, idevid.issuer, *idevid.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(idevid), "e_validity_within_policy"),
              ElementsAre(HasSubstr("notAfter must be 99991231235959Z")));

  c.tmpl.not_after = c.tmpl.not_before;
  c.precert = Must(BuildPrecertificate(c.tmpl, c.issuer, *c.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(c), "e_validity_within_policy"),
              ElementsAre("notBefore is not before notAfter"));
}

TEST_F(LintTest, ValidityWithinIssuer) {
  pki.policy.ldevid.max_validity = 100 * 365 * kSecondsPerDay;
  auto c = Device(ProfileKind::kLDevID);
  c.tmpl.not_after = pki.ops.not_after() + kSecondsPerDay;
  c.precert = Must(BuildPrecertificate(c.tmpl, c.issuer, *c.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(c), "e_validity_within_issuer"),
              ElementsAre(HasSubstr("is after the issuer's")));
}

TEST_F(LintTest, ExtensionsWellFormed) {
  auto c = Device(ProfileKind::kIDevID);
  auto dup = Mutated(c, [](X509* x) {
    X509_add_ext(x, X509_get_ext(x, X509_get_ext_by_NID(x, NID_key_usage, -1)), -1);
  });
  EXPECT_THAT(Of(Run(c, dup), "e_extensions_well_formed"),
              ::testing::Contains("keyUsage appears more than once"));
}

TEST_F(LintTest, RequiredExtensions) {
  auto c = Device(ProfileKind::kIDevID);
  auto no_aki =
      Mutated(c, [](X509* x) { ReplaceExtension(x, NID_authority_key_identifier, nullptr); });
  EXPECT_THAT(Of(Run(c, no_aki), "e_required_extensions"),
              ElementsAre("authorityKeyIdentifier is missing"));
  auto with_ski =
      Mutated(c, [](X509* x) { ReplaceExtension(x, NID_subject_key_identifier, "hash"); });
  EXPECT_THAT(Of(Run(c, with_ski), "e_required_extensions"),
              ElementsAre("subjectKeyIdentifier is not part of the idevid profile"));
}

TEST_F(LintTest, ExtensionCriticality) {
  auto c = Device(ProfileKind::kLDevID);
  auto ku = Mutated(c, [](X509* x) { ReplaceExtension(x, NID_key_usage, "digitalSignature"); });
  EXPECT_THAT(Of(Run(c, ku), "e_extension_criticality"), ElementsAre("keyUsage must be critical"));
  auto eku =
      Mutated(c, [](X509* x) { ReplaceExtension(x, NID_ext_key_usage, "critical,clientAuth"); });
  EXPECT_THAT(Of(Run(c, eku), "e_extension_criticality"),
              ElementsAre("extendedKeyUsage must not be critical"));
}

TEST_F(LintTest, CaBasicConstraints) {
  auto ca = IssuingCa();
  ca.tmpl.path_len = 1;
  ca.precert = Must(BuildPrecertificate(ca.tmpl, ca.issuer, *ca.issuer_key, pki.policy));
  EXPECT_THAT(Of(Run(ca), "e_ca_basic_constraints"),
              ElementsAre("an issuing CA needs pathLenConstraint 0"));
  // An issuing CA (pathLen 0) cannot issue another CA.
  auto sub = NewTemplate(ProfileKind::kIssuingCa, NewKey().public_key(), kNow, pki.policy);
  sub.subject.common_name = "Sub CA";
  auto issued = Issue(sub, &pki.ops, pki.ops_key, pki.policy);
  ASSERT_FALSE(issued);
  EXPECT_EQ(issued.error().message(),
            "lint e_ca_basic_constraints: the issuer's pathLenConstraint 0 forbids issuing a CA");
  // A device certificate claiming CA:TRUE.
  auto c = Device(ProfileKind::kLDevID);
  auto is_ca =
      Mutated(c, [](X509* x) { ReplaceExtension(x, NID_basic_constraints, "critical,CA:TRUE"); });
  EXPECT_THAT(Of(Run(c, is_ca), "e_ca_basic_constraints"),
              ElementsAre("an end-entity certificate must not be a CA"));
  auto root = Root();
  auto not_ca = Mutated(
      root, [](X509* x) { ReplaceExtension(x, NID_basic_constraints, "critical,CA:FALSE"); });
  EXPECT_THAT(Of(Run(root, not_ca), "e_ca_basic_constraints"),
              ElementsAre("a CA certificate needs basicConstraints CA:TRUE"));
}

TEST_F(LintTest, KeyUsage) {
  auto c = Device(ProfileKind::kIDevID);
  auto ku = Mutated(c, [](X509* x) {
    ReplaceExtension(x, NID_key_usage, "critical,digitalSignature,keyEncipherment");
  });
  EXPECT_THAT(Of(Run(c, ku), "e_key_usage"),
              ElementsAre("keyUsage is {digitalSignature,keyEncipherment}, the idevid profile "
                          "requires {digitalSignature}"));
  auto ca = IssuingCa();
  auto no_crl =
      Mutated(ca, [](X509* x) { ReplaceExtension(x, NID_key_usage, "critical,keyCertSign"); });
  EXPECT_THAT(Of(Run(ca, no_crl), "e_key_usage"), ::testing::SizeIs(1));
}

TEST_F(LintTest, ExtendedKeyUsage) {
  auto c = Device(ProfileKind::kLDevID);
  auto eku = Mutated(c, [](X509* x) { ReplaceExtension(x, NID_ext_key_usage, "serverAuth"); });
  EXPECT_THAT(Of(Run(c, eku), "e_extended_key_usage"),
              ElementsAre("extendedKeyUsage is {serverAuth}, the ldevid profile requires "
                          "{clientAuth}"));
  auto both =
      Mutated(c, [](X509* x) { ReplaceExtension(x, NID_ext_key_usage, "clientAuth,serverAuth"); });
  EXPECT_THAT(Of(Run(c, both), "e_extended_key_usage"), ::testing::SizeIs(1));
}

TEST_F(LintTest, KeyIdentifiers) {
  auto c = Device(ProfileKind::kIDevID);
  // Build an AKI naming another CA's key by copying it from a certificate the ops CA issued.
  auto ldevid = Device(ProfileKind::kLDevID);
  auto wrong = Mutated(c, [&](X509* x) {
    ReplaceExtension(x, NID_authority_key_identifier, nullptr);
    X509* src = ldevid.precert.handle();
    X509_add_ext(x, X509_get_ext(src, X509_get_ext_by_NID(src, NID_authority_key_identifier, -1)),
                 -1);
  });
  EXPECT_THAT(Of(Run(c, wrong), "e_key_identifiers"),
              ElementsAre("authorityKeyIdentifier does not match the issuer's "
                          "subjectKeyIdentifier"));
  auto ca = IssuingCa();
  auto ski = Mutated(ca, [](X509* x) {
    ReplaceExtension(x, NID_subject_key_identifier, "0102030405060708090a0b0c0d0e0f1011121314");
  });
  EXPECT_THAT(Of(Run(ca, ski), "e_key_identifiers"),
              ElementsAre("subjectKeyIdentifier is not the SHA-1 of the subject key"));
}

TEST_F(LintTest, SanWellFormed) {
  auto c = Device(ProfileKind::kIDevID);
  auto dns = Mutated(c, [](X509* x) {
    ReplaceExtension(x, NID_subject_alt_name, "URI:urn:dev:os:32473-SN-000123,DNS:device.example");
  });
  auto messages = Of(Run(c, dns), "e_san_well_formed");
  EXPECT_THAT(
      messages,
      ::testing::Contains("a device certificate needs exactly one hardwareModuleName (RFC 4108)"));
  EXPECT_THAT(messages,
              ::testing::Contains("a device certificate carries no DNS names or IP addresses"));
  auto email =
      Mutated(c, [](X509* x) { ReplaceExtension(x, NID_subject_alt_name, "email:a@b.example"); });
  EXPECT_THAT(Of(Run(c, email), "e_san_well_formed"),
              ::testing::Contains("subjectAltName has entries of unsupported kinds"));
  auto urn = Mutated(
      c, [](X509* x) { ReplaceExtension(x, NID_subject_alt_name, "URI:urn:dev:os:032473-SN_1"); });
  EXPECT_THAT(
      Of(Run(c, urn), "e_san_well_formed"),
      ::testing::Contains("a device certificate needs exactly one urn:dev:os URI (RFC 9039)"));

  auto server = pki.ServerTemplate(device_key.public_key());
  server.dns_names = {"bad_name.example"};
  auto issued = pki.IssueFor(server);
  ASSERT_FALSE(issued);
  EXPECT_EQ(issued.error().message(),
            "lint e_san_well_formed: 'bad_name.example' is not a valid DNS name");
}

TEST_F(LintTest, IdentityMatchesRequest) {
  auto c = Device(ProfileKind::kIDevID);
  CertificateTemplate other = c.tmpl;
  other.device = Identity("SN-999", "Other Org");
  auto messages = Lint(c.precert, other, pki.policy, c.issuer);
  EXPECT_THAT(
      Of(messages, "e_identity_matches_request"),
      ElementsAre("subject O differs from the request", "subject CN differs from the request",
                  "subject serialNumber differs from the request",
                  "subjectAltName does not carry the device's URN and hardwareModuleName"));
  CertificateTemplate other_key = c.tmpl;
  other_key.subject_key = NewKey().public_key();
  EXPECT_THAT(Of(Lint(c.precert, other_key, pki.policy, c.issuer), "e_identity_matches_request"),
              ElementsAre("subject public key differs from the requested key"));
  // serialNumber re-encoded as UTF8String: same text, wrong type.
  auto utf8 = Mutated(c, [](X509* x) {
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_ENTRY* e =
        X509_NAME_delete_entry(name, X509_NAME_get_index_by_NID(name, NID_serialNumber, -1));
    X509_NAME_ENTRY_free(e);
    X509_NAME_add_entry_by_NID(name, NID_serialNumber, V_ASN1_UTF8STRING,
                               reinterpret_cast<const unsigned char*>("SN-000123"), -1, -1, 0);
  });
  EXPECT_EQ(utf8.serial_number(), "SN-000123");
  EXPECT_THAT(Of(Run(c, utf8), "e_identity_matches_request"),
              ElementsAre("subject serialNumber must be a PrintableString"));
}

TEST_F(LintTest, DerSizeBudget) {
  auto c = Device(ProfileKind::kIDevID);
  pki.policy.idevid.max_der_size = 400;
  EXPECT_THAT(Of(Run(c), "e_der_size_budget"),
              ElementsAre("certificate is " + std::to_string(c.precert.ToDer().size()) +
                          " bytes, budget 400"));
  pki.policy.idevid.max_der_size = c.precert.ToDer().size();
  EXPECT_THAT(Of(Run(c), "e_der_size_budget"), ::testing::IsEmpty());
}

}  // namespace
}  // namespace iotpki::x509
