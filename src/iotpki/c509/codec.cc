// Whole certificates: X.509 DER <-> fields <-> C509 CBOR.
#include <algorithm>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "iotpki/c509/internal.h"
#include "iotpki/crypto/ossl.h"

namespace iotpki::c509 {
namespace {

using cbor::Item;
using internal::BadX509;
using internal::Malformed;
using internal::Unsupported;

constexpr int64_t kMaxTime = 253402300799;  // 9999-12-31T23:59:59Z
constexpr std::string_view kNoExpiry = "99991231235959Z";
constexpr uint8_t kVersionTag = 0xa0;
constexpr uint8_t kIssuerUniqueIdTag = 0x81;
constexpr uint8_t kSubjectUniqueIdTag = 0x82;
constexpr uint8_t kExtensionsTag = 0xa3;
constexpr uint8_t kTypeCompressedEven = 0xfe;
constexpr uint8_t kTypeCompressedOdd = 0xfd;
constexpr size_t kTbsItems = 10;

bool Equal(ByteView a, ByteView b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

ByteView StripLeadingZeros(ByteView v) {
  while (!v.empty() && v[0] == 0) v = v.subspan(1);
  return v;
}

// --- DER -> fields ---

Result<AlgorithmId> AlgorithmFromDer(const der::Element& alg, bool signature) {
  der::Reader r(alg.contents);
  IOTPKI_TRY(der::Element oid, r.Expect(der::kOid));
  std::optional<ByteView> params;
  if (!r.empty()) {
    IOTPKI_TRY(der::Element p, r.Next());
    params = p.whole;
  }
  if (!r.empty()) return Fail(BadX509("AlgorithmIdentifier with extra elements"));
  const registry::AlgorithmEntry* e = signature
                                          ? registry::SignatureAlgorithmByDer(oid.contents, params)
                                          : registry::PublicKeyAlgorithmByDer(oid.contents, params);
  if (e != nullptr) return AlgorithmId{e->code, {}, std::nullopt};
  AlgorithmId out{0, Bytes(oid.contents.begin(), oid.contents.end()), std::nullopt};
  if (params) out.params = Bytes(params->begin(), params->end());
  return out;
}

// Unix seconds for a validity time, checking that decoding will produce the same bytes: C509
// carries only the instant and rebuilds UTCTime through 2049 and GeneralizedTime from 2050.
Result<int64_t> TimeFromDer(const der::Element& e) {
  IOTPKI_TRY(int64_t t, der::ParseTime(e));
  if (t < 0) return Fail(Unsupported("validity times before 1970"));
  if (!Equal(der::Time(t), e.whole)) {
    return Fail(
        Unsupported("a validity time not in RFC 5280 form (UTCTime through 2049, "
                    "GeneralizedTime from 2050)"));
  }
  return t;
}

bool IsNoExpiry(const der::Element& e) {
  return e.tag == der::kGeneralizedTime && AsString(e.contents) == kNoExpiry;
}

Result<Item> PublicKeyFromDer(const AlgorithmId& alg, ByteView bits) {
  if (bits.empty() || bits[0] != 0) {
    return Fail(Unsupported("a subjectPublicKey BIT STRING with unused bits"));
  }
  ByteView key = bits.subspan(1);
  if (!alg.oid.empty()) return Item::ByteString(key);
  if (alg.code == 0) {
    der::Reader r(key);
    IOTPKI_TRY(der::Element seq, r.Expect(der::kSequence));
    der::Reader parts(seq.contents);
    IOTPKI_TRY(der::Element n, parts.Expect(der::kInteger));
    IOTPKI_TRY(der::Element e, parts.Expect(der::kInteger));
    if (!r.empty() || !parts.empty() || n.contents.empty() || e.contents.empty() ||
        (n.contents[0] & 0x80) || (e.contents[0] & 0x80)) {
      return Fail(BadX509("malformed RSA public key"));
    }
    ByteView modulus = StripLeadingZeros(n.contents);
    ByteView exponent = StripLeadingZeros(e.contents);
    static const Bytes kF4 = {0x01, 0x00, 0x01};
    if (Equal(exponent, kF4)) return Item::ByteString(modulus);
    return Item::Array({Item::ByteString(modulus), Item::ByteString(exponent)});
  }
  if (auto curve = registry::EcCurveForPublicKey(alg.code)) {
    if (auto compressed = internal::CompressPoint(*curve, key)) {
      return Item::ByteString(*compressed);
    }
  }
  return Item::ByteString(key);
}

Result<Bytes> SignatureFromDer(const AlgorithmId& alg, ByteView bits) {
  if (bits.empty() || bits[0] != 0) {
    return Fail(Unsupported("a signatureValue BIT STRING with unused bits"));
  }
  ByteView sig = bits.subspan(1);
  if (alg.oid.empty() && registry::IsEcdsaSignature(alg.code)) {
    return internal::EcdsaDerToRaw(sig, 0);
  }
  return Bytes(sig.begin(), sig.end());
}

Result<Extension> ExtensionFromDer(const der::Element& ext) {
  if (ext.tag != der::kSequence) return Fail(BadX509("malformed Extension"));
  der::Reader r(ext.contents);
  IOTPKI_TRY(der::Element oid, r.Expect(der::kOid));
  bool critical = false;
  if (r.PeekTag() == der::kBoolean) {
    IOTPKI_TRY(der::Element b, r.Next());
    if (b.contents.size() != 1 || b.contents[0] != 0xff) {
      return Fail(Unsupported("an extension with critical = FALSE spelled out (not DER)"));
    }
    critical = true;
  }
  IOTPKI_TRY(der::Element value, r.Expect(der::kOctetString));
  if (!r.empty()) return Fail(BadX509("Extension with extra elements"));
  if (const registry::OidEntry* e = registry::Extensions().ByOid(oid.contents);
      e != nullptr && internal::HasSpecificEncoding(e->code)) {
    auto item = internal::ExtensionValueFromDer(e->code, value.contents);
    if (item) {
      auto back = internal::ExtensionValueToDer(e->code, *item);
      if (back && Equal(*back, value.contents)) {
        Extension out;
        out.id = e->code;
        out.critical = critical;
        out.value = std::move(*item);
        return out;
      }
    }
  }
  Extension out;
  out.critical = critical;
  out.oid.assign(oid.contents.begin(), oid.contents.end());
  out.der_value.assign(value.contents.begin(), value.contents.end());
  return out;
}

// --- fields -> DER ---

Result<Bytes> AlgorithmToDer(const AlgorithmId& alg, bool signature) {
  if (alg.oid.empty()) {
    const registry::AlgorithmEntry* e = signature ? registry::SignatureAlgorithmByCode(alg.code)
                                                  : registry::PublicKeyAlgorithmByCode(alg.code);
    if (e == nullptr) {
      return Fail(Unsupported(std::string(signature ? "signature" : "public-key") + " algorithm " +
                              std::to_string(alg.code)));
    }
    return der::Sequence({der::Tlv(der::kOid, e->oid), e->params ? *e->params : Bytes{}});
  }
  if (der::OidToText(alg.oid).empty()) return Fail(Malformed("malformed algorithm OID"));
  if (alg.params) {
    der::Reader r(*alg.params);
    if (!r.Next() || !r.empty()) {
      return Fail(Malformed("algorithm parameters are not one DER element"));
    }
  }
  return der::Sequence({der::Tlv(der::kOid, alg.oid), alg.params ? *alg.params : Bytes{}});
}

Result<Bytes> TimeToDer(std::optional<int64_t> t) {
  if (!t) return der::Tlv(der::kGeneralizedTime, AsBytes(kNoExpiry));
  if (*t < 0 || *t > kMaxTime) return Fail(Malformed("time out of range"));
  return der::Time(*t);
}

Result<Bytes> SignatureToDer(const AlgorithmId& alg, ByteView sig) {
  if (alg.oid.empty() && registry::IsEcdsaSignature(alg.code)) {
    IOTPKI_TRY(Bytes der_sig, internal::EcdsaRawToDer(sig));
    return der::BitString(der_sig);
  }
  return der::BitString(sig);
}

Result<Bytes> ExtensionToDer(const Extension& ext) {
  Bytes oid;
  Bytes value;
  if (ext.oid.empty()) {
    const registry::OidEntry* e = registry::Extensions().ByCode(ext.id);
    if (e == nullptr) return Fail(Unsupported("extension " + std::to_string(ext.id)));
    oid = e->oid;
    IOTPKI_TRY(value, internal::ExtensionValueToDer(ext.id, ext.value));
  } else {
    if (der::OidToText(ext.oid).empty()) return Fail(Malformed("malformed extension OID"));
    oid = ext.oid;
    value = ext.der_value;
  }
  return der::Sequence({der::Tlv(der::kOid, oid), ext.critical ? der::Boolean(true) : Bytes{},
                        der::OctetString(value)});
}

// --- CBOR -> fields ---

Result<AlgorithmId> AlgorithmFromCbor(const Item& item, bool signature) {
  if (auto code = item.AsInt()) {
    const registry::AlgorithmEntry* e = signature ? registry::SignatureAlgorithmByCode(*code)
                                                  : registry::PublicKeyAlgorithmByCode(*code);
    if (e == nullptr) {
      return Fail(Unsupported(std::string(signature ? "signature" : "public-key") + " algorithm " +
                              std::to_string(*code)));
    }
    return AlgorithmId{*code, {}, std::nullopt};
  }
  AlgorithmId alg;
  const Item* oid = &item;
  if (item.is_array() && (item.items().size() == 1 || item.items().size() == 2)) {
    // [~oid] is accepted for drafts before -21 PR #422.
    oid = &item.items()[0];
    if (item.items().size() == 2) {
      if (!item.items()[1].is_bytes()) return Fail(Malformed("algorithm parameters must be bytes"));
      ByteView params = item.items()[1].bytes();
      der::Reader r(params);
      if (!r.Next() || !r.empty()) {
        return Fail(Malformed("algorithm parameters are not one DER element"));
      }
      alg.params = Bytes(params.begin(), params.end());
    }
  }
  if (!oid->is_bytes() || der::OidToText(oid->bytes()).empty()) {
    return Fail(Malformed("AlgorithmIdentifier must be an int, an OID or [OID, parameters]"));
  }
  alg.oid.assign(oid->bytes().begin(), oid->bytes().end());
  return alg;
}

Result<int64_t> TimeFromCbor(const Item& item) {
  if (!item.is_unsigned() || item.raw() > static_cast<uint64_t>(kMaxTime)) {
    return Fail(Malformed("validity time must be an unsigned int up to year 9999"));
  }
  return static_cast<int64_t>(item.raw());
}

Result<std::vector<Extension>> ExtensionsFromCbor(const Item& item) {
  std::vector<Extension> out;
  if (item.is_int()) {
    // keyUsage-only shortcut: the int is sign(critical) * keyUsage.
    auto v = item.AsInt();
    if (!v || *v == std::numeric_limits<int64_t>::min()) {
      return Fail(Malformed("keyUsage value out of range"));
    }
    Extension ku;
    ku.id = 2;
    ku.critical = *v < 0;
    ku.value = Item::Uint(static_cast<uint64_t>(*v < 0 ? -*v : *v));
    out.push_back(std::move(ku));
    return out;
  }
  if (!item.is_array() || item.items().size() % 2 != 0) {
    return Fail(Malformed("extensions must be an int or an array of pairs"));
  }
  const auto& items = item.items();
  for (size_t i = 0; i < items.size(); i += 2) {
    Extension ext;
    const Item& id = items[i];
    const Item& value = items[i + 1];
    if (id.is_bytes()) {
      if (der::OidToText(id.bytes()).empty()) return Fail(Malformed("malformed extension OID"));
      ext.oid.assign(id.bytes().begin(), id.bytes().end());
      const Item* bytes = &value;
      if (value.is_array() && value.items().size() == 1) {
        ext.critical = true;
        bytes = &value.items()[0];
      }
      if (!bytes->is_bytes()) {
        return Fail(Malformed("OID-identified extension value must be bytes or [bytes]"));
      }
      ext.der_value.assign(bytes->bytes().begin(), bytes->bytes().end());
    } else {
      auto code = id.AsInt();
      if (!code || *code == 0 || *code == std::numeric_limits<int64_t>::min()) {
        return Fail(Malformed("extension id must be a non-zero int or an OID"));
      }
      ext.critical = *code < 0;
      ext.id = *code < 0 ? -*code : *code;
      if (registry::Extensions().ByCode(ext.id) == nullptr) {
        return Fail(Unsupported("extension id " + std::to_string(ext.id)));
      }
      if (value.is_undefined()) return Fail(Malformed("extension value must not be undefined"));
      ext.value = value;
    }
    out.push_back(std::move(ext));
  }
  return out;
}

Result<C509Certificate> FromItems(const std::vector<Item>& items) {
  C509Certificate cert;
  auto type = items[0].AsInt();
  if (type != kTypeNative && type != kTypeReencoded) {
    return Fail(Unsupported("certificate type " + Diagnostic(items[0])));
  }
  cert.type = static_cast<int>(*type);
  if (!items[1].is_bytes()) return Fail(Malformed("serial number must be bytes"));
  cert.serial.assign(items[1].bytes().begin(), items[1].bytes().end());
  IOTPKI_TRY(cert.signature_algorithm, AlgorithmFromCbor(items[2], true));
  if (!items[3].is_null()) {
    IOTPKI_TRY(Name issuer, internal::NameFromCbor(items[3]));
    cert.issuer = std::move(issuer);
  }
  IOTPKI_TRY(cert.not_before, TimeFromCbor(items[4]));
  if (!items[5].is_null()) {
    IOTPKI_TRY(int64_t not_after, TimeFromCbor(items[5]));
    cert.not_after = not_after;
  }
  IOTPKI_TRY(cert.subject, internal::NameFromCbor(items[6]));
  IOTPKI_TRY(cert.public_key_algorithm, AlgorithmFromCbor(items[7], false));
  if (items[8].is_undefined()) return Fail(Malformed("subjectPublicKey must not be undefined"));
  cert.public_key = items[8];
  IOTPKI_TRY(cert.extensions, ExtensionsFromCbor(items[9]));
  if (!items[10].is_bytes()) return Fail(Malformed("issuerSignatureValue must be bytes"));
  cert.signature.assign(items[10].bytes().begin(), items[10].bytes().end());
  return cert;
}

// --- fields -> CBOR ---

Result<Item> AlgorithmToCbor(const AlgorithmId& alg, bool signature) {
  IOTPKI_CHECK(AlgorithmToDer(alg, signature));  // validates codes, OIDs and parameters
  if (alg.oid.empty()) return Item::Int(alg.code);
  if (alg.params) return Item::Array({Item::ByteString(alg.oid), Item::ByteString(*alg.params)});
  return Item::ByteString(alg.oid);
}

Result<Item> NameToCborChecked(const Name& name, int type) {
  if (type == kTypeNative) {
    for (const Attribute& a : name) {
      if (a.oid.empty() && a.type < 0) {
        return Fail(
            Malformed("natively signed certificates use only non-negative attribute "
                      "types"));
      }
    }
  }
  IOTPKI_CHECK(internal::NameToDer(name));  // validates every attribute
  return internal::NameToCbor(name);
}

Result<Item> ExtensionsToCbor(const std::vector<Extension>& exts) {
  for (const Extension& e : exts) {
    if (e.oid.empty()) {
      if (e.id <= 0 || registry::Extensions().ByCode(e.id) == nullptr) {
        return Fail(Unsupported("extension id " + std::to_string(e.id)));
      }
      if (e.value.is_undefined()) return Fail(Malformed("extension value must not be undefined"));
    } else if (der::OidToText(e.oid).empty()) {
      return Fail(Malformed("malformed extension OID"));
    }
  }
  if (exts.size() == 1 && exts[0].oid.empty() && exts[0].id == 2 && exts[0].value.is_unsigned() &&
      exts[0].value.raw() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
      (exts[0].value.raw() != 0 || !exts[0].critical)) {
    const int64_t ku = static_cast<int64_t>(exts[0].value.raw());
    return Item::Int(exts[0].critical ? -ku : ku);
  }
  std::vector<Item> items;
  for (const Extension& e : exts) {
    if (e.oid.empty()) {
      items.push_back(Item::Int(e.critical ? -e.id : e.id));
      items.push_back(e.value);
    } else {
      items.push_back(Item::ByteString(e.oid));
      Item value = Item::ByteString(e.der_value);
      items.push_back(e.critical ? Item::Array({std::move(value)}) : std::move(value));
    }
  }
  return Item::Array(std::move(items));
}

Result<std::vector<Item>> ToItems(const C509Certificate& cert) {
  if (cert.type != kTypeNative && cert.type != kTypeReencoded) {
    return Fail(Unsupported("certificate type " + std::to_string(cert.type)));
  }
  if (!cert.serial.empty() && cert.serial[0] == 0) {
    return Fail(Malformed("serial number has a leading zero byte"));
  }
  std::vector<Item> items;
  items.push_back(Item::Uint(static_cast<uint64_t>(cert.type)));
  items.push_back(Item::ByteString(cert.serial));
  IOTPKI_TRY(Item sig_alg, AlgorithmToCbor(cert.signature_algorithm, true));
  items.push_back(std::move(sig_alg));
  if (cert.issuer) {
    IOTPKI_TRY(Item issuer, NameToCborChecked(*cert.issuer, cert.type));
    items.push_back(std::move(issuer));
  } else {
    items.push_back(Item::Null());
  }
  IOTPKI_CHECK(TimeToDer(cert.not_before));
  items.push_back(Item::Uint(static_cast<uint64_t>(cert.not_before)));
  if (cert.not_after) {
    IOTPKI_CHECK(TimeToDer(cert.not_after));
    items.push_back(Item::Uint(static_cast<uint64_t>(*cert.not_after)));
  } else {
    items.push_back(Item::Null());
  }
  IOTPKI_TRY(Item subject, NameToCborChecked(cert.subject, cert.type));
  items.push_back(std::move(subject));
  IOTPKI_TRY(Item pk_alg, AlgorithmToCbor(cert.public_key_algorithm, false));
  items.push_back(std::move(pk_alg));
  if (cert.public_key.is_undefined()) {
    return Fail(Malformed("subjectPublicKey must not be undefined"));
  }
  if (cert.type == kTypeNative && cert.public_key.is_bytes() && !cert.public_key.bytes().empty() &&
      (cert.public_key.bytes()[0] == kTypeCompressedEven ||
       cert.public_key.bytes()[0] == kTypeCompressedOdd)) {
    return Fail(Malformed("natively signed certificates use SEC1 point prefixes 02/03"));
  }
  items.push_back(cert.public_key);
  IOTPKI_TRY(Item exts, ExtensionsToCbor(cert.extensions));
  items.push_back(std::move(exts));
  items.push_back(Item::ByteString(cert.signature));
  return items;
}

Bytes EncodeItems(const std::vector<Item>& items) {
  Bytes out;
  cbor::AppendHead(out, 4, items.size());
  for (const Item& item : items) item.AppendTo(out);
  return out;
}

}  // namespace

namespace internal {

std::optional<Bytes> CompressPoint(const registry::EcCurve& curve, ByteView point) {
  if (curve.nid == 0 || point.size() != 1 + 2 * curve.field_bytes || point[0] != 0x04) {
    return std::nullopt;
  }
  auto group = ossl::Own(EC_GROUP_new_by_curve_name(curve.nid));
  auto p = group ? ossl::Own(EC_POINT_new(group.get())) : nullptr;
  // oct2point refuses points that are not on the curve, so decompression restores this one.
  if (!p || EC_POINT_oct2point(group.get(), p.get(), point.data(), point.size(), nullptr) != 1) {
    ossl::ClearErrors();
    return std::nullopt;
  }
  Bytes out(1 + curve.field_bytes);
  out[0] = (point.back() & 1) ? kTypeCompressedOdd : kTypeCompressedEven;
  std::copy_n(point.begin() + 1, curve.field_bytes, out.begin() + 1);
  return out;
}

Result<Bytes> DecompressPoint(const registry::EcCurve& curve, ByteView point) {
  if (point.size() != 1 + curve.field_bytes) return Fail(Malformed("compressed point length"));
  if (curve.nid == 0) return Fail(Unsupported("point decompression on this curve"));
  Bytes sec1(point.begin(), point.end());
  if (sec1[0] == kTypeCompressedEven) sec1[0] = 0x02;
  if (sec1[0] == kTypeCompressedOdd) sec1[0] = 0x03;
  auto group = ossl::Own(EC_GROUP_new_by_curve_name(curve.nid));
  auto p = group ? ossl::Own(EC_POINT_new(group.get())) : nullptr;
  if (!p || EC_POINT_oct2point(group.get(), p.get(), sec1.data(), sec1.size(), nullptr) != 1) {
    ossl::ClearErrors();
    return Fail(Malformed("compressed public key is not a point on the curve"));
  }
  Bytes out(1 + 2 * curve.field_bytes);
  if (EC_POINT_point2oct(group.get(), p.get(), POINT_CONVERSION_UNCOMPRESSED, out.data(),
                         out.size(), nullptr) != out.size()) {
    return Fail(ossl::Drain(Code::kInternal, "EC point conversion failed"));
  }
  return out;
}

Result<Bytes> EcdsaDerToRaw(ByteView sig, size_t n) {
  der::Reader r(sig);
  auto seq = r.Expect(der::kSequence);
  if (!seq || !r.empty()) return Fail(Unsupported("an ECDSA signature that is not DER"));
  der::Reader parts(seq->contents);
  auto r_int = parts.Expect(der::kInteger);
  auto s_int = r_int ? parts.Expect(der::kInteger) : r_int;
  if (!s_int || !parts.empty() || r_int->contents.empty() || s_int->contents.empty() ||
      (r_int->contents[0] & 0x80) || (s_int->contents[0] & 0x80)) {
    return Fail(Unsupported("an ECDSA signature that is not two positive DER INTEGERs"));
  }
  ByteView rv = StripLeadingZeros(r_int->contents);
  ByteView sv = StripLeadingZeros(s_int->contents);
  const size_t longest = std::max(rv.size(), sv.size());
  if (n == 0) {
    // The issuer's curve is not in the certificate; the group sizes of the registered curves
    // cover every realistic value, and any choice rebuilds the same DER.
    for (size_t size : {32, 48, 64, 66}) {
      if (longest <= size) {
        n = size;
        break;
      }
    }
    if (n == 0) n = longest;
  }
  if (longest > n) return Fail(Malformed("ECDSA signature integer longer than the group order"));
  Bytes out(2 * n, 0);
  std::copy(rv.begin(), rv.end(), out.begin() + static_cast<ptrdiff_t>(n - rv.size()));
  std::copy(sv.begin(), sv.end(), out.begin() + static_cast<ptrdiff_t>(2 * n - sv.size()));
  return out;
}

Result<Bytes> EcdsaRawToDer(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return Fail(Malformed("ECDSA signature must be r || s of equal lengths"));
  }
  const size_t half = raw.size() / 2;
  return der::Sequence(
      {der::UnsignedInteger(raw.first(half)), der::UnsignedInteger(raw.last(half))});
}

Result<Bytes> SignatureAlgorithmToDer(const AlgorithmId& alg) { return AlgorithmToDer(alg, true); }
Result<Bytes> PublicKeyAlgorithmToDer(const AlgorithmId& alg) { return AlgorithmToDer(alg, false); }

Result<Bytes> SubjectPublicKeyInfoToDer(const AlgorithmId& alg, const Item& key,
                                        bool decompress_sec1) {
  IOTPKI_TRY(Bytes alg_der, AlgorithmToDer(alg, false));
  Bytes raw;
  if (alg.oid.empty() && alg.code == 0) {
    const Item* modulus = &key;
    Bytes exponent = {0x01, 0x00, 0x01};
    if (key.is_array() && key.items().size() == 2 && key.items()[1].is_bytes()) {
      modulus = &key.items()[0];
      exponent.assign(key.items()[1].bytes().begin(), key.items()[1].bytes().end());
    }
    if (!modulus->is_bytes()) {
      return Fail(Malformed("RSA public key must be modulus or [modulus, exponent]"));
    }
    raw = der::Sequence({der::UnsignedInteger(modulus->bytes()), der::UnsignedInteger(exponent)});
  } else {
    if (!key.is_bytes())
      return Fail(Malformed("subjectPublicKey must be bytes for this algorithm"));
    raw.assign(key.bytes().begin(), key.bytes().end());
    auto curve = alg.oid.empty() ? registry::EcCurveForPublicKey(alg.code) : std::nullopt;
    const bool compressed =
        !raw.empty() && (raw[0] == kTypeCompressedEven || raw[0] == kTypeCompressedOdd ||
                         (decompress_sec1 && (raw[0] == 0x02 || raw[0] == 0x03)));
    if (curve && compressed) {
      IOTPKI_TRY(raw, DecompressPoint(*curve, raw));
    }
  }
  return der::Sequence({alg_der, der::BitString(raw)});
}

Result<Parsed> ParseWithTbs(ByteView data) {
  if (data.empty()) return Fail(Malformed("empty input"));
  cbor::Reader r(data);
  if ((data[0] >> 5) == 4) {
    IOTPKI_TRY(uint64_t count, r.ArrayHeader());
    if (count != kTbsItems + 1) {
      return Fail(Malformed("C509Certificate must be an array of 11 items"));
    }
  }
  const size_t tbs_start = r.offset();
  size_t tbs_end = tbs_start;
  std::vector<Item> items;
  for (size_t i = 0; i <= kTbsItems; ++i) {
    if (i == kTbsItems) tbs_end = r.offset();
    IOTPKI_TRY(Item item, r.Next());
    items.push_back(std::move(item));
  }
  if (!r.empty()) return Fail(Malformed("trailing bytes after the certificate"));
  IOTPKI_TRY(C509Certificate cert, FromItems(items));
  ByteView tbs = data.subspan(tbs_start, tbs_end - tbs_start);
  return Parsed{std::move(cert), Bytes(tbs.begin(), tbs.end())};
}

}  // namespace internal

Result<C509Certificate> FromX509(ByteView der) {
  der::Reader top(der);
  IOTPKI_TRY(der::Element cert_el, top.Expect(der::kSequence));
  if (!top.empty()) return Fail(BadX509("trailing bytes after the certificate"));
  der::Reader c(cert_el.contents);
  IOTPKI_TRY(der::Element tbs, c.Expect(der::kSequence));
  IOTPKI_TRY(der::Element outer_alg, c.Expect(der::kSequence));
  IOTPKI_TRY(der::Element sig_value, c.Expect(der::kBitString));
  if (!c.empty()) return Fail(BadX509("Certificate with extra elements"));

  der::Reader t(tbs.contents);
  if (t.PeekTag() != kVersionTag) return Fail(Unsupported("X.509 v1 certificates (v3 only)"));
  IOTPKI_TRY(der::Element version, t.Next());
  static const Bytes kV3 = {0x02, 0x01, 0x02};
  if (!Equal(version.contents, kV3)) return Fail(Unsupported("X.509 versions other than v3"));

  C509Certificate cert;
  cert.type = kTypeReencoded;
  IOTPKI_TRY(der::Element serial, t.Expect(der::kInteger));
  if (serial.contents.empty()) return Fail(BadX509("empty serial number"));
  if (serial.contents[0] & 0x80) return Fail(Unsupported("negative serial numbers"));
  ByteView magnitude = StripLeadingZeros(serial.contents);
  cert.serial.assign(magnitude.begin(), magnitude.end());

  IOTPKI_TRY(der::Element sig_alg, t.Expect(der::kSequence));
  if (!Equal(sig_alg.whole, outer_alg.whole)) {
    return Fail(Unsupported("a signatureAlgorithm that differs from TBSCertificate.signature"));
  }
  IOTPKI_TRY(cert.signature_algorithm, AlgorithmFromDer(sig_alg, true));

  IOTPKI_TRY(der::Element issuer, t.Expect(der::kSequence));
  IOTPKI_TRY(der::Element validity, t.Expect(der::kSequence));
  IOTPKI_TRY(der::Element subject, t.Expect(der::kSequence));
  IOTPKI_TRY(der::Element spki, t.Expect(der::kSequence));

  IOTPKI_TRY(cert.subject, internal::NameFromDer(subject.whole));
  if (!Equal(issuer.whole, subject.whole)) {
    IOTPKI_TRY(Name issuer_name, internal::NameFromDer(issuer.whole));
    cert.issuer = std::move(issuer_name);
  }

  der::Reader v(validity.contents);
  IOTPKI_TRY(der::Element not_before, v.Next());
  IOTPKI_TRY(der::Element not_after, v.Next());
  if (!v.empty()) return Fail(BadX509("Validity with extra elements"));
  IOTPKI_TRY(cert.not_before, TimeFromDer(not_before));
  if (!IsNoExpiry(not_after)) {
    IOTPKI_TRY(int64_t t, TimeFromDer(not_after));
    cert.not_after = t;
  }

  der::Reader k(spki.contents);
  IOTPKI_TRY(der::Element pk_alg, k.Expect(der::kSequence));
  IOTPKI_TRY(der::Element pk_bits, k.Expect(der::kBitString));
  if (!k.empty()) return Fail(BadX509("SubjectPublicKeyInfo with extra elements"));
  IOTPKI_TRY(cert.public_key_algorithm, AlgorithmFromDer(pk_alg, false));
  IOTPKI_TRY(cert.public_key, PublicKeyFromDer(cert.public_key_algorithm, pk_bits.contents));

  if (t.PeekTag() == kIssuerUniqueIdTag || t.PeekTag() == kSubjectUniqueIdTag) {
    return Fail(Unsupported("issuerUniqueID or subjectUniqueID"));
  }
  if (!t.empty()) {
    IOTPKI_TRY(der::Element wrapper, t.Expect(kExtensionsTag));
    der::Reader w(wrapper.contents);
    IOTPKI_TRY(der::Element list, w.Expect(der::kSequence));
    if (!w.empty()) return Fail(BadX509("extensions field with extra elements"));
    der::Reader exts(list.contents);
    if (exts.empty()) return Fail(Unsupported("an empty extensions field"));
    while (!exts.empty()) {
      IOTPKI_TRY(der::Element ext, exts.Next());
      IOTPKI_TRY(Extension e, ExtensionFromDer(ext));
      cert.extensions.push_back(std::move(e));
    }
  }
  if (!t.empty()) return Fail(BadX509("TBSCertificate with extra elements"));

  IOTPKI_TRY(cert.signature, SignatureFromDer(cert.signature_algorithm, sig_value.contents));
  return cert;
}

Result<Bytes> ToX509(const C509Certificate& cert) {
  if (cert.type != kTypeReencoded) {
    return Fail(Code::kInvalidArgument,
                "only type 3 (re-encoded) C509 certificates have an X.509 form");
  }
  IOTPKI_TRY(Bytes sig_alg, AlgorithmToDer(cert.signature_algorithm, true));
  IOTPKI_TRY(Bytes subject, internal::NameToDer(cert.subject));
  Bytes issuer = subject;
  if (cert.issuer) {
    IOTPKI_TRY(issuer, internal::NameToDer(*cert.issuer));
  }
  IOTPKI_TRY(Bytes not_before, TimeToDer(cert.not_before));
  IOTPKI_TRY(Bytes not_after, TimeToDer(cert.not_after));
  IOTPKI_TRY(Bytes spki,
             internal::SubjectPublicKeyInfoToDer(cert.public_key_algorithm, cert.public_key));
  Bytes extensions;
  if (!cert.extensions.empty()) {
    Bytes list;
    for (const Extension& e : cert.extensions) {
      IOTPKI_TRY(Bytes ext, ExtensionToDer(e));
      list.insert(list.end(), ext.begin(), ext.end());
    }
    extensions = der::Tlv(kExtensionsTag, der::Tlv(der::kSequence, list));
  }
  static const Bytes kVersion = {kVersionTag, 0x03, 0x02, 0x01, 0x02};
  Bytes tbs = der::Sequence({kVersion, der::UnsignedInteger(cert.serial), sig_alg, issuer,
                             der::Sequence({not_before, not_after}), subject, spki, extensions});
  IOTPKI_TRY(Bytes signature, SignatureToDer(cert.signature_algorithm, cert.signature));
  return der::Sequence({tbs, sig_alg, signature});
}

Result<C509Certificate> Parse(ByteView c509) {
  IOTPKI_TRY(internal::Parsed parsed, internal::ParseWithTbs(c509));
  return std::move(parsed.cert);
}

Result<Bytes> Serialize(const C509Certificate& cert) {
  IOTPKI_TRY(std::vector<Item> items, ToItems(cert));
  return EncodeItems(items);
}

Result<Bytes> DecodeToX509(ByteView c509) {
  IOTPKI_TRY(C509Certificate cert, Parse(c509));
  return ToX509(cert);
}

Result<Bytes> EncodeX509(ByteView der) {
  IOTPKI_TRY(C509Certificate cert, FromX509(der));
  IOTPKI_TRY(Bytes c509, Serialize(cert));
  // The per-field checks above make the encoding exact for everything they know about; this
  // end-to-end check is the guarantee (e.g. non-minimal INTEGERs inside a signature).
  auto back = DecodeToX509(c509);
  if (!back) {
    return Fail(Error(Code::kInvalidArgument,
                      "C509 re-encoding failed its round-trip check: " + back.error().message()));
  }
  if (!Equal(*back, der)) {
    const auto diff = std::mismatch(back->begin(), back->end(), der.begin(), der.end());
    return Fail(Code::kInvalidArgument,
                "C509 cannot represent this certificate exactly (DER differs at byte " +
                    std::to_string(diff.second - der.begin()) + ")");
  }
  return c509;
}

Result<Bytes> SignedBytes(ByteView c509) {
  IOTPKI_TRY(internal::Parsed parsed, internal::ParseWithTbs(c509));
  if (parsed.cert.type == kTypeNative) return std::move(parsed.tbs_cbor);
  IOTPKI_TRY(Bytes der, ToX509(parsed.cert));
  der::Reader top(der);
  IOTPKI_TRY(der::Element cert_el, top.Expect(der::kSequence));
  der::Reader c(cert_el.contents);
  IOTPKI_TRY(der::Element tbs, c.Expect(der::kSequence));
  return Bytes(tbs.whole.begin(), tbs.whole.end());
}

}  // namespace iotpki::c509
