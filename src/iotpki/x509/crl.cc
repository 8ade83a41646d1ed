#include "iotpki/x509/crl.h"

#include <algorithm>

#include "iotpki/common/clock.h"
#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/x509/builder.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

struct Crl::Impl {
  ossl::UniquePtr<X509_CRL> crl;
  Bytes der;
  ByteView issuer_der;  // view into `der`
  std::string issuer;
  int64_t this_update = 0;
  std::optional<int64_t> next_update;
  std::optional<int64_t> crl_number;
  Bytes authority_key_id;
  std::vector<RevokedEntry> revoked;
  std::vector<Bytes> sorted_serials;
};

namespace {

Bytes Normalize(ByteView serial) {
  size_t i = 0;
  while (i + 1 < serial.size() && serial[i] == 0) ++i;
  return Bytes(serial.begin() + static_cast<ptrdiff_t>(i), serial.end());
}

Result<RevokedEntry> ReadEntry(const der::Element& element) {
  der::Reader r(element.contents);
  IOTPKI_TRY(der::Element serial, r.Expect(der::kInteger));
  if (serial.contents.empty() || (serial.contents[0] & 0x80)) {
    return Fail(Code::kInvalidArgument, "revoked serial number is negative");
  }
  IOTPKI_TRY(der::Element when, r.Next());
  IOTPKI_TRY(int64_t revoked_at, der::ParseTime(when));
  RevokedEntry entry{internal::IntegerMagnitude(serial.contents), revoked_at,
                     RevocationReason::kUnspecified};
  if (r.empty()) return entry;
  IOTPKI_TRY(der::Element exts, r.Expect(der::kSequence));
  der::Reader list(exts.contents);
  while (!list.empty()) {
    IOTPKI_TRY(der::Element ext, list.Expect(der::kSequence));
    der::Reader fields(ext.contents);
    IOTPKI_TRY(der::Element oid, fields.Expect(der::kOid));
    IOTPKI_CHECK(fields.Optional(der::kBoolean));
    IOTPKI_TRY(der::Element value, fields.Expect(der::kOctetString));
    if (der::OidToText(oid.contents) != internal::kOidCrlReason) continue;
    der::Reader v(value.contents);
    IOTPKI_TRY(der::Element reason, v.Expect(der::kEnumerated));
    IOTPKI_TRY(int64_t code, der::ParseSmallInteger(reason.contents));
    auto known = RevocationReasonFromCode(code);
    if (!known) return Fail(Code::kInvalidArgument, "unknown CRL reason code");
    entry.reason = *known;
  }
  return entry;
}

// Reads the parts kept byte-exact or in order with the strict reader: OpenSSL sorts the revoked
// list in place on lookup.
Result<void> ReadTbs(ByteView tbs_whole, Crl::Impl& impl) {
  der::Reader outer(tbs_whole);
  IOTPKI_TRY(der::Element tbs, outer.Expect(der::kSequence));
  der::Reader r(tbs.contents);
  IOTPKI_CHECK(r.Optional(der::kInteger));  // version
  IOTPKI_CHECK(r.Expect(der::kSequence));   // signature
  IOTPKI_TRY(der::Element issuer, r.Expect(der::kSequence));
  impl.issuer_der = issuer.whole;
  IOTPKI_CHECK(r.Next());  // thisUpdate
  if (r.PeekTag() == der::kUtcTime || r.PeekTag() == der::kGeneralizedTime) {
    IOTPKI_CHECK(r.Next());  // nextUpdate
  }
  IOTPKI_TRY(der::Element revoked, r.Optional(der::kSequence));
  der::Reader entries(revoked.contents);
  while (!entries.empty()) {
    IOTPKI_TRY(der::Element e, entries.Expect(der::kSequence));
    IOTPKI_TRY(RevokedEntry entry, ReadEntry(e));
    impl.revoked.push_back(std::move(entry));
  }
  return {};
}

}  // namespace

Result<Crl> Crl::FromDer(ByteView der) {
  auto impl = std::make_shared<Impl>();
  impl->der.assign(der.begin(), der.end());
  auto parts = internal::SplitSigned(impl->der);
  if (!parts) return Fail(Code::kInvalidArgument, "not an X.509 CRL", parts.error().message());
  const unsigned char* p = impl->der.data();
  impl->crl = ossl::Own(d2i_X509_CRL(nullptr, &p, static_cast<long>(impl->der.size())));
  if (!impl->crl || p != impl->der.data() + impl->der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not an X.509 CRL"));
  }
  if (auto tbs = ReadTbs(parts->tbs.whole, *impl); !tbs) {
    return Fail(Code::kInvalidArgument, "not an X.509 CRL", tbs.error().message());
  }
  X509_CRL* crl = impl->crl.get();
  impl->issuer = internal::NameToText(X509_CRL_get_issuer(crl));
  auto this_update = internal::TimeToUnix(X509_CRL_get0_lastUpdate(crl));
  if (!this_update) return Fail(Code::kInvalidArgument, "not an X.509 CRL", "bad thisUpdate");
  impl->this_update = *this_update;
  if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl)) {
    auto next_update = internal::TimeToUnix(next);
    if (!next_update) return Fail(Code::kInvalidArgument, "not an X.509 CRL", "bad nextUpdate");
    impl->next_update = *next_update;
  }
  if (auto number = ossl::Own(static_cast<ASN1_INTEGER*>(
          X509_CRL_get_ext_d2i(crl, NID_crl_number, nullptr, nullptr)))) {
    int64_t v = 0;
    if (ASN1_INTEGER_get_int64(&v, number.get()) == 1 && v >= 0) impl->crl_number = v;
  }
  if (auto aki = ossl::Own(static_cast<AUTHORITY_KEYID*>(
          X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, nullptr, nullptr)))) {
    if (aki->keyid != nullptr) {
      const uint8_t* k = ASN1_STRING_get0_data(aki->keyid);
      impl->authority_key_id.assign(k, k + ASN1_STRING_length(aki->keyid));
    }
  }
  ossl::ClearErrors();
  for (const auto& e : impl->revoked) impl->sorted_serials.push_back(Normalize(e.serial));
  std::sort(impl->sorted_serials.begin(), impl->sorted_serials.end(), BytesLess());
  return Crl(std::move(impl));
}

Result<Crl> Crl::FromPem(std::string_view pem) {
  IOTPKI_TRY(Bytes der, ossl::PemDecode(pem, "X509 CRL"));
  return FromDer(der);
}

const Bytes& Crl::ToDer() const { return impl_->der; }
std::string Crl::ToPem() const { return ossl::PemEncode("X509 CRL", impl_->der); }
std::string Crl::issuer() const { return impl_->issuer; }
ByteView Crl::issuer_der() const { return impl_->issuer_der; }
int64_t Crl::this_update() const { return impl_->this_update; }
std::optional<int64_t> Crl::next_update() const { return impl_->next_update; }
std::optional<int64_t> Crl::crl_number() const { return impl_->crl_number; }
const Bytes& Crl::authority_key_id() const { return impl_->authority_key_id; }
const std::vector<RevokedEntry>& Crl::revoked() const { return impl_->revoked; }

bool Crl::IsRevoked(ByteView serial) const {
  return std::binary_search(impl_->sorted_serials.begin(), impl_->sorted_serials.end(),
                            Normalize(serial), BytesLess());
}

bool Crl::IsSignedBy(const crypto::PublicKey& key) const {
  bool ok = X509_CRL_verify(impl_->crl.get(), key.get()) == 1;
  ossl::ClearErrors();
  return ok;
}

X509_CRL* Crl::handle() const { return impl_->crl.get(); }

namespace {

// Octets of a DER length field for `n` content octets.
int64_t LengthOctets(int64_t n) {
  int64_t octets = 1;
  if (n >= 128) {
    for (; n > 0; n >>= 8) ++octets;
  }
  return octets;
}

int64_t TlvSize(int64_t content) { return 1 + LengthOctets(content) + content; }

// UTCTime YYMMDDHHMMSSZ for 1950 to 2049, GeneralizedTime YYYYMMDDHHMMSSZ outside (der::Time).
constexpr int64_t kFirstUtcTime = -631152000;          // 1950-01-01T00:00:00Z
constexpr int64_t kFirstGeneralizedTime = 2524608000;  // 2050-01-01T00:00:00Z

// SEQUENCE { SEQUENCE { OID 2.5.29.21, OCTET STRING { ENUMERATED } } }: 2 + 2 + 5 + 5 octets.
constexpr int64_t kReasonExtensionsBytes = 14;

}  // namespace

int64_t RevokedListDerSize(std::span<const RevokedEntry> entries) {
  if (entries.empty()) return 0;
  int64_t list = 0;
  for (const auto& entry : entries) {
    size_t i = 0;
    while (i + 1 < entry.serial.size() && entry.serial[i] == 0) ++i;
    // As der::UnsignedInteger: no leading zeros, one added before a high bit, 0 if empty.
    int64_t integer = entry.serial.empty() ? 1
                                           : static_cast<int64_t>(entry.serial.size() - i) +
                                                 ((entry.serial[i] & 0x80) != 0 ? 1 : 0);
    bool utc = entry.revoked_at >= kFirstUtcTime && entry.revoked_at < kFirstGeneralizedTime;
    int64_t content = TlvSize(integer) + TlvSize(utc ? 13 : 15) +
                      (entry.reason != RevocationReason::kUnspecified ? kReasonExtensionsBytes : 0);
    list += TlvSize(content);
  }
  return TlvSize(list);
}

Result<void> LintCrlEntries(std::span<const RevokedEntry> entries, int64_t this_update,
                            int64_t next_update, int64_t max_bytes) {
  auto finding = [](std::string what) {
    return Fail(Code::kFailedPrecondition, "CRL lint: " + what);
  };
  if (next_update <= this_update) return finding("nextUpdate is not after thisUpdate");
  const Bytes* previous = nullptr;
  Bytes prev_value;
  for (const auto& entry : entries) {
    Bytes value = Normalize(entry.serial);
    if (value.empty() || (value.size() == 1 && value[0] == 0)) {
      return finding("a revoked serial is zero or empty");
    }
    if (value.size() > 20) return finding("a revoked serial is longer than 20 octets");
    // Magnitudes without leading zeros compare by length, then bytewise.
    if (previous != nullptr && (value.size() < prev_value.size() ||
                                (value.size() == prev_value.size() && value <= prev_value))) {
      return finding("entries are not in strictly ascending serial order");
    }
    if (entry.revoked_at > this_update) return finding("a revocation is dated after thisUpdate");
    int code = static_cast<int>(entry.reason);
    if (code < 0 || code > 10 || code == 7) return finding("an unknown reason code");
    prev_value = std::move(value);
    previous = &prev_value;
  }
  if (max_bytes > 0) {
    int64_t bound = RevokedListDerSize(entries) + kCrlEnvelopeBytes;
    if (bound > max_bytes) {
      return finding("the CRL would take up to " + std::to_string(bound) + " bytes (" +
                     std::to_string(entries.size()) + " entries), past its size budget of " +
                     std::to_string(max_bytes) + " bytes");
    }
  }
  return {};
}

Result<Crl> BuildCrl(const Certificate& issuer, const crypto::Signer& issuer_key,
                     std::span<const RevokedEntry> entries, int64_t this_update,
                     int64_t next_update, int64_t crl_number, std::string_view distribution_point) {
  if (!(issuer_key.public_key() == issuer.public_key())) {
    return Fail(Code::kFailedPrecondition,
                "the signing key does not belong to the CRL issuer's certificate");
  }
  if (!issuer.is_ca() || !issuer.key_usage() || !(*issuer.key_usage() & key_usage::kCrlSign)) {
    return Fail(Code::kFailedPrecondition, "the CRL issuer is not a CA allowed to sign CRLs");
  }
  if (next_update <= this_update) {
    return Fail(Code::kInvalidArgument, "nextUpdate must be after thisUpdate");
  }
  if (crl_number < 0) return Fail(Code::kInvalidArgument, "CRL number must not be negative");

  std::vector<Bytes> serials;
  serials.reserve(entries.size());
  Bytes list;
  for (const auto& entry : entries) {
    if (entry.serial.empty()) return Fail(Code::kInvalidArgument, "revoked entry without serial");
    serials.push_back(Normalize(entry.serial));
    Bytes reason;
    if (entry.reason != RevocationReason::kUnspecified) {
      uint8_t code = static_cast<uint8_t>(entry.reason);
      Bytes value = der::Tlv(der::kEnumerated, ByteView(&code, 1));
      reason = der::Sequence({internal::EncodeExtension(internal::kOidCrlReason, false, value)});
    }
    Bytes e =
        der::Sequence({der::UnsignedInteger(entry.serial), der::Time(entry.revoked_at), reason});
    list.insert(list.end(), e.begin(), e.end());
  }
  std::sort(serials.begin(), serials.end(), BytesLess());
  if (std::adjacent_find(serials.begin(), serials.end()) != serials.end()) {
    return Fail(Code::kInvalidArgument, "a serial number is listed twice");
  }

  Bytes key_id = issuer.subject_key_id().empty() ? issuer.public_key().KeyIdentifier()
                                                 : issuer.subject_key_id();
  Bytes idp;
  if (!distribution_point.empty()) {
    for (char c : distribution_point) {
      if (c <= 0x20 || c >= 0x7f) {
        return Fail(Code::kInvalidArgument, "the distribution point URI must be printable ASCII");
      }
    }
    // IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] DistributionPointName }
    // with DistributionPointName's fullName [0] GeneralNames { uniformResourceIdentifier [6] }.
    Bytes uri = der::Tlv(der::ContextPrimitive(6), AsBytes(distribution_point));
    Bytes full_name = der::Constructed(der::ContextConstructed(0), {uri});
    Bytes value = der::Sequence({der::Constructed(der::ContextConstructed(0), {full_name})});
    // RFC 5280 5.2.5: critical, so a relying party that cannot read it does not take the
    // partition for the whole CRL.
    idp = internal::EncodeExtension(internal::kOidIssuingDistributionPoint, true, value);
  }
  Bytes extensions = der::Sequence(
      {internal::EncodeExtension(internal::kOidAuthorityKeyId, false,
                                 internal::EncodeAuthorityKeyId(key_id)),
       internal::EncodeExtension(internal::kOidCrlNumber, false, der::SmallInteger(crl_number)),
       idp});
  IOTPKI_TRY(Bytes algorithm, internal::SignatureAlgorithm(issuer_key));
  Bytes revoked = entries.empty() ? Bytes() : der::Tlv(der::kSequence, list);
  Bytes tbs = der::Sequence({der::SmallInteger(1), algorithm, issuer.subject_der(),
                             der::Time(this_update), der::Time(next_update), revoked,
                             der::Constructed(der::ContextConstructed(0), {extensions})});
  IOTPKI_TRY(Bytes der, internal::SignAndAssemble(tbs, algorithm, issuer_key));
  IOTPKI_TRY(Crl crl, Crl::FromDer(der));
  if (!crl.IsSignedBy(issuer.public_key())) {
    return Fail(Code::kInternal, "the issuer's signature on the new CRL does not verify");
  }
  return crl;
}

std::string IssuanceMonth(ByteView serial) {
  Bytes value = Normalize(serial);
  if (value.size() != 16 || (value[0] & 0x80) != 0) return {};
  int64_t micros = 0;
  for (size_t i = 0; i < 7; ++i) micros = (micros << 8) | value[i];
  int64_t seconds = micros / 1000000;
  if (seconds < 946684800 || seconds > 253402300799) return {};
  // FormatUtc: "2026-11-27T21:20:58Z".
  return FormatUtc(seconds).substr(0, 7);
}

std::string CurrentIssuanceMonth() { return IssuanceMonth(NewSerial()); }

}  // namespace iotpki::x509
