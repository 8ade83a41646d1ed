#include "iotpki/x509/lint.h"

#include <algorithm>
#include <array>

#include "iotpki/common/clock.h"
#include "iotpki/common/der.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {
namespace {

struct Input {
  const Certificate& cert;
  const CertificateTemplate& tmpl;
  const Policy& policy;
  const Certificate* issuer;  // null for a root
  const ProfilePolicy& profile;
};

// A rule appends one message per problem it finds.
using Messages = std::vector<std::string>;
using RuleFn = void (*)(const Input&, Messages&);

std::string ExtensionName(std::string_view oid) {
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {internal::kOidBasicConstraints, "basicConstraints"},
      {internal::kOidKeyUsage, "keyUsage"},
      {internal::kOidExtKeyUsage, "extendedKeyUsage"},
      {internal::kOidSubjectAltName, "subjectAltName"},
      {internal::kOidSubjectKeyId, "subjectKeyIdentifier"},
      {internal::kOidAuthorityKeyId, "authorityKeyIdentifier"},
      {internal::kOidCrlDistributionPoints, "cRLDistributionPoints"},
      {internal::kOidAuthorityInfoAccess, "authorityInfoAccess"},
      {internal::kOidOcspNoCheck, "ocspNoCheck"},
  };
  for (const auto& [o, name] : kNames) {
    if (o == oid) return std::string(name);
  }
  return "extension " + std::string(oid);
}

std::string KeyUsageText(std::optional<uint16_t> bits) {
  if (!bits) return "absent";
  static constexpr std::string_view kNames[] = {
      "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
      "keyCertSign",      "cRLSign",        "encipherOnly",    "decipherOnly"};
  std::string out;
  for (int i = 0; i < 9; ++i) {
    if (*bits & (1u << i)) {
      if (!out.empty()) out += ",";
      out += kNames[i];
    }
  }
  return "{" + out + "}";
}

std::string Days(int64_t seconds) {
  int64_t days = (seconds + kSecondsPerDay - 1) / kSecondsPerDay;
  return std::to_string(days) + (days == 1 ? " day" : " days");
}

const crypto::PublicKey& IssuerKey(const Input& in) {
  return in.issuer != nullptr ? in.issuer->public_key() : in.cert.public_key();
}

Bytes IssuerKeyId(const Certificate& issuer) {
  if (!issuer.subject_key_id().empty()) return issuer.subject_key_id();
  return issuer.public_key().KeyIdentifier();
}

std::string_view Profile(const Input& in) { return ProfileName(in.tmpl.kind); }

// --- Rules, in order -------------------------------------------------------------------------

void SerialLengthAndSign(const Input& in, Messages& out) {
  const Bytes& serial = in.cert.serial();
  // Certificate::FromDer refuses negative serials; a magnitude of 16 octets with the top bit
  // clear is an INTEGER of exactly 16 content octets.
  if (serial.size() != 16 || serial[0] == 0 || (serial[0] & 0x80)) {
    out.push_back("serial is " + std::to_string(serial.size()) +
                  " octets; the policy requires a positive 16-octet INTEGER");
  }
  if (serial != internal::IntegerMagnitude(in.tmpl.serial)) {
    out.push_back("serial differs from the template's");
  }
}

void SignatureAlgorithm(const Input& in, Messages& out) {
  const crypto::PublicKey& key = IssuerKey(in);
  std::string_view expected;
  if (key.type() == crypto::KeyType::kP256) {
    expected = internal::kOidEcdsaSha256;
  } else if (key.type() == crypto::KeyType::kP384) {
    expected = internal::kOidEcdsaSha384;
  } else {
    out.push_back("issuer key " + key.Describe() + " is not a P-256 or P-384 CA key");
    return;
  }
  if (in.cert.signature_algorithm() != expected) {
    out.push_back("signature algorithm " + in.cert.signature_algorithm() + " does not match the " +
                  key.Describe() + " issuer key (expected " + std::string(expected) + ")");
  }
  if (in.cert.tbs_signature_algorithm() != in.cert.signature_algorithm()) {
    out.push_back("TBSCertificate signature algorithm differs from the outer one");
  }
  if (in.cert.tbs_signature_has_parameters()) {
    out.push_back("ECDSA signature algorithm parameters must be absent (RFC 5758)");
  }
}

void IssuerMatches(const Input& in, Messages& out) {
  ByteView issuer_name = in.cert.issuer_der();
  ByteView expected = in.issuer != nullptr ? in.issuer->subject_der() : in.cert.subject_der();
  if (!std::equal(issuer_name.begin(), issuer_name.end(), expected.begin(), expected.end())) {
    out.push_back(in.issuer != nullptr
                      ? "issuer name is not byte-identical to the issuer certificate's subject"
                      : "a self-signed root's issuer name must equal its subject");
  }
  if (in.issuer == nullptr) return;
  if (!in.issuer->is_ca()) out.push_back("the issuer certificate is not a CA");
  auto ku = in.issuer->key_usage();
  if (!ku || !(*ku & key_usage::kKeyCertSign)) {
    out.push_back("the issuer certificate's keyUsage lacks keyCertSign");
  }
}

void KeyAlgorithmAllowed(const Input& in, Messages& out) {
  if (auto ok = CheckKeyAllowed(in.policy, in.tmpl.kind, in.cert.public_key()); !ok) {
    out.push_back(ok.error().message());
  }
}

void ValidityWithinPolicy(const Input& in, Messages& out) {
  int64_t nb = in.cert.not_before();
  int64_t na = in.cert.not_after();
  if (nb >= na) out.push_back("notBefore is not before notAfter");
  if (nb != in.tmpl.not_before || na != in.tmpl.not_after) {
    out.push_back("validity differs from the template's");
  }
  if (in.profile.no_expiry) {
    if (na != kNoExpiryUnix) {
      out.push_back("notAfter must be 99991231235959Z (IEEE 802.1AR: no expiry), not " +
                    FormatUtc(na));
    }
  } else if (na - nb > in.profile.max_validity) {
    out.push_back("validity of " + Days(na - nb) + " exceeds the " + std::string(Profile(in)) +
                  " maximum of " + Days(in.profile.max_validity));
  }
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  auto check_encoding = [&out](bool utc, int64_t unix, std::string_view field) {
    bool want_utc = unix < 2524608000;  // 2050-01-01T00:00:00Z
    if (utc != want_utc) {
      out.push_back(std::string(field) + " must be " +
                    (want_utc ? "UTCTime before 2050" : "GeneralizedTime from 2050"));
    }
  };
  check_encoding(in.cert.not_before_is_utc_time(), nb, "notBefore");
  check_encoding(in.cert.not_after_is_utc_time(), na, "notAfter");
}

void ValidityWithinIssuer(const Input& in, Messages& out) {
  if (in.issuer == nullptr || in.profile.no_expiry) return;
  if (in.cert.not_after() > in.issuer->not_after()) {
    out.push_back("notAfter " + FormatUtc(in.cert.not_after()) + " is after the issuer's " +
                  FormatUtc(in.issuer->not_after()));
  }
}

void ExtensionsWellFormed(const Input& in, Messages& out) {
  if (in.cert.version() != 3) out.push_back("certificate is not version 3");
  const auto& exts = in.cert.extensions();
  for (size_t i = 0; i < exts.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (exts[i].oid == exts[j].oid) {
        out.push_back(ExtensionName(exts[i].oid) + " appears more than once");
      }
    }
    // OpenSSL's decoders tolerate bytes after the value; DER does not.
    der::Reader r(exts[i].value);
    if (!r.Next() || !r.empty()) {
      out.push_back(ExtensionName(exts[i].oid) + " value is not a single DER element");
    }
  }
  if (!in.cert.extensions_decode()) out.push_back("an extension does not decode");
}

std::vector<std::string_view> ExpectedExtensions(const CertificateTemplate& tmpl) {
  const std::string_view bc = internal::kOidBasicConstraints, ku = internal::kOidKeyUsage,
                         eku = internal::kOidExtKeyUsage, san = internal::kOidSubjectAltName,
                         ski = internal::kOidSubjectKeyId, aki = internal::kOidAuthorityKeyId;
  std::vector<std::string_view> out;
  switch (tmpl.kind) {
    case ProfileKind::kRoot:
      return {bc, ku, ski};
    case ProfileKind::kIssuingCa:
      return {bc, ku, ski, aki};
    case ProfileKind::kIDevID:
      out = {ku, san, aki};
      break;
    case ProfileKind::kLDevID:
      out = {ku, eku, san, aki};
      break;
    case ProfileKind::kTlsServer:
      return {ku, eku, san, aki};
    case ProfileKind::kOcspResponder:
      return {ku, eku, internal::kOidOcspNoCheck, aki};
    case ProfileKind::kCommandSigner:
      return {ku, eku, aki};
  }
  // The URLs the operator configured (CertificateTemplate::crl_url, ocsp_url).
  if (!tmpl.crl_url.empty()) out.push_back(internal::kOidCrlDistributionPoints);
  if (!tmpl.ocsp_url.empty()) out.push_back(internal::kOidAuthorityInfoAccess);
  return out;
}

void RequiredExtensions(const Input& in, Messages& out) {
  auto expected = ExpectedExtensions(in.tmpl);
  for (auto oid : expected) {
    if (in.cert.FindExtension(oid) == nullptr) out.push_back(ExtensionName(oid) + " is missing");
  }
  for (const auto& ext : in.cert.extensions()) {
    if (std::find(expected.begin(), expected.end(), ext.oid) == expected.end()) {
      out.push_back(ExtensionName(ext.oid) + " is not part of the " + std::string(Profile(in)) +
                    " profile");
    }
  }
}

void ExtensionCriticality(const Input& in, Messages& out) {
  for (const auto& ext : in.cert.extensions()) {
    bool must_be_critical =
        ext.oid == internal::kOidBasicConstraints || ext.oid == internal::kOidKeyUsage;
    if (ext.critical != must_be_critical) {
      out.push_back(ExtensionName(ext.oid) +
                    (must_be_critical ? " must be critical" : " must not be critical"));
    }
  }
}

void CaBasicConstraints(const Input& in, Messages& out) {
  const bool ca = IsCaProfile(in.tmpl.kind);
  if (!ca) {
    if (in.cert.is_ca()) out.push_back("an end-entity certificate must not be a CA");
    return;
  }
  if (!in.cert.is_ca()) {
    out.push_back("a CA certificate needs basicConstraints CA:TRUE");
    return;
  }
  if (in.cert.path_len() != in.tmpl.path_len) {
    out.push_back("pathLenConstraint differs from the template's");
  }
  if (in.tmpl.kind == ProfileKind::kIssuingCa && in.cert.path_len() != 0) {
    out.push_back("an issuing CA needs pathLenConstraint 0");
  }
  if (in.issuer != nullptr && in.issuer->path_len() && *in.issuer->path_len() < 1) {
    out.push_back("the issuer's pathLenConstraint 0 forbids issuing a CA");
  }
}

void KeyUsage(const Input& in, Messages& out) {
  uint16_t expected = IsCaProfile(in.tmpl.kind) ? (key_usage::kKeyCertSign | key_usage::kCrlSign)
                                                : key_usage::kDigitalSignature;
  if (in.cert.key_usage() != expected) {
    out.push_back("keyUsage is " + KeyUsageText(in.cert.key_usage()) + ", the " +
                  std::string(Profile(in)) + " profile requires " + KeyUsageText(expected));
  }
}

void ExtendedKeyUsage(const Input& in, Messages& out) {
  std::vector<std::string> expected;
  if (in.tmpl.kind == ProfileKind::kLDevID) expected = {"clientAuth"};
  if (in.tmpl.kind == ProfileKind::kTlsServer) expected = {"serverAuth"};
  if (in.tmpl.kind == ProfileKind::kOcspResponder) expected = {"OCSPSigning"};
  if (in.tmpl.kind == ProfileKind::kCommandSigner) {
    expected = {std::string(kOidCommandSigning), "clientAuth"};
  }
  if (in.cert.extended_key_usage() != expected) {
    std::string got, want;
    for (const auto& e : in.cert.extended_key_usage()) got += (got.empty() ? "" : ",") + e;
    for (const auto& e : expected) want += (want.empty() ? "" : ",") + e;
    out.push_back("extendedKeyUsage is {" + got + "}, the " + std::string(Profile(in)) +
                  " profile requires {" + want + "}");
  }
}

void KeyIdentifiers(const Input& in, Messages& out) {
  const Bytes& ski = in.cert.subject_key_id();
  const Bytes& aki = in.cert.authority_key_id();
  if (!ski.empty() && ski != in.cert.public_key().KeyIdentifier()) {
    out.push_back("subjectKeyIdentifier is not the SHA-1 of the subject key");
  }
  if (in.issuer != nullptr && in.cert.FindExtension(internal::kOidAuthorityKeyId) != nullptr &&
      aki != IssuerKeyId(*in.issuer)) {
    out.push_back("authorityKeyIdentifier does not match the issuer's subjectKeyIdentifier");
  }
  if (in.issuer == nullptr && !aki.empty() && aki != ski) {
    out.push_back("a self-signed root's authorityKeyIdentifier must equal its own SKI");
  }
}

bool IsHostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return false;
    }
    start = dot + 1;
  }
  return true;
}

bool IsDeviceUrn(std::string_view uri) {
  constexpr std::string_view kPrefix = "urn:dev:os:";
  if (uri.substr(0, kPrefix.size()) != kPrefix) return false;
  uri.remove_prefix(kPrefix.size());
  size_t dash = uri.find('-');
  if (dash == 0 || dash == std::string_view::npos || uri[0] == '0') return false;
  for (size_t i = 0; i < dash; ++i) {
    if (uri[i] < '0' || uri[i] > '9') return false;
  }
  return ValidateSerial(uri.substr(dash + 1)).has_value();
}

void SanWellFormed(const Input& in, Messages& out) {
  const SubjectAltNames& san = in.cert.subject_alt_names();
  bool present = in.cert.FindExtension(internal::kOidSubjectAltName) != nullptr;
  if (!present) return;  // whether it must be there is e_required_extensions' business
  if (san.empty()) {
    out.push_back("subjectAltName is empty or does not decode");
    return;
  }
  if (san.other > 0) out.push_back("subjectAltName has entries of unsupported kinds");
  if (IsDeviceProfile(in.tmpl.kind)) {
    if (san.uris.size() != 1 || !IsDeviceUrn(san.uris.front())) {
      out.push_back("a device certificate needs exactly one urn:dev:os URI (RFC 9039)");
    }
    if (san.hardware_module_names.size() != 1 ||
        san.hardware_module_names.front().hw_serial.empty()) {
      out.push_back("a device certificate needs exactly one hardwareModuleName (RFC 4108)");
    }
    if (!san.dns_names.empty() || !san.ip_addresses.empty()) {
      out.push_back("a device certificate carries no DNS names or IP addresses");
    }
  } else if (in.tmpl.kind == ProfileKind::kTlsServer) {
    if (san.dns_names.empty() && san.ip_addresses.empty()) {
      out.push_back("a TLS server certificate needs a DNS name or an IP address");
    }
    for (const auto& dns : san.dns_names) {
      if (!IsHostname(dns)) out.push_back("'" + dns + "' is not a valid DNS name");
    }
    if (!san.uris.empty() || !san.hardware_module_names.empty()) {
      out.push_back("a TLS server certificate carries only DNS names and IP addresses");
    }
  } else {
    out.push_back("a CA certificate carries no subjectAltName");
  }
}

void IdentityMatchesRequest(const Input& in, Messages& out) {
  if (!(in.cert.public_key() == in.tmpl.subject_key)) {
    out.push_back("subject public key differs from the requested key");
  }
  const std::vector<NameAttribute>& subject = in.cert.subject_attributes();
  auto first = [&subject](std::string_view oid) -> const NameAttribute* {
    for (const auto& a : subject) {
      if (a.oid == oid) return &a;
    }
    return nullptr;
  };
  NameFields want = IsDeviceProfile(in.tmpl.kind) ? DeviceSubject(in.tmpl.device) : in.tmpl.subject;
  struct Field {
    std::string_view oid;
    const std::string& value;
    uint8_t tag;
    std::string_view name;
  };
  const Field fields[] = {
      {internal::kOidCountry, want.country, der::kPrintableString, "C"},
      {internal::kOidOrganization, want.organization, der::kUtf8String, "O"},
      {internal::kOidCommonName, want.common_name, der::kUtf8String, "CN"},
      {internal::kOidSerialNumber, want.serial_number, der::kPrintableString, "serialNumber"},
  };
  size_t expected_entries = 0;
  for (const auto& f : fields) {
    if (f.value.empty()) continue;
    ++expected_entries;
    const NameAttribute* got = first(f.oid);
    if (got == nullptr || got->value != f.value) {
      out.push_back("subject " + std::string(f.name) + " differs from the request");
    } else if (got->tag != f.tag) {
      out.push_back("subject " + std::string(f.name) + " must be a " +
                    (f.tag == der::kUtf8String ? "UTF8String" : "PrintableString"));
    }
  }
  if (subject.size() != expected_entries) {
    out.push_back("subject has attributes that were not requested");
  }
  const SubjectAltNames& san = in.cert.subject_alt_names();
  if (IsDeviceProfile(in.tmpl.kind)) {
    if (san != DeviceSubjectAltNames(in.tmpl.device, in.policy.enterprise_number)) {
      out.push_back("subjectAltName does not carry the device's URN and hardwareModuleName");
    }
  } else if (in.tmpl.kind == ProfileKind::kTlsServer) {
    auto normalized = [](const std::vector<std::string>& ips) {
      std::vector<Bytes> out;
      for (const auto& ip : ips) out.push_back(internal::IpFromText(ip).value_or(Bytes{}));
      return out;
    };
    if (san.dns_names != in.tmpl.dns_names ||
        normalized(san.ip_addresses) != normalized(in.tmpl.ip_addresses)) {
      out.push_back("subjectAltName differs from the requested names");
    }
  }
}

void DerSizeBudget(const Input& in, Messages& out) {
  size_t size = in.cert.ToDer().size();
  // The budget is the identity's: the CRL and OCSP URLs are the operator's choice, and their
  // length is added to it rather than taken from it.
  for (const auto& ext : in.cert.extensions()) {
    if (ext.oid == internal::kOidCrlDistributionPoints ||
        ext.oid == internal::kOidAuthorityInfoAccess) {
      size -= std::min(size, internal::EncodeExtension(ext.oid, ext.critical, ext.value).size());
    }
  }
  if (in.profile.max_der_size != 0 && size > in.profile.max_der_size) {
    out.push_back("certificate is " + std::to_string(size) + " bytes, budget " +
                  std::to_string(in.profile.max_der_size));
  }
}

struct Rule {
  std::string_view name;
  RuleFn fn;
};

constexpr Rule kRules[] = {
    {"e_serial_length_and_sign", SerialLengthAndSign},
    {"e_signature_algorithm", SignatureAlgorithm},
    {"e_issuer_matches", IssuerMatches},
    {"e_key_algorithm_allowed", KeyAlgorithmAllowed},
    {"e_validity_within_policy", ValidityWithinPolicy},
    {"e_validity_within_issuer", ValidityWithinIssuer},
    {"e_extensions_well_formed", ExtensionsWellFormed},
    {"e_required_extensions", RequiredExtensions},
    {"e_extension_criticality", ExtensionCriticality},
    {"e_ca_basic_constraints", CaBasicConstraints},
    {"e_key_usage", KeyUsage},
    {"e_extended_key_usage", ExtendedKeyUsage},
    {"e_key_identifiers", KeyIdentifiers},
    {"e_san_well_formed", SanWellFormed},
    {"e_identity_matches_request", IdentityMatchesRequest},
    {"e_der_size_budget", DerSizeBudget},
};

constexpr auto kRuleNames = [] {
  std::array<std::string_view, std::size(kRules)> names{};
  for (size_t i = 0; i < std::size(kRules); ++i) names[i] = kRules[i].name;
  return names;
}();

}  // namespace

std::span<const std::string_view> LintNames() { return kRuleNames; }

std::vector<LintFinding> Lint(const Certificate& precert, const CertificateTemplate& tmpl,
                              const Policy& policy, const Certificate* issuer) {
  Input in{precert, tmpl, policy, issuer, policy.For(tmpl.kind)};
  std::vector<LintFinding> findings;
  for (const Rule& rule : kRules) {
    Messages messages;
    rule.fn(in, messages);
    for (auto& m : messages) findings.push_back({std::string(rule.name), std::move(m)});
  }
  return findings;
}

}  // namespace iotpki::x509
