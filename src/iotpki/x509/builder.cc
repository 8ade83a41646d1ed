#include "iotpki/x509/builder.h"

#include <algorithm>
#include <chrono>

#include "iotpki/common/clock.h"
#include "iotpki/common/der.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/internal.h"
#include "iotpki/x509/lint.h"

namespace iotpki::x509 {
namespace {

using internal::EncodeExtension;

bool IsPrintableString(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              std::string_view(" '()+,-./:=?").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Refuses what cannot be encoded faithfully. Policy questions (lengths allowed, validity, key
// types) are the lints' business, so that a refusal names the rule.
Result<NameFields> SubjectFor(const CertificateTemplate& tmpl) {
  if (IsDeviceProfile(tmpl.kind)) {
    IOTPKI_CHECK(ValidateDeviceIdentity(tmpl.device));
    return DeviceSubject(tmpl.device);
  }
  const NameFields& s = tmpl.subject;
  IOTPKI_CHECK(ValidateCommonName(s.common_name));
  if (!s.organization.empty()) IOTPKI_CHECK(ValidateOrganization(s.organization));
  if (!IsPrintableString(s.country) || !IsPrintableString(s.serial_number)) {
    return Fail(Code::kInvalidArgument,
                "country and serialNumber must be PrintableString characters");
  }
  if (!s.country.empty() && s.country.size() != 2) {
    return Fail(Code::kInvalidArgument, "country must be a two-letter code");
  }
  return s;
}

Result<SubjectAltNames> SanFor(const CertificateTemplate& tmpl, const Policy& policy) {
  if (IsDeviceProfile(tmpl.kind))
    return DeviceSubjectAltNames(tmpl.device, policy.enterprise_number);
  SubjectAltNames san;
  if (tmpl.kind == ProfileKind::kTlsServer) {
    if (tmpl.dns_names.empty() && tmpl.ip_addresses.empty()) {
      return Fail(Code::kInvalidArgument, "a TLS server certificate needs a DNS name or an IP");
    }
    san.dns_names = tmpl.dns_names;
    san.ip_addresses = tmpl.ip_addresses;
  }
  return san;
}

Bytes BasicConstraints(std::optional<int> path_len) {
  if (path_len) return der::Sequence({der::Boolean(true), der::SmallInteger(*path_len)});
  return der::Sequence({der::Boolean(true)});
}

Bytes AuthorityKeyIdOf(const Certificate& issuer) {
  // RFC 5280 4.2.1.1: the AKI must equal the issuer's SKI, however that was computed.
  if (!issuer.subject_key_id().empty()) return issuer.subject_key_id();
  return issuer.public_key().KeyIdentifier();
}

Result<Bytes> Extensions(const CertificateTemplate& tmpl, const Certificate* issuer,
                         const Policy& policy) {
  using internal::kOidAuthorityKeyId;
  const bool ca = IsCaProfile(tmpl.kind);
  Bytes list;
  auto add = [&list](const Bytes& ext) { list.insert(list.end(), ext.begin(), ext.end()); };

  if (ca) {
    if (tmpl.path_len && (*tmpl.path_len < 0 || *tmpl.path_len > 255)) {
      return Fail(Code::kInvalidArgument, "path length must be between 0 and 255");
    }
    add(EncodeExtension(internal::kOidBasicConstraints, true, BasicConstraints(tmpl.path_len)));
    add(EncodeExtension(internal::kOidKeyUsage, true,
                        internal::EncodeKeyUsage(key_usage::kKeyCertSign | key_usage::kCrlSign)));
  } else {
    add(EncodeExtension(internal::kOidKeyUsage, true,
                        internal::EncodeKeyUsage(key_usage::kDigitalSignature)));
  }
  if (tmpl.kind == ProfileKind::kLDevID || tmpl.kind == ProfileKind::kTlsServer ||
      tmpl.kind == ProfileKind::kOcspResponder) {
    std::string_view purpose = tmpl.kind == ProfileKind::kLDevID      ? internal::kOidClientAuth
                               : tmpl.kind == ProfileKind::kTlsServer ? internal::kOidServerAuth
                                                                      : internal::kOidOcspSigning;
    add(EncodeExtension(internal::kOidExtKeyUsage, false, der::Sequence({der::Oid(purpose)})));
  }
  if (tmpl.kind == ProfileKind::kCommandSigner) {
    add(EncodeExtension(
        internal::kOidExtKeyUsage, false,
        der::Sequence({der::Oid(kOidCommandSigning), der::Oid(internal::kOidClientAuth)})));
  }
  if (tmpl.kind == ProfileKind::kOcspResponder) {
    add(EncodeExtension(internal::kOidOcspNoCheck, false, der::Tlv(der::kNull, {})));
  }
  if (IsDeviceProfile(tmpl.kind)) {
    IOTPKI_TRY(Bytes status, internal::EncodeStatusExtensions(tmpl.crl_url, tmpl.ocsp_url));
    list.insert(list.end(), status.begin(), status.end());
  } else if (!tmpl.crl_url.empty() || !tmpl.ocsp_url.empty()) {
    return Fail(Code::kInvalidArgument, "only device certificates carry CRL and OCSP URLs");
  }
  if (!ca && tmpl.kind != ProfileKind::kOcspResponder && tmpl.kind != ProfileKind::kCommandSigner) {
    IOTPKI_TRY(SubjectAltNames san, SanFor(tmpl, policy));
    IOTPKI_TRY(Bytes names, internal::EncodeGeneralNames(san));
    add(EncodeExtension(internal::kOidSubjectAltName, false, names));
  }
  // IDevIDs carry no SKI: nothing looks a device certificate up by it, and it costs 31 bytes.
  if (ca) {
    add(EncodeExtension(internal::kOidSubjectKeyId, false,
                        der::OctetString(tmpl.subject_key.KeyIdentifier())));
  }
  if (issuer != nullptr) {
    add(EncodeExtension(kOidAuthorityKeyId, false,
                        internal::EncodeAuthorityKeyId(AuthorityKeyIdOf(*issuer))));
  }
  return der::Constructed(der::ContextConstructed(3), {der::Tlv(der::kSequence, list)});
}

Result<Bytes> BuildTbs(const CertificateTemplate& tmpl, const Certificate* issuer,
                       ByteView algorithm, const Policy& policy) {
  if (tmpl.serial.empty()) return Fail(Code::kInvalidArgument, "the template has no serial");
  if (tmpl.kind == ProfileKind::kRoot && issuer != nullptr) {
    return Fail(Code::kInvalidArgument, "a root certificate is self-signed: pass no issuer");
  }
  if (tmpl.kind != ProfileKind::kRoot && issuer == nullptr) {
    return Fail(Code::kInvalidArgument,
                std::string(ProfileName(tmpl.kind)) + " certificates need an issuer");
  }
  IOTPKI_TRY(NameFields subject_fields, SubjectFor(tmpl));
  Bytes subject = internal::EncodeName(subject_fields);
  // The issuer name is copied byte for byte: chain building compares names, and a re-encoding
  // (another string type, another attribute order) would not match.
  Bytes issuer_name = issuer != nullptr
                          ? Bytes(issuer->subject_der().begin(), issuer->subject_der().end())
                          : subject;
  IOTPKI_TRY(Bytes extensions, Extensions(tmpl, issuer, policy));
  Bytes version = der::Constructed(der::ContextConstructed(0), {der::SmallInteger(2)});
  Bytes validity = der::Sequence({der::Time(tmpl.not_before), der::Time(tmpl.not_after)});
  return der::Sequence({version, der::UnsignedInteger(tmpl.serial), algorithm, issuer_name,
                        validity, subject, tmpl.subject_key.ToDer(), extensions});
}

}  // namespace

Bytes NewSerial() {
  Bytes serial = crypto::RandomBytes(16);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto time = static_cast<uint64_t>(std::max<int64_t>(micros, 0));
  for (size_t i = 0; i < 7; ++i) serial[i] = static_cast<uint8_t>(time >> (8 * (6 - i)));
  // Positive, and never a zero first octet, which DER would drop (a 15-octet INTEGER). From 1979
  // to about 3100 the time's first octet is already 0x01..0x7f.
  serial[0] &= 0x7f;
  if (serial[0] == 0) serial[0] = 1;
  return serial;
}

CertificateTemplate NewTemplate(ProfileKind kind, const crypto::PublicKey& subject_key, int64_t now,
                                const Policy& policy) {
  const ProfilePolicy& profile = policy.For(kind);
  int64_t not_before = now - policy.backdate;
  return CertificateTemplate{
      .kind = kind,
      .serial = NewSerial(),
      .subject_key = subject_key,
      .not_before = not_before,
      .not_after = profile.no_expiry ? kNoExpiryUnix : not_before + profile.default_validity,
      .path_len = kind == ProfileKind::kIssuingCa ? std::optional<int>(0) : std::nullopt,
  };
}

Result<Certificate> BuildPrecertificate(const CertificateTemplate& tmpl, const Certificate* issuer,
                                        const crypto::Signer& issuer_key, const Policy& policy) {
  IOTPKI_TRY(Bytes algorithm, internal::SignatureAlgorithm(issuer_key));
  IOTPKI_TRY(Bytes tbs, BuildTbs(tmpl, issuer, algorithm, policy));
  IOTPKI_TRY(Bytes placeholder, internal::PlaceholderSignature(issuer_key.public_key()));
  auto precert =
      Certificate::FromDer(der::Sequence({tbs, algorithm, placeholder}), tmpl.subject_key);
  if (!precert) {
    return Fail(Code::kInternal, "the certificate builder produced an unreadable certificate",
                precert.error().ToString());
  }
  return precert;
}

Result<Certificate> Issue(const CertificateTemplate& tmpl, const Certificate* issuer,
                          const crypto::Signer& issuer_key, const Policy& policy) {
  const crypto::PublicKey& expected = issuer != nullptr ? issuer->public_key() : tmpl.subject_key;
  if (!(issuer_key.public_key() == expected)) {
    return Fail(Code::kFailedPrecondition,
                issuer != nullptr ? "the signing key does not belong to the issuer certificate"
                                  : "a root must be signed with its own key");
  }
  IOTPKI_TRY(Certificate precert, BuildPrecertificate(tmpl, issuer, issuer_key, policy));
  std::vector<LintFinding> findings = Lint(precert, tmpl, policy, issuer);
  if (!findings.empty()) {
    std::string detail;
    for (const auto& f : findings) {
      if (!detail.empty()) detail += "; ";
      detail += f.lint + ": " + f.message;
    }
    return Fail(Code::kFailedPrecondition,
                "lint " + findings.front().lint + ": " + findings.front().message, detail);
  }
  IOTPKI_TRY(Bytes algorithm, internal::SignatureAlgorithm(issuer_key));
  IOTPKI_TRY(Bytes der, internal::SignAndAssemble(precert.tbs_der(), algorithm, issuer_key));
  // The signed certificate is the linted pre-certificate with another signature: its fields
  // are taken over rather than parsed again (OpenSSL 3.0's d2i_X509 costs several signatures).
  auto cert = Certificate::FromSignedPrecertificate(precert, der);
  if (!cert)
    return Fail(Code::kInternal, "the signed certificate is unreadable", cert.error().ToString());
  // A signer (HSM, TPM, remote KMS) that returns a wrong signature must not get a certificate
  // out of the door: check it before anyone stores or sends it.
  if (!issuer_key.in_process() &&
      !issuer_key.public_key().Verify(cert->tbs_der(), cert->signature(), issuer_key.digest())) {
    return Fail(Code::kInternal, "the issuer's signature on the new certificate does not verify");
  }
  return cert;
}

}  // namespace iotpki::x509
