#include "iotpki/x509/certificate.h"

#include <algorithm>
#include <atomic>
#include <mutex>

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

std::atomic<bool> internal::g_fast_parse{true};

// Everything read from the certificate except the bytes themselves (copied as a whole when a
// signed certificate is made from its pre-certificate).
struct ParsedFields {
  Bytes serial;
  std::string subject;
  std::string issuer;
  std::string common_name;
  std::string serial_number;
  std::string organization;
  int64_t not_before = 0;
  int64_t not_after = 0;
  std::optional<crypto::PublicKey> public_key;
  bool is_ca = false;
  std::optional<int> path_len;
  std::optional<uint16_t> key_usage;
  std::vector<std::string> extended_key_usage;
  Bytes subject_key_id;
  Bytes authority_key_id;
  SubjectAltNames san;
  std::vector<Extension> extensions;
  std::string signature_algorithm;
  // What the lints look at beyond the accessors.
  int version = 1;
  std::string tbs_signature_algorithm;
  bool tbs_signature_parameters = false;
  uint8_t not_before_tag = 0;
  uint8_t not_after_tag = 0;
  std::vector<NameAttribute> subject_attributes;
  bool extensions_decode = true;
};

struct Certificate::Impl : ParsedFields {
  Bytes der;
  // Views into `der`, which never moves once the Impl is built.
  ByteView tbs;
  ByteView subject_der;
  ByteView issuer_der;
  ByteView signature;
  // OpenSSL's parse: made by FromDer, or on first use by handle() for a certificate built from
  // its pre-certificate.
  mutable std::once_flag x509_once;
  mutable ossl::UniquePtr<X509> x509;
};

namespace {

Error NotACertificate(std::string detail) {
  return Error(Code::kInvalidArgument, "not an X.509 certificate", std::move(detail));
}

// Reads the parts of the TBSCertificate that must be byte-exact (names, serial) with the strict
// reader: OpenSSL would hand back a re-encoding for some of them.
Result<void> ReadTbs(Certificate::Impl& impl) {
  der::Reader r(impl.tbs);
  IOTPKI_TRY(der::Element tbs, r.Expect(der::kSequence));
  der::Reader f(tbs.contents);
  IOTPKI_CHECK(f.Optional(der::ContextConstructed(0)));
  IOTPKI_TRY(der::Element serial, f.Expect(der::kInteger));
  if (serial.contents.empty() || (serial.contents[0] & 0x80)) {
    return Fail(Code::kInvalidArgument, "certificate serial number is negative");
  }
  if (serial.contents.size() > 1 && serial.contents[0] == 0 && !(serial.contents[1] & 0x80)) {
    return Fail(Code::kInvalidArgument, "certificate serial number is not minimally encoded");
  }
  impl.serial = internal::IntegerMagnitude(serial.contents);
  IOTPKI_CHECK(f.Expect(der::kSequence));  // signature
  IOTPKI_TRY(der::Element issuer, f.Expect(der::kSequence));
  IOTPKI_CHECK(f.Expect(der::kSequence));  // validity
  IOTPKI_TRY(der::Element subject, f.Expect(der::kSequence));
  impl.issuer_der = issuer.whole;
  impl.subject_der = subject.whole;
  return {};
}

// --- The fast path: every field read with the strict DER reader -------------------------------
//
// OpenSSL 3.0's d2i_X509 decodes the public key through its generic decoder framework, which
// costs more than two ECDSA signatures. Certificates in the shapes this project issues are read
// here instead; anything else (names that need RFC 4514 escaping or are not ASCII, multi-valued
// RDNs, other attribute types, algorithm parameters, unique identifiers, duplicate or
// undecodable extensions, SAN entries of other kinds) makes ReadFast return false, and the
// certificate is parsed by OpenSSL as before. Both paths fill the same fields; a unit test
// compares them certificate by certificate.

struct Attr {
  std::string_view oid;
  std::string_view text;  // OpenSSL's short name
};
constexpr Attr kFastAttributes[] = {
    {internal::kOidCommonName, "CN"},
    {internal::kOidSerialNumber, "serialNumber"},
    {internal::kOidCountry, "C"},
    {internal::kOidOrganization, "O"},
    {"2.5.4.11", "OU"},
    {"2.5.4.7", "L"},
    {"2.5.4.8", "ST"},
};

// Printable ASCII that RFC 4514 never escapes, so the text form is the value itself.
bool PlainValue(ByteView v) {
  if (v.empty() || v.front() == ' ' || v.back() == ' ') return false;
  for (uint8_t c : v) {
    if (c < 0x20 || c > 0x7e) return false;
    if (std::string_view(",+\"\\<>;#=").find(static_cast<char>(c)) != std::string_view::npos) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool internal::ReadNameFast(ByteView name, std::string& text,
                            std::vector<x509::NameAttribute>* attributes) {
  der::Reader outer(name);
  auto seq = outer.Expect(der::kSequence);
  if (!seq || !outer.empty()) return false;
  std::vector<std::string> parts;
  der::Reader rdns(seq->contents);
  while (!rdns.empty()) {
    auto set = rdns.Expect(der::kSet);
    if (!set) return false;
    der::Reader one(set->contents);
    auto atv = one.Expect(der::kSequence);
    if (!atv || !one.empty()) return false;  // multi-valued RDNs go to OpenSSL
    der::Reader fields(atv->contents);
    auto oid = fields.Expect(der::kOid);
    auto value = fields.Next();
    if (!oid || !value || !fields.empty()) return false;
    if (value->tag != der::kUtf8String && value->tag != der::kPrintableString) return false;
    if (!PlainValue(value->contents)) return false;
    std::string dotted = der::OidToText(oid->contents);  // empty if malformed: not known
    const Attr* known = nullptr;
    for (const auto& a : kFastAttributes) {
      if (a.oid == dotted) known = &a;
    }
    if (known == nullptr) return false;
    std::string v(value->contents.begin(), value->contents.end());
    parts.push_back(std::string(known->text) + "=" + v);
    if (attributes != nullptr) {
      attributes->push_back({std::move(dotted), value->tag, std::move(v)});
    }
  }
  text.clear();
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!text.empty()) text += ",";
    text += *it;
  }
  return true;
}

NameFields internal::FirstNameFields(const std::vector<x509::NameAttribute>& attributes) {
  auto first = [&attributes](std::string_view oid) {
    for (const auto& a : attributes) {
      if (a.oid == oid) return a.value;
    }
    return std::string();
  };
  return {.organization = first(kOidOrganization),
          .common_name = first(kOidCommonName),
          .serial_number = first(kOidSerialNumber)};
}

std::optional<std::string> internal::AlgorithmFast(ByteView contents) {
  der::Reader r(contents);
  auto oid = r.Expect(der::kOid);
  if (!oid || !r.empty()) return std::nullopt;
  std::string dotted = der::OidToText(oid->contents);
  if (dotted.empty()) return std::nullopt;  // malformed OID encoding
  return dotted;
}

std::optional<SubjectAltNames> internal::GeneralNamesFast(ByteView value) {
  der::Reader outer(value);
  auto seq = outer.Expect(der::kSequence);
  if (!seq || !outer.empty() || seq->contents.empty()) return std::nullopt;
  SubjectAltNames out;
  der::Reader names(seq->contents);
  while (!names.empty()) {
    auto gn = names.Next();
    if (!gn) return std::nullopt;
    std::string text(gn->contents.begin(), gn->contents.end());
    switch (gn->tag) {
      case internal::kGeneralNameUri:
        out.uris.push_back(std::move(text));
        break;
      case internal::kGeneralNameDns:
        out.dns_names.push_back(std::move(text));
        break;
      case internal::kGeneralNameIp: {
        std::string ip = internal::IpToText(gn->contents);
        if (ip.empty()) return std::nullopt;
        out.ip_addresses.push_back(std::move(ip));
        break;
      }
      case internal::kGeneralNameOther: {
        // otherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY } (IMPLICIT [0] tag)
        der::Reader f(gn->contents);
        auto type = f.Expect(der::kOid);
        auto any = f.Expect(der::ContextConstructed(0));
        if (!type || !any || !f.empty()) return std::nullopt;
        if (der::OidToText(type->contents) != internal::kOidHardwareModuleName) {
          return std::nullopt;
        }
        der::Reader a(any->contents);
        auto hmn = a.Expect(der::kSequence);
        if (!hmn || !a.empty()) return std::nullopt;
        der::Reader h(hmn->contents);
        auto hw_type = h.Expect(der::kOid);
        auto hw_serial = h.Expect(der::kOctetString);
        if (!hw_type || !hw_serial || !h.empty()) return std::nullopt;
        if (der::OidToText(hw_type->contents).empty()) return std::nullopt;
        out.hardware_module_names.push_back(
            {der::OidToText(hw_type->contents),
             Bytes(hw_serial->contents.begin(), hw_serial->contents.end())});
        break;
      }
      default:
        return std::nullopt;
    }
  }
  return out;
}

namespace {

bool ExtensionValueFast(ParsedFields& impl, const Extension& ext) {
  der::Reader r(ext.value);
  auto v = r.Next();
  if (!v || !r.empty()) return false;
  if (ext.oid == internal::kOidBasicConstraints) {
    if (v->tag != der::kSequence) return false;
    der::Reader f(v->contents);
    bool ca = false;
    if (f.PeekTag() == der::kBoolean) {
      auto b = f.Next();
      if (!b || b->contents.size() != 1 || b->contents[0] != 0xff) return false;  // DER: TRUE
      ca = true;
    }
    if (!f.empty()) {
      auto len = f.Expect(der::kInteger);
      if (!len || !f.empty()) return false;
      auto n = der::ParseSmallInteger(len->contents);
      if (!n) return false;
      if (ca && *n <= 255) impl.path_len = static_cast<int>(*n);
    }
    impl.is_ca = ca;
  } else if (ext.oid == internal::kOidKeyUsage) {
    if (v->tag != der::kBitString || v->contents.empty() || v->contents[0] > 7) return false;
    // DER: the unused bits are zero (and there are none without content octets).
    uint8_t unused = v->contents[0];
    if (unused != 0 && (v->contents.size() == 1 || (v->contents.back() & ((1u << unused) - 1)))) {
      return false;
    }
    uint16_t bits = 0;
    for (int i = 0; i < 9; ++i) {
      size_t byte = 1 + static_cast<size_t>(i / 8);
      if (byte < v->contents.size() && (v->contents[byte] & (0x80 >> (i % 8)))) {
        bits |= static_cast<uint16_t>(1u << i);
      }
    }
    impl.key_usage = bits;
  } else if (ext.oid == internal::kOidExtKeyUsage) {
    if (v->tag != der::kSequence || v->contents.empty()) return false;
    der::Reader f(v->contents);
    while (!f.empty()) {
      auto oid = f.Expect(der::kOid);
      if (!oid) return false;
      std::string dotted = der::OidToText(oid->contents);
      if (dotted.empty()) return false;
      if (dotted == internal::kOidClientAuth) dotted = "clientAuth";
      if (dotted == internal::kOidServerAuth) dotted = "serverAuth";
      if (dotted == internal::kOidOcspSigning) dotted = "OCSPSigning";
      impl.extended_key_usage.push_back(std::move(dotted));
    }
  } else if (ext.oid == internal::kOidSubjectKeyId) {
    if (v->tag != der::kOctetString) return false;
    impl.subject_key_id.assign(v->contents.begin(), v->contents.end());
  } else if (ext.oid == internal::kOidAuthorityKeyId) {
    if (v->tag != der::kSequence) return false;
    der::Reader f(v->contents);
    if (f.PeekTag() == der::ContextPrimitive(0)) {
      auto id = f.Next();
      if (!id) return false;
      impl.authority_key_id.assign(id->contents.begin(), id->contents.end());
    }
    if (!f.empty()) return false;  // issuer and serial forms go to OpenSSL
  } else if (ext.oid == internal::kOidSubjectAltName) {
    auto san = internal::GeneralNamesFast(ext.value);
    if (!san) return false;
    impl.san = std::move(*san);
  }
  return true;
}

bool ReadFast(Certificate::Impl& impl, ByteView outer_algorithm,
              const crypto::PublicKey* known_key) {
  der::Reader r(impl.tbs);
  auto tbs = r.Expect(der::kSequence);
  if (!tbs) return false;
  der::Reader f(tbs->contents);
  auto version = f.Expect(der::ContextConstructed(0));
  if (!version) return false;
  der::Reader vr(version->contents);
  auto vi = vr.Expect(der::kInteger);
  if (!vi || !vr.empty() || der::ParseSmallInteger(vi->contents).value_or(0) != 2) return false;
  impl.version = 3;
  if (!f.Expect(der::kInteger)) return false;  // serial, read by ReadTbs
  auto alg = f.Expect(der::kSequence);
  if (!alg || !std::equal(alg->whole.begin(), alg->whole.end(), outer_algorithm.begin(),
                          outer_algorithm.end())) {
    return false;
  }
  auto alg_oid = internal::AlgorithmFast(alg->contents);
  if (!alg_oid) return false;
  impl.signature_algorithm = impl.tbs_signature_algorithm = *alg_oid;
  impl.tbs_signature_parameters = false;

  auto issuer = f.Expect(der::kSequence);
  if (!issuer || !internal::ReadNameFast(issuer->whole, impl.issuer, nullptr)) return false;
  auto validity = f.Expect(der::kSequence);
  if (!validity) return false;
  der::Reader times(validity->contents);
  auto nb = times.Next();
  auto na = nb ? times.Next() : nb;
  if (!nb || !na || !times.empty()) return false;
  auto nb_unix = der::ParseTime(*nb);
  auto na_unix = der::ParseTime(*na);
  if (!nb_unix || !na_unix) return false;
  impl.not_before = *nb_unix;
  impl.not_after = *na_unix;
  impl.not_before_tag = nb->tag;
  impl.not_after_tag = na->tag;
  auto subject = f.Expect(der::kSequence);
  if (!subject || !internal::ReadNameFast(subject->whole, impl.subject, &impl.subject_attributes)) {
    return false;
  }
  NameFields names = internal::FirstNameFields(impl.subject_attributes);
  impl.common_name = std::move(names.common_name);
  impl.serial_number = std::move(names.serial_number);
  impl.organization = std::move(names.organization);

  auto spki = f.Expect(der::kSequence);
  if (!spki) return false;
  const Bytes* known = known_key != nullptr ? &known_key->ToDer() : nullptr;
  if (known != nullptr &&
      std::equal(spki->whole.begin(), spki->whole.end(), known->begin(), known->end())) {
    impl.public_key = *known_key;
  } else if (impl.x509 != nullptr) {
    // FromParsed: OpenSSL decoded this key with the certificate that `der` encodes.
    auto key = crypto::PublicKey::FromParsed(X509_get0_pubkey(impl.x509.get()), spki->whole);
    if (!key) return false;
    impl.public_key = std::move(*key);
  } else {
    auto key = crypto::PublicKey::FromDer(spki->whole);
    if (!key) return false;
    impl.public_key = std::move(*key);
  }

  if (!f.empty()) {
    auto exts = f.Expect(der::ContextConstructed(3));  // unique identifiers go to OpenSSL
    if (!exts || !f.empty()) return false;
    der::Reader er(exts->contents);
    auto list = er.Expect(der::kSequence);
    if (!list || !er.empty() || list->contents.empty()) return false;
    der::Reader items(list->contents);
    while (!items.empty()) {
      auto item = items.Expect(der::kSequence);
      if (!item) return false;
      der::Reader x(item->contents);
      auto oid = x.Expect(der::kOid);
      if (!oid) return false;
      bool critical = false;
      if (x.PeekTag() == der::kBoolean) {
        auto b = x.Next();
        if (!b || b->contents.size() != 1 || b->contents[0] != 0xff) return false;
        critical = true;
      }
      auto value = x.Expect(der::kOctetString);
      if (!value || !x.empty()) return false;
      Extension ext{der::OidToText(oid->contents), critical,
                    Bytes(value->contents.begin(), value->contents.end())};
      if (ext.oid.empty()) return false;  // malformed OID encoding
      for (const auto& seen : impl.extensions) {
        if (seen.oid == ext.oid) return false;
      }
      if (!ExtensionValueFast(impl, ext)) return false;
      impl.extensions.push_back(std::move(ext));
    }
  }
  return true;
}

// Resets what ReadFast may have filled before it gave up.
void ClearParsed(ParsedFields& fields) {
  Bytes serial = std::move(fields.serial);
  fields = ParsedFields{};
  fields.serial = std::move(serial);
}

// The lint facts, from OpenSSL's parse.
void ReadLintFactsFromOpenSsl(Certificate::Impl& impl);
Result<void> ReadFields(Certificate::Impl& impl, const crypto::PublicKey* known_key);

void ReadExtensions(Certificate::Impl& impl) {
  X509* x = impl.x509.get();
  for (int i = 0; i < X509_get_ext_count(x); ++i) {
    X509_EXTENSION* ext = X509_get_ext(x, i);
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(ext);
    const uint8_t* p = ASN1_STRING_get0_data(data);
    impl.extensions.push_back({internal::ObjectToOid(X509_EXTENSION_get_object(ext)),
                               X509_EXTENSION_get_critical(ext) > 0,
                               Bytes(p, p + ASN1_STRING_length(data))});
  }
  // X509_get_ext_d2i returns null for an absent, duplicated or undecodable extension; the lints
  // and chain verification judge those cases, the accessors just report "absent".
  if (auto bc = ossl::Own(static_cast<BASIC_CONSTRAINTS*>(
          X509_get_ext_d2i(x, NID_basic_constraints, nullptr, nullptr)))) {
    impl.is_ca = bc->ca != 0;
    if (impl.is_ca && bc->pathlen != nullptr) {
      long v = ASN1_INTEGER_get(bc->pathlen);
      if (v >= 0 && v <= 255) impl.path_len = static_cast<int>(v);
    }
  }
  if (auto ku = ossl::Own(
          static_cast<ASN1_BIT_STRING*>(X509_get_ext_d2i(x, NID_key_usage, nullptr, nullptr)))) {
    uint16_t bits = 0;
    for (int i = 0; i < 9; ++i) {
      if (ASN1_BIT_STRING_get_bit(ku.get(), i)) bits |= static_cast<uint16_t>(1u << i);
    }
    impl.key_usage = bits;
  }
  if (auto eku = ossl::Own(static_cast<EXTENDED_KEY_USAGE*>(
          X509_get_ext_d2i(x, NID_ext_key_usage, nullptr, nullptr)))) {
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
      std::string oid = internal::ObjectToOid(sk_ASN1_OBJECT_value(eku.get(), i));
      if (oid == internal::kOidClientAuth) oid = "clientAuth";
      if (oid == internal::kOidServerAuth) oid = "serverAuth";
      if (oid == internal::kOidOcspSigning) oid = "OCSPSigning";
      impl.extended_key_usage.push_back(std::move(oid));
    }
  }
  if (auto ski = ossl::Own(static_cast<ASN1_OCTET_STRING*>(
          X509_get_ext_d2i(x, NID_subject_key_identifier, nullptr, nullptr)))) {
    const uint8_t* p = ASN1_STRING_get0_data(ski.get());
    impl.subject_key_id.assign(p, p + ASN1_STRING_length(ski.get()));
  }
  if (auto aki = ossl::Own(static_cast<AUTHORITY_KEYID*>(
          X509_get_ext_d2i(x, NID_authority_key_identifier, nullptr, nullptr)))) {
    if (aki->keyid != nullptr) {
      const uint8_t* p = ASN1_STRING_get0_data(aki->keyid);
      impl.authority_key_id.assign(p, p + ASN1_STRING_length(aki->keyid));
    }
  }
  if (auto san = ossl::Own(static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)))) {
    impl.san = internal::DecodeGeneralNames(san.get());
  }
  ossl::ClearErrors();
}

template <class T>
bool DecodesOrAbsent(X509* x, int nid) {
  int crit = -1;
  auto value = ossl::Own(static_cast<T*>(X509_get_ext_d2i(x, nid, &crit, nullptr)));
  ossl::ClearErrors();
  return value != nullptr || crit == -1 || crit == -2;  // -2: duplicated, reported separately
}

void ReadLintFactsFromOpenSsl(Certificate::Impl& impl) {
  X509* x = impl.x509.get();
  impl.version = static_cast<int>(X509_get_version(x)) + 1;
  const ASN1_OBJECT* oid = nullptr;
  int param_type = 0;
  X509_ALGOR_get0(&oid, &param_type, nullptr, X509_get0_tbs_sigalg(x));
  impl.tbs_signature_algorithm = internal::ObjectToOid(oid);
  impl.tbs_signature_parameters = param_type != V_ASN1_UNDEF;
  auto tag = [](const ASN1_TIME* t) {
    return ASN1_STRING_type(t) == V_ASN1_UTCTIME ? der::kUtcTime : der::kGeneralizedTime;
  };
  impl.not_before_tag = tag(X509_get0_notBefore(x));
  impl.not_after_tag = tag(X509_get0_notAfter(x));
  const X509_NAME* subject = X509_get_subject_name(x);
  for (int i = 0; i < X509_NAME_entry_count(subject); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(subject, i);
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(e);
    impl.subject_attributes.push_back({internal::ObjectToOid(X509_NAME_ENTRY_get_object(e)),
                                       static_cast<uint8_t>(ASN1_STRING_type(data)),
                                       internal::StringToUtf8(data).value_or("")});
  }
  impl.extensions_decode = DecodesOrAbsent<BASIC_CONSTRAINTS>(x, NID_basic_constraints) &&
                           DecodesOrAbsent<ASN1_STRING>(x, NID_key_usage) &&
                           DecodesOrAbsent<EXTENDED_KEY_USAGE>(x, NID_ext_key_usage) &&
                           DecodesOrAbsent<ASN1_STRING>(x, NID_subject_key_identifier) &&
                           DecodesOrAbsent<AUTHORITY_KEYID>(x, NID_authority_key_identifier) &&
                           DecodesOrAbsent<GENERAL_NAMES>(x, NID_subject_alt_name);
  ossl::ClearErrors();
}

}  // namespace

Result<Certificate> Certificate::FromDer(ByteView der) { return Parse(der, nullptr); }

Result<Certificate> Certificate::FromDer(ByteView der, const crypto::PublicKey& known_key) {
  return Parse(der, &known_key);
}

Result<Certificate> Certificate::FromParsed(X509* x) {
  if (x == nullptr) return Fail(NotACertificate("no certificate"));
  auto impl = std::make_shared<Impl>();
  impl->der = ossl::ToDer(x, i2d_X509);
  if (impl->der.empty()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not an X.509 certificate"));
  }
  if (X509_up_ref(x) != 1) return Fail(ossl::Drain(Code::kInternal, "cannot share a certificate"));
  impl->x509 = ossl::Own(x);
  IOTPKI_CHECK(ReadFields(*impl, nullptr));
  return Certificate(std::move(impl));
}

Result<Certificate> Certificate::Parse(ByteView der, const crypto::PublicKey* known_key) {
  auto impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  IOTPKI_CHECK(ReadFields(*impl, known_key));
  return Certificate(std::move(impl));
}

namespace {

// Fills every field from impl.der: with the strict DER reader for the shapes it knows, else from
// OpenSSL's parse, which is impl.x509 when set (FromParsed) and made here otherwise.
Result<void> ReadFields(Certificate::Impl& fields, const crypto::PublicKey* known_key) {
  Certificate::Impl* impl = &fields;
  auto parts = internal::SplitSigned(impl->der);
  if (!parts) return Fail(NotACertificate(parts.error().message()));
  impl->tbs = parts->tbs.whole;
  impl->signature = parts->signature;
  if (auto tbs = ReadTbs(*impl); !tbs) return Fail(NotACertificate(tbs.error().message()));
  if (internal::g_fast_parse.load(std::memory_order_relaxed) &&
      ReadFast(*impl, parts->algorithm.whole, known_key)) {
    return {};
  }
  ClearParsed(*impl);

  if (impl->x509 == nullptr) {
    const unsigned char* p = impl->der.data();
    impl->x509 = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(impl->der.size())));
    if (!impl->x509 || p != impl->der.data() + impl->der.size()) {
      return Fail(ossl::Drain(Code::kInvalidArgument, "not an X.509 certificate"));
    }
  }
  X509* x = impl->x509.get();

  const X509_NAME* subject = X509_get_subject_name(x);
  const X509_NAME* issuer = X509_get_issuer_name(x);
  impl->subject = internal::NameToText(subject);
  impl->issuer = internal::NameToText(issuer);
  impl->common_name = internal::NameAttribute(subject, NID_commonName);
  impl->serial_number = internal::NameAttribute(subject, NID_serialNumber);
  impl->organization = internal::NameAttribute(subject, NID_organizationName);

  auto not_before = internal::TimeToUnix(X509_get0_notBefore(x));
  auto not_after = internal::TimeToUnix(X509_get0_notAfter(x));
  if (!not_before || !not_after) {
    return Fail(
        NotACertificate("validity: " + (!not_before ? not_before : not_after).error().message()));
  }
  impl->not_before = *not_before;
  impl->not_after = *not_after;

  Bytes spki = ossl::ToDer(X509_get_X509_PUBKEY(x), i2d_X509_PUBKEY);
  // The key d2i decoded already is shared, not decoded a second time.
  auto key = crypto::PublicKey::FromParsed(X509_get0_pubkey(x), spki);
  if (!key) {
    // X509_get0_pubkey queues the decoder's complaint about a key it cannot read.
    ossl::ClearErrors();
    return Fail(Code::kInvalidArgument, "certificate public key is not supported",
                key.error().ToString());
  }
  impl->public_key = std::move(*key);

  const X509_ALGOR* alg = nullptr;
  X509_get0_signature(nullptr, &alg, x);
  const ASN1_OBJECT* alg_oid = nullptr;
  X509_ALGOR_get0(&alg_oid, nullptr, nullptr, alg);
  impl->signature_algorithm = internal::ObjectToOid(alg_oid);

  ReadExtensions(*impl);
  ReadLintFactsFromOpenSsl(*impl);
  return {};
}

}  // namespace

Result<Certificate> Certificate::FromSignedPrecertificate(const Certificate& precert,
                                                          ByteView der) {
  auto impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  auto parts = internal::SplitSigned(impl->der);
  if (!parts) return Fail(NotACertificate(parts.error().message()));
  if (!std::equal(parts->tbs.whole.begin(), parts->tbs.whole.end(), precert.tbs_der().begin(),
                  precert.tbs_der().end())) {
    return Fail(Code::kInternal, "the signed certificate's TBSCertificate is not the linted one");
  }
  impl->tbs = parts->tbs.whole;
  impl->signature = parts->signature;
  if (auto tbs = ReadTbs(*impl); !tbs) return Fail(NotACertificate(tbs.error().message()));
  static_cast<ParsedFields&>(*impl) = static_cast<const ParsedFields&>(*precert.impl_);
  return Certificate(std::move(impl));
}

Result<Certificate> Certificate::FromPem(std::string_view pem) {
  IOTPKI_TRY(Bytes der, ossl::PemDecode(pem, "CERTIFICATE"));
  return FromDer(der);
}

Result<std::vector<Certificate>> Certificate::ChainFromPem(std::string_view pem) {
  static constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  std::vector<Certificate> out;
  size_t pos = 0;
  while ((pos = pem.find(kBegin, pos)) != std::string_view::npos) {
    auto cert = FromPem(pem.substr(pos));
    if (!cert) {
      return Fail(std::move(cert).error().Context("certificate " + std::to_string(out.size() + 1)));
    }
    out.push_back(std::move(*cert));
    pos += kBegin.size();
  }
  if (out.empty()) return Fail(Code::kInvalidArgument, "no CERTIFICATE block in the PEM text");
  return out;
}

const Bytes& Certificate::ToDer() const { return impl_->der; }
std::string Certificate::ToPem() const { return ossl::PemEncode("CERTIFICATE", impl_->der); }
const Bytes& Certificate::serial() const { return impl_->serial; }
std::string Certificate::serial_hex() const { return ToHex(impl_->serial); }
std::string Certificate::subject() const { return impl_->subject; }
std::string Certificate::issuer() const { return impl_->issuer; }
ByteView Certificate::subject_der() const { return impl_->subject_der; }
ByteView Certificate::issuer_der() const { return impl_->issuer_der; }
std::string Certificate::common_name() const { return impl_->common_name; }
std::string Certificate::serial_number() const { return impl_->serial_number; }
std::string Certificate::organization() const { return impl_->organization; }
int64_t Certificate::not_before() const { return impl_->not_before; }
int64_t Certificate::not_after() const { return impl_->not_after; }
const crypto::PublicKey& Certificate::public_key() const { return *impl_->public_key; }
bool Certificate::is_ca() const { return impl_->is_ca; }
std::optional<int> Certificate::path_len() const { return impl_->path_len; }
std::optional<uint16_t> Certificate::key_usage() const { return impl_->key_usage; }
std::vector<std::string> Certificate::extended_key_usage() const {
  return impl_->extended_key_usage;
}
const Bytes& Certificate::subject_key_id() const { return impl_->subject_key_id; }
const Bytes& Certificate::authority_key_id() const { return impl_->authority_key_id; }
const SubjectAltNames& Certificate::subject_alt_names() const { return impl_->san; }

std::optional<HardwareModuleName> Certificate::hardware_module_name() const {
  if (impl_->san.hardware_module_names.empty()) return std::nullopt;
  return impl_->san.hardware_module_names.front();
}

const std::vector<Extension>& Certificate::extensions() const { return impl_->extensions; }

const Extension* Certificate::FindExtension(std::string_view oid) const {
  for (const auto& ext : impl_->extensions) {
    if (ext.oid == oid) return &ext;
  }
  return nullptr;
}

const std::string& Certificate::signature_algorithm() const { return impl_->signature_algorithm; }
ByteView Certificate::tbs_der() const { return impl_->tbs; }
ByteView Certificate::signature() const { return impl_->signature; }
std::string Certificate::fingerprint_sha256() const { return ToHex(crypto::Sha256(impl_->der)); }

bool Certificate::IsSignedBy(const crypto::PublicKey& key) const {
  X509* x = handle();
  bool ok = x != nullptr && X509_verify(x, key.get()) == 1;
  ossl::ClearErrors();
  return ok;
}

int Certificate::version() const { return impl_->version; }
const std::string& Certificate::tbs_signature_algorithm() const {
  return impl_->tbs_signature_algorithm;
}
bool Certificate::tbs_signature_has_parameters() const { return impl_->tbs_signature_parameters; }
bool Certificate::not_before_is_utc_time() const { return impl_->not_before_tag == der::kUtcTime; }
bool Certificate::not_after_is_utc_time() const { return impl_->not_after_tag == der::kUtcTime; }
const std::vector<NameAttribute>& Certificate::subject_attributes() const {
  return impl_->subject_attributes;
}
bool Certificate::extensions_decode() const { return impl_->extensions_decode; }

X509* Certificate::handle() const {
  std::call_once(impl_->x509_once, [this] {
    if (impl_->x509) return;
    const unsigned char* p = impl_->der.data();
    impl_->x509 = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(impl_->der.size())));
    ossl::ClearErrors();
  });
  return impl_->x509.get();
}

}  // namespace iotpki::x509
