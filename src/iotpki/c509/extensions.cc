// Extension values: X.509 extnValue DER <-> C509 extensionValue (draft section 3.3).
//
// Each registered extension has a pair of functions. The DER -> CBOR direction returns an error
// whenever the value uses something the specific encoding cannot carry; the certificate encoder
// then checks the pair round-trips and otherwise uses the generic (~oid, bytes) form, which the
// draft prescribes for values "for which the CBOR int encoded extensionID is not supported".
#include <bit>
#include <string>
#include <utility>
#include <vector>

#include "iotpki/c509/internal.h"
#include "iotpki/common/strings.h"

namespace iotpki::c509::internal {
namespace {

using cbor::Item;

constexpr uint8_t kOtherName = 0xa0;
constexpr uint8_t kRfc822Name = 0x81;
constexpr uint8_t kDnsName = 0x82;
constexpr uint8_t kDirectoryName = 0xa4;
constexpr uint8_t kUri = 0x86;
constexpr uint8_t kIpAddress = 0x87;
constexpr uint8_t kRegisteredId = 0x88;

// GeneralName types of the C509 General Names registry (8.13).
constexpr int64_t kGnMacAddress = -3;
constexpr int64_t kGnSmtpUtf8Mailbox = -2;
constexpr int64_t kGnHardwareModuleName = -1;
constexpr int64_t kGnOtherName = 0;
constexpr int64_t kGnRfc822Name = 1;
constexpr int64_t kGnDnsName = 2;
constexpr int64_t kGnDirectoryName = 4;
constexpr int64_t kGnUri = 6;
constexpr int64_t kGnIpAddress = 7;
constexpr int64_t kGnRegisteredId = 8;

const Bytes& OidHardwareModuleName() {
  static const Bytes* oid = new Bytes(der::OidContent("1.3.6.1.5.5.7.8.4"));
  return *oid;
}
const Bytes& OidSmtpUtf8Mailbox() {
  static const Bytes* oid = new Bytes(der::OidContent("1.3.6.1.5.5.7.8.9"));
  return *oid;
}
const Bytes& OidMacAddress() {
  static const Bytes* oid = new Bytes(der::OidContent("1.3.6.1.5.5.7.8.12"));
  return *oid;
}

bool Equal(ByteView a, ByteView b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

// All elements of a constructed value's contents.
Result<std::vector<der::Element>> Children(ByteView contents) {
  der::Reader r(contents);
  std::vector<der::Element> out;
  while (!r.empty()) {
    IOTPKI_TRY(der::Element e, r.Next());
    out.push_back(e);
  }
  return out;
}

// The contents of `der`, which must be exactly one element with `tag`.
Result<ByteView> Only(ByteView der, uint8_t tag) {
  der::Reader r(der);
  IOTPKI_TRY(der::Element e, r.Expect(tag));
  if (!r.empty()) return Fail(BadX509("trailing bytes in an extension value"));
  return e.contents;
}

Result<Item> Text(ByteView bytes, bool ia5) {
  if (!IsValidUtf8(bytes) || (ia5 && !IsIa5String(AsString(bytes)))) {
    return Fail(Unsupported("a non-text string value"));
  }
  return Item::TextString(AsString(bytes));
}

Result<std::string_view> ExpectText(const Item& item, std::string_view what) {
  if (!item.is_text()) return Fail(Malformed(std::string(what) + " must be text"));
  return item.text();
}

Result<ByteView> ExpectBytes(const Item& item, std::string_view what) {
  if (!item.is_bytes()) return Fail(Malformed(std::string(what) + " must be bytes"));
  return item.bytes();
}

Result<uint64_t> ExpectUint(const Item& item, std::string_view what) {
  if (!item.is_unsigned()) return Fail(Malformed(std::string(what) + " must be an unsigned int"));
  return item.raw();
}

Result<const std::vector<Item>*> ExpectArray(const Item& item, std::string_view what,
                                             size_t multiple = 1) {
  if (!item.is_array() || item.items().empty() || item.items().size() % multiple != 0) {
    return Fail(Malformed(std::string(what) + " must be a non-empty array"));
  }
  return &item.items();
}

Result<Bytes> OidTlv(ByteView content) {
  if (der::OidToText(content).empty()) return Fail(Malformed("malformed OID"));
  return der::Tlv(der::kOid, content);
}

// A registered OID as its int, otherwise as ~oid (bytes).
Item CodeOrOid(const registry::OidTable& table, ByteView oid) {
  if (const registry::OidEntry* e = table.ByOid(oid)) return Item::Int(e->code);
  return Item::ByteString(oid);
}

Result<Bytes> OidFromCodeOrOid(const registry::OidTable& table, const Item& item,
                               std::string_view what) {
  if (item.is_bytes()) return OidTlv(item.bytes());
  auto code = item.AsInt();
  const registry::OidEntry* e = code ? table.ByCode(*code) : nullptr;
  if (e == nullptr) return Fail(Malformed("unknown " + std::string(what) + " " + Diagnostic(item)));
  return der::Tlv(der::kOid, e->oid);
}

Result<uint64_t> SmallUint(ByteView integer_contents) {
  IOTPKI_TRY(int64_t v, der::ParseSmallInteger(integer_contents));
  return static_cast<uint64_t>(v);
}

Bytes UintTlv(uint64_t v, uint8_t tag = der::kInteger) {
  Bytes magnitude;
  for (int shift = 56; shift >= 0; shift -= 8) magnitude.push_back(uint8_t(v >> shift));
  return Retag(der::UnsignedInteger(magnitude), tag);
}

// --- GeneralName ---

Result<std::pair<int64_t, Item>> GeneralNameFromDer(const der::Element& gn) {
  switch (gn.tag) {
    case kOtherName: {
      der::Reader r(gn.contents);
      IOTPKI_TRY(der::Element oid, r.Expect(der::kOid));
      IOTPKI_TRY(der::Element wrapped, r.Expect(0xa0));
      if (!r.empty()) return Fail(BadX509("otherName with extra elements"));
      der::Reader inner(wrapped.contents);
      IOTPKI_TRY(der::Element value, inner.Next());
      if (!inner.empty()) return Fail(BadX509("otherName value with extra elements"));
      if (Equal(oid.contents, OidHardwareModuleName())) {
        der::Reader hw(value.contents);
        if (value.tag == der::kSequence) {
          auto type = hw.Expect(der::kOid);
          auto serial = type ? hw.Expect(der::kOctetString) : Result<der::Element>(type);
          if (type && serial && hw.empty()) {
            return std::pair{kGnHardwareModuleName,
                             Item::Array({Item::ByteString(type->contents),
                                          Item::ByteString(serial->contents)})};
          }
        }
      } else if (Equal(oid.contents, OidSmtpUtf8Mailbox())) {
        if (value.tag == der::kUtf8String) {
          IOTPKI_TRY(Item text, Text(value.contents, false));
          return std::pair{kGnSmtpUtf8Mailbox, std::move(text)};
        }
      } else if (Equal(oid.contents, OidMacAddress())) {
        if (value.tag == der::kOctetString &&
            (value.contents.size() == 6 || value.contents.size() == 8)) {
          return std::pair{kGnMacAddress, Item::ByteString(value.contents)};
        }
      }
      // A registered otherName whose value does not fit its specific form cannot fall back to
      // the generic form (the draft requires the specific one); the extension goes generic.
      if (Equal(oid.contents, OidHardwareModuleName()) ||
          Equal(oid.contents, OidSmtpUtf8Mailbox()) || Equal(oid.contents, OidMacAddress())) {
        return Fail(Unsupported("an otherName that does not match its registered form"));
      }
      return std::pair{kGnOtherName, Item::Array({Item::ByteString(oid.contents),
                                                  Item::ByteString(value.whole)})};
    }
    case kRfc822Name: {
      IOTPKI_TRY(Item text, Text(gn.contents, true));
      return std::pair{kGnRfc822Name, std::move(text)};
    }
    case kDnsName: {
      IOTPKI_TRY(Item text, Text(gn.contents, true));
      return std::pair{kGnDnsName, std::move(text)};
    }
    case kDirectoryName: {
      IOTPKI_TRY(Name name, NameFromDer(gn.contents));
      return std::pair{kGnDirectoryName, NameToCbor(name)};
    }
    case kUri: {
      IOTPKI_TRY(Item text, Text(gn.contents, true));
      return std::pair{kGnUri, std::move(text)};
    }
    case kIpAddress:
      return std::pair{kGnIpAddress, Item::ByteString(gn.contents)};
    case kRegisteredId:
      if (der::OidToText(gn.contents).empty()) return Fail(BadX509("malformed registeredID"));
      return std::pair{kGnRegisteredId, Item::ByteString(gn.contents)};
    default:
      return Fail(Unsupported("x400Address or ediPartyName general names"));
  }
}

Result<Bytes> GeneralNameToDer(const Item& type_item, const Item& value) {
  auto type = type_item.AsInt();
  if (!type) return Fail(Malformed("GeneralName type must be an int"));
  switch (*type) {
    case kGnHardwareModuleName: {
      IOTPKI_TRY(const auto* pair, ExpectArray(value, "hardwareModuleName", 2));
      if (pair->size() != 2) return Fail(Malformed("hardwareModuleName must be [oid, bytes]"));
      IOTPKI_TRY(ByteView hw_type, ExpectBytes((*pair)[0], "hwType"));
      IOTPKI_TRY(ByteView serial, ExpectBytes((*pair)[1], "hwSerialNum"));
      IOTPKI_TRY(Bytes hw_type_tlv, OidTlv(hw_type));
      Bytes inner = der::Sequence({hw_type_tlv, der::OctetString(serial)});
      return der::Constructed(
          kOtherName, {der::Tlv(der::kOid, OidHardwareModuleName()), der::Tlv(0xa0, inner)});
    }
    case kGnSmtpUtf8Mailbox: {
      IOTPKI_TRY(std::string_view text, ExpectText(value, "SmtpUTF8Mailbox"));
      return der::Constructed(kOtherName, {der::Tlv(der::kOid, OidSmtpUtf8Mailbox()),
                                           der::Tlv(0xa0, der::Utf8String(text))});
    }
    case kGnMacAddress: {
      IOTPKI_TRY(ByteView mac, ExpectBytes(value, "MACAddress"));
      if (mac.size() != 6 && mac.size() != 8) {
        return Fail(Malformed("MACAddress must hold 6 or 8 bytes"));
      }
      return der::Constructed(kOtherName, {der::Tlv(der::kOid, OidMacAddress()),
                                           der::Tlv(0xa0, der::OctetString(mac))});
    }
    case kGnOtherName: {
      IOTPKI_TRY(const auto* pair, ExpectArray(value, "otherName", 2));
      if (pair->size() != 2) return Fail(Malformed("otherName must be [oid, bytes]"));
      IOTPKI_TRY(ByteView oid, ExpectBytes((*pair)[0], "otherName type-id"));
      IOTPKI_TRY(ByteView inner, ExpectBytes((*pair)[1], "otherName value"));
      der::Reader check(inner);
      if (!check.Next() || !check.empty()) {
        return Fail(Malformed("otherName value is not one DER element"));
      }
      IOTPKI_TRY(Bytes oid_tlv, OidTlv(oid));
      return der::Constructed(kOtherName, {oid_tlv, der::Tlv(0xa0, inner)});
    }
    case kGnRfc822Name:
    case kGnDnsName:
    case kGnUri: {
      IOTPKI_TRY(std::string_view text, ExpectText(value, "GeneralName"));
      if (!IsIa5String(text)) return Fail(Malformed("GeneralName text must be IA5 (ASCII)"));
      const uint8_t tag = *type == kGnRfc822Name ? kRfc822Name
                          : *type == kGnDnsName  ? kDnsName
                                                 : kUri;
      return der::Tlv(tag, AsBytes(text));
    }
    case kGnDirectoryName: {
      IOTPKI_TRY(Name name, NameFromCbor(value));
      IOTPKI_TRY(Bytes der_name, NameToDer(name));
      return der::Tlv(kDirectoryName, der_name);
    }
    case kGnIpAddress: {
      IOTPKI_TRY(ByteView ip, ExpectBytes(value, "iPAddress"));
      return der::Tlv(kIpAddress, ip);
    }
    case kGnRegisteredId: {
      IOTPKI_TRY(ByteView oid, ExpectBytes(value, "registeredID"));
      if (der::OidToText(oid).empty()) return Fail(Malformed("malformed registeredID"));
      return der::Tlv(kRegisteredId, oid);
    }
    default:
      return Fail(Unsupported("GeneralName type " + std::to_string(*type)));
  }
}

// GeneralNames (the SEQUENCE contents) <-> [+ (type, value)].
Result<Item> GeneralNamesFromDer(ByteView contents) {
  IOTPKI_TRY(auto names, Children(contents));
  if (names.empty()) return Fail(Unsupported("empty GeneralNames"));
  std::vector<Item> items;
  for (const der::Element& gn : names) {
    IOTPKI_TRY(auto pair, GeneralNameFromDer(gn));
    items.push_back(Item::Int(pair.first));
    items.push_back(std::move(pair.second));
  }
  return Item::Array(std::move(items));
}

Result<Bytes> GeneralNamesToDer(const Item& item) {
  IOTPKI_TRY(const auto* items, ExpectArray(item, "GeneralNames", 2));
  Bytes out;
  for (size_t i = 0; i < items->size(); i += 2) {
    IOTPKI_TRY(Bytes gn, GeneralNameToDer((*items)[i], (*items)[i + 1]));
    out.insert(out.end(), gn.begin(), gn.end());
  }
  return out;
}

// --- The extensions ---

Result<Item> SubjectKeyIdFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView id, Only(ev, der::kOctetString));
  return Item::ByteString(id);
}
Result<Bytes> SubjectKeyIdToDer(const Item& v) {
  IOTPKI_TRY(ByteView id, ExpectBytes(v, "subjectKeyIdentifier"));
  return der::OctetString(id);
}

Result<Item> KeyUsageFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView bits, Only(ev, der::kBitString));
  IOTPKI_TRY(uint64_t flags, FlagsFromBitString(bits));
  return Item::Uint(flags);
}
Result<Bytes> KeyUsageToDer(const Item& v) {
  IOTPKI_TRY(uint64_t flags, ExpectUint(v, "keyUsage"));
  return der::Tlv(der::kBitString, FlagsToBitString(flags));
}

Result<Item> AltNameFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(Item names, GeneralNamesFromDer(contents));
  if (names.items().size() == 2 && names.items()[0] == Item::Int(kGnDnsName)) {
    return names.items()[1];
  }
  return names;
}
Result<Bytes> AltNameToDer(const Item& v) {
  if (v.is_text()) {
    if (!IsIa5String(v.text())) return Fail(Malformed("dNSName must be IA5 (ASCII)"));
    return der::Sequence({der::Tlv(kDnsName, AsBytes(v.text()))});
  }
  IOTPKI_TRY(Bytes names, GeneralNamesToDer(v));
  return der::Tlv(der::kSequence, names);
}

Result<Item> BasicConstraintsFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto parts, Children(contents));
  if (parts.empty()) return Item::Int(-2);
  if (parts[0].tag != der::kBoolean || parts[0].contents.size() != 1 ||
      parts[0].contents[0] != 0xff) {
    return Fail(Unsupported("basicConstraints without cA = TRUE and with pathLen"));
  }
  if (parts.size() == 1) return Item::Int(-1);
  if (parts.size() != 2 || parts[1].tag != der::kInteger) {
    return Fail(BadX509("malformed basicConstraints"));
  }
  IOTPKI_TRY(uint64_t path_len, SmallUint(parts[1].contents));
  return Item::Uint(path_len);
}
Result<Bytes> BasicConstraintsToDer(const Item& v) {
  auto n = v.AsInt();
  if (!n || *n < -2) return Fail(Malformed("basicConstraints must be -2, -1 or a path length"));
  if (*n == -2) return der::Sequence({});
  if (*n == -1) return der::Sequence({der::Boolean(true)});
  return der::Sequence({der::Boolean(true), der::SmallInteger(*n)});
}

Result<Item> CrlDistributionPointsFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto points, Children(contents));
  if (points.empty()) return Fail(Unsupported("empty cRLDistributionPoints"));
  std::vector<Item> out;
  bool only_one_uri = points.size() == 1;
  for (const der::Element& dp : points) {
    if (dp.tag != der::kSequence) return Fail(BadX509("malformed DistributionPoint"));
    der::Reader r(dp.contents);
    IOTPKI_TRY(der::Element name, r.Expect(0xa0));
    IOTPKI_TRY(ByteView full_name, Only(name.contents, 0xa0));
    IOTPKI_TRY(auto uris, Children(full_name));
    if (uris.empty()) return Fail(Unsupported("empty fullName"));
    std::vector<Item> texts;
    for (const der::Element& uri : uris) {
      if (uri.tag != kUri) return Fail(Unsupported("a CRL distribution point not a URI"));
      IOTPKI_TRY(Item text, Text(uri.contents, true));
      texts.push_back(std::move(text));
    }
    Item reasons = Item::Null();
    Item issuer = Item::Null();
    IOTPKI_TRY(der::Element reasons_el, r.Optional(0x81));
    if (reasons_el.tag != 0) {
      IOTPKI_TRY(uint64_t flags, FlagsFromBitString(reasons_el.contents));
      reasons = Item::Uint(flags);
    }
    IOTPKI_TRY(der::Element issuer_el, r.Optional(0xa2));
    if (issuer_el.tag != 0) {
      IOTPKI_TRY(auto gns, Children(issuer_el.contents));
      if (gns.size() != 1 || gns[0].tag != kDirectoryName) {
        return Fail(Unsupported("a cRLIssuer other than one directoryName"));
      }
      IOTPKI_TRY(Name n, NameFromDer(gns[0].contents));
      issuer = NameToCbor(n);
    }
    if (!r.empty()) return Fail(BadX509("malformed DistributionPoint"));
    only_one_uri = only_one_uri && texts.size() == 1 && reasons.is_null() && issuer.is_null();
    Item full = texts.size() == 1 ? texts[0] : Item::Array(texts);
    out.push_back(Item::Array({std::move(full), std::move(reasons), std::move(issuer)}));
  }
  if (only_one_uri) return out[0].items()[0];
  return Item::Array(std::move(out));
}
Result<Bytes> CrlDistributionPointsToDer(const Item& v) {
  std::vector<Item> points;
  if (v.is_text()) {
    points.push_back(Item::Array({v, Item::Null(), Item::Null()}));
  } else {
    IOTPKI_TRY(const auto* items, ExpectArray(v, "cRLDistributionPoints"));
    points = *items;
  }
  Bytes out;
  for (const Item& dp : points) {
    if (!dp.is_array() || dp.items().size() != 3) {
      return Fail(Malformed("DistributionPoint must be [fullName, reasons, cRLIssuer]"));
    }
    const Item& full = dp.items()[0];
    std::vector<Item> uris = full.is_text() ? std::vector<Item>{full} : std::vector<Item>{};
    if (!full.is_text()) {
      IOTPKI_TRY(const auto* list, ExpectArray(full, "fullName"));
      uris = *list;
    }
    Bytes names;
    for (const Item& uri : uris) {
      IOTPKI_TRY(std::string_view text, ExpectText(uri, "fullName URI"));
      if (!IsIa5String(text)) return Fail(Malformed("fullName URI must be IA5 (ASCII)"));
      der::AppendTlv(names, kUri, AsBytes(text));
    }
    Bytes body = der::Tlv(0xa0, der::Tlv(0xa0, names));
    if (!dp.items()[1].is_null()) {
      IOTPKI_TRY(uint64_t flags, ExpectUint(dp.items()[1], "reasons"));
      der::AppendTlv(body, 0x81, FlagsToBitString(flags));
    }
    if (!dp.items()[2].is_null()) {
      IOTPKI_TRY(Name n, NameFromCbor(dp.items()[2]));
      IOTPKI_TRY(Bytes der_name, NameToDer(n));
      der::AppendTlv(body, 0xa2, der::Tlv(kDirectoryName, der_name));
    }
    der::AppendTlv(out, der::kSequence, body);
  }
  return der::Tlv(der::kSequence, out);
}

const Bytes& OidExplicitUtf8Notice() {
  static const Bytes* oid = new Bytes(registry::PolicyQualifiers().ByCode(2)->oid);
  return *oid;
}

Result<Item> CertificatePoliciesFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto policies, Children(contents));
  if (policies.empty()) return Fail(Unsupported("empty certificatePolicies"));
  std::vector<Item> out;
  for (const der::Element& info : policies) {
    if (info.tag != der::kSequence) return Fail(BadX509("malformed PolicyInformation"));
    der::Reader r(info.contents);
    IOTPKI_TRY(der::Element policy, r.Expect(der::kOid));
    std::vector<Item> qualifiers;
    if (!r.empty()) {
      IOTPKI_TRY(der::Element list, r.Expect(der::kSequence));
      IOTPKI_TRY(auto infos, Children(list.contents));
      for (const der::Element& q : infos) {
        if (q.tag != der::kSequence) return Fail(BadX509("malformed PolicyQualifierInfo"));
        der::Reader qr(q.contents);
        IOTPKI_TRY(der::Element id, qr.Expect(der::kOid));
        IOTPKI_TRY(der::Element value, qr.Next());
        if (!qr.empty()) return Fail(BadX509("malformed PolicyQualifierInfo"));
        const registry::OidEntry* e = registry::PolicyQualifiers().ByOid(id.contents);
        if (e != nullptr && e->code == 1 && value.tag == der::kIa5String) {
          IOTPKI_TRY(Item text, Text(value.contents, true));
          qualifiers.push_back(Item::Int(1));
          qualifiers.push_back(std::move(text));
        } else if (e != nullptr && e->code == 2 && value.tag == der::kSequence) {
          // UserNotice with explicitText as UTF8String and no noticeRef only.
          IOTPKI_TRY(ByteView text, Only(value.contents, der::kUtf8String));
          IOTPKI_TRY(Item t, Text(text, false));
          qualifiers.push_back(Item::Int(2));
          qualifiers.push_back(std::move(t));
        } else {
          return Fail(Unsupported("this policy qualifier"));
        }
      }
      if (qualifiers.empty()) return Fail(Unsupported("empty policyQualifiers"));
    }
    if (!r.empty()) return Fail(BadX509("malformed PolicyInformation"));
    out.push_back(CodeOrOid(registry::CertificatePolicies(), policy.contents));
    out.push_back(Item::Array(std::move(qualifiers)));
  }
  return Item::Array(std::move(out));
}
Result<Bytes> CertificatePoliciesToDer(const Item& v) {
  IOTPKI_TRY(const auto* items, ExpectArray(v, "certificatePolicies", 2));
  Bytes out;
  for (size_t i = 0; i < items->size(); i += 2) {
    IOTPKI_TRY(Bytes policy,
               OidFromCodeOrOid(registry::CertificatePolicies(), (*items)[i], "policy"));
    const Item& qs = (*items)[i + 1];
    if (!qs.is_array() || qs.items().size() % 2 != 0) {
      return Fail(Malformed("policy qualifiers must be an array of pairs"));
    }
    Bytes qualifiers;
    for (size_t k = 0; k < qs.items().size(); k += 2) {
      auto id = qs.items()[k].AsInt();
      IOTPKI_TRY(std::string_view text, ExpectText(qs.items()[k + 1], "policy qualifier"));
      if (id == 1) {
        if (!IsIa5String(text)) return Fail(Malformed("CPS URI must be IA5 (ASCII)"));
        Bytes q = der::Sequence({der::Tlv(der::kOid, registry::PolicyQualifiers().ByCode(1)->oid),
                                 der::Ia5String(text)});
        qualifiers.insert(qualifiers.end(), q.begin(), q.end());
      } else if (id == 2) {
        Bytes q = der::Sequence(
            {der::Tlv(der::kOid, OidExplicitUtf8Notice()), der::Sequence({der::Utf8String(text)})});
        qualifiers.insert(qualifiers.end(), q.begin(), q.end());
      } else {
        return Fail(Unsupported("policy qualifier " + Diagnostic(qs.items()[k])));
      }
    }
    Bytes body = policy;
    if (!qualifiers.empty()) der::AppendTlv(body, der::kSequence, qualifiers);
    der::AppendTlv(out, der::kSequence, body);
  }
  return der::Tlv(der::kSequence, out);
}

Result<Item> AuthorityKeyIdFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  der::Reader r(contents);
  IOTPKI_TRY(der::Element key_id, r.Optional(0x80));
  IOTPKI_TRY(der::Element issuer, r.Optional(0xa1));
  IOTPKI_TRY(der::Element serial, r.Optional(0x82));
  if (!r.empty()) return Fail(BadX509("malformed authorityKeyIdentifier"));
  if (key_id.tag != 0 && issuer.tag == 0 && serial.tag == 0) {
    return Item::ByteString(key_id.contents);
  }
  if (key_id.tag == 0 || issuer.tag == 0 || serial.tag == 0) {
    return Fail(Unsupported("authorityKeyIdentifier with only some of its fields"));
  }
  IOTPKI_TRY(Item names, GeneralNamesFromDer(issuer.contents));
  if (serial.contents.empty() || (serial.contents[0] & 0x80)) {
    return Fail(Unsupported("a negative authorityCertSerialNumber"));
  }
  ByteView magnitude = serial.contents;
  while (!magnitude.empty() && magnitude[0] == 0) magnitude = magnitude.subspan(1);
  return Item::Array(
      {Item::ByteString(key_id.contents), std::move(names), Item::ByteString(magnitude)});
}
Result<Bytes> AuthorityKeyIdToDer(const Item& v) {
  if (v.is_bytes()) return der::Sequence({der::Tlv(0x80, v.bytes())});
  if (!v.is_array() || v.items().size() != 3) {
    return Fail(Malformed("authorityKeyIdentifier must be bytes or [keyId, names, serial]"));
  }
  IOTPKI_TRY(ByteView key_id, ExpectBytes(v.items()[0], "keyIdentifier"));
  IOTPKI_TRY(Bytes names, GeneralNamesToDer(v.items()[1]));
  IOTPKI_TRY(ByteView serial, ExpectBytes(v.items()[2], "authorityCertSerialNumber"));
  return der::Sequence(
      {der::Tlv(0x80, key_id), der::Tlv(0xa1, names), Retag(der::UnsignedInteger(serial), 0x82)});
}

Result<Item> ExtKeyUsageFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto oids, Children(contents));
  if (oids.empty()) return Fail(Unsupported("empty extKeyUsage"));
  std::vector<Item> out;
  for (const der::Element& oid : oids) {
    if (oid.tag != der::kOid) return Fail(BadX509("malformed extKeyUsage"));
    out.push_back(CodeOrOid(registry::ExtendedKeyUsages(), oid.contents));
  }
  if (out.size() == 1) return out[0];
  return Item::Array(std::move(out));
}
Result<Bytes> ExtKeyUsageToDer(const Item& v) {
  std::vector<Item> purposes = v.is_array() ? v.items() : std::vector<Item>{v};
  if (purposes.empty()) return Fail(Malformed("extKeyUsage must not be empty"));
  Bytes out;
  for (const Item& p : purposes) {
    IOTPKI_TRY(Bytes oid, OidFromCodeOrOid(registry::ExtendedKeyUsages(), p, "key purpose"));
    out.insert(out.end(), oid.begin(), oid.end());
  }
  return der::Tlv(der::kSequence, out);
}

Result<Item> InfoAccessFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto descriptions, Children(contents));
  if (descriptions.empty()) return Fail(Unsupported("empty information access"));
  std::vector<Item> out;
  for (const der::Element& d : descriptions) {
    if (d.tag != der::kSequence) return Fail(BadX509("malformed AccessDescription"));
    der::Reader r(d.contents);
    IOTPKI_TRY(der::Element method, r.Expect(der::kOid));
    IOTPKI_TRY(der::Element location, r.Next());
    if (!r.empty()) return Fail(BadX509("malformed AccessDescription"));
    if (location.tag != kUri) return Fail(Unsupported("an access location not a URI"));
    IOTPKI_TRY(Item text, Text(location.contents, true));
    out.push_back(CodeOrOid(registry::InformationAccess(), method.contents));
    out.push_back(std::move(text));
  }
  return Item::Array(std::move(out));
}
Result<Bytes> InfoAccessToDer(const Item& v) {
  IOTPKI_TRY(const auto* items, ExpectArray(v, "information access", 2));
  Bytes out;
  for (size_t i = 0; i < items->size(); i += 2) {
    IOTPKI_TRY(Bytes method,
               OidFromCodeOrOid(registry::InformationAccess(), (*items)[i], "access method"));
    IOTPKI_TRY(std::string_view uri, ExpectText((*items)[i + 1], "access location"));
    if (!IsIa5String(uri)) return Fail(Malformed("access location must be IA5 (ASCII)"));
    Bytes description = der::Sequence({method, der::Tlv(kUri, AsBytes(uri))});
    out.insert(out.end(), description.begin(), description.end());
  }
  return der::Tlv(der::kSequence, out);
}

Result<Item> PolicyMappingsFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto mappings, Children(contents));
  if (mappings.empty()) return Fail(Unsupported("empty policyMappings"));
  std::vector<Item> out;
  for (const der::Element& m : mappings) {
    if (m.tag != der::kSequence) return Fail(BadX509("malformed policyMappings"));
    der::Reader r(m.contents);
    IOTPKI_TRY(der::Element from, r.Expect(der::kOid));
    IOTPKI_TRY(der::Element to, r.Expect(der::kOid));
    if (!r.empty()) return Fail(BadX509("malformed policyMappings"));
    out.push_back(CodeOrOid(registry::CertificatePolicies(), from.contents));
    out.push_back(CodeOrOid(registry::CertificatePolicies(), to.contents));
  }
  return Item::Array(std::move(out));
}
Result<Bytes> PolicyMappingsToDer(const Item& v) {
  IOTPKI_TRY(const auto* items, ExpectArray(v, "policyMappings", 2));
  Bytes out;
  for (size_t i = 0; i < items->size(); i += 2) {
    IOTPKI_TRY(Bytes from,
               OidFromCodeOrOid(registry::CertificatePolicies(), (*items)[i], "policy"));
    IOTPKI_TRY(Bytes to,
               OidFromCodeOrOid(registry::CertificatePolicies(), (*items)[i + 1], "policy"));
    Bytes mapping = der::Sequence({from, to});
    out.insert(out.end(), mapping.begin(), mapping.end());
  }
  return der::Tlv(der::kSequence, out);
}

Result<Item> PolicyConstraintsFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  der::Reader r(contents);
  IOTPKI_TRY(der::Element require, r.Optional(0x80));
  IOTPKI_TRY(der::Element inhibit, r.Optional(0x81));
  if (!r.empty()) return Fail(BadX509("malformed policyConstraints"));
  Item a = Item::Null();
  Item b = Item::Null();
  if (require.tag != 0) {
    IOTPKI_TRY(uint64_t n, SmallUint(require.contents));
    a = Item::Uint(n);
  }
  if (inhibit.tag != 0) {
    IOTPKI_TRY(uint64_t n, SmallUint(inhibit.contents));
    b = Item::Uint(n);
  }
  return Item::Array({std::move(a), std::move(b)});
}
Result<Bytes> PolicyConstraintsToDer(const Item& v) {
  if (!v.is_array() || v.items().size() != 2) {
    return Fail(Malformed("policyConstraints must be [uint/null, uint/null]"));
  }
  Bytes out;
  for (int i = 0; i < 2; ++i) {
    const Item& e = v.items()[i];
    if (e.is_null()) continue;
    IOTPKI_TRY(uint64_t n, ExpectUint(e, "policyConstraints"));
    Bytes tlv = UintTlv(n, static_cast<uint8_t>(0x80 | i));
    out.insert(out.end(), tlv.begin(), tlv.end());
  }
  return der::Tlv(der::kSequence, out);
}

Result<Item> InhibitAnyPolicyFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kInteger));
  IOTPKI_TRY(uint64_t n, SmallUint(contents));
  return Item::Uint(n);
}
Result<Bytes> InhibitAnyPolicyToDer(const Item& v) {
  IOTPKI_TRY(uint64_t n, ExpectUint(v, "inhibitAnyPolicy"));
  return UintTlv(n);
}

Result<Item> OcspNoCheckFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kNull));
  if (!contents.empty()) return Fail(BadX509("malformed NULL"));
  return Item::Null();
}
Result<Bytes> OcspNoCheckToDer(const Item& v) {
  if (!v.is_null()) return Fail(Malformed("id-pkix-ocsp-nocheck must be null"));
  return der::Tlv(der::kNull, {});
}

Result<Item> TlsFeaturesFromDer(ByteView ev) {
  IOTPKI_TRY(ByteView contents, Only(ev, der::kSequence));
  IOTPKI_TRY(auto features, Children(contents));
  std::vector<Item> out;
  for (const der::Element& f : features) {
    if (f.tag != der::kInteger) return Fail(BadX509("malformed TLS feature"));
    IOTPKI_TRY(uint64_t n, SmallUint(f.contents));
    out.push_back(Item::Uint(n));
  }
  return Item::Array(std::move(out));
}
Result<Bytes> TlsFeaturesToDer(const Item& v) {
  if (!v.is_array()) return Fail(Malformed("TLS features must be an array"));
  Bytes out;
  for (const Item& f : v.items()) {
    IOTPKI_TRY(uint64_t n, ExpectUint(f, "TLS feature"));
    Bytes tlv = UintTlv(n);
    out.insert(out.end(), tlv.begin(), tlv.end());
  }
  return der::Tlv(der::kSequence, out);
}

// GeneralNames arrays and Names nested in extension values, with negative attribute types made
// positive (native certificates).
Item NativeGeneralNames(const Item& names) {
  if (!names.is_array() || names.items().size() % 2 != 0) return names;
  std::vector<Item> out = names.items();
  for (size_t i = 0; i < out.size(); i += 2) {
    if (out[i] == Item::Int(kGnDirectoryName)) {
      auto name = NameFromCbor(out[i + 1]);
      if (name) {
        MakeNameNative(*name);
        out[i + 1] = NameToCbor(*name);
      }
    }
  }
  return Item::Array(std::move(out));
}

}  // namespace

Bytes Retag(Bytes tlv, uint8_t tag) {
  if (!tlv.empty()) tlv[0] = tag;
  return tlv;
}

Result<uint64_t> FlagsFromBitString(ByteView contents) {
  if (contents.empty() || contents[0] > 7) return Fail(BadX509("malformed BIT STRING"));
  ByteView bytes = contents.subspan(1);
  if (bytes.empty() && contents[0] != 0) return Fail(BadX509("malformed BIT STRING"));
  if (bytes.size() > 8) return Fail(Unsupported("a flag BIT STRING longer than 64 bits"));
  uint64_t flags = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int b = 0; b < 8; ++b) {
      if (bytes[i] & (0x80 >> b)) flags |= uint64_t{1} << (i * 8 + b);
    }
  }
  return flags;
}

Bytes FlagsToBitString(uint64_t flags) {
  if (flags == 0) return Bytes{0};
  const int highest = 63 - std::countl_zero(flags);
  Bytes out(1 + highest / 8 + 1, 0);
  out[0] = static_cast<uint8_t>(7 - highest % 8);
  for (int k = 0; k <= highest; ++k) {
    if (flags & (uint64_t{1} << k)) out[1 + k / 8] |= static_cast<uint8_t>(0x80 >> (k % 8));
  }
  return out;
}

bool HasSpecificEncoding(int64_t id) {
  switch (id) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7:
    case 8:
    case 9:
    case 25:
    case 27:
    case 28:
    case 29:
    case 30:
    case 31:
    case 36:
    case 38:
      return true;
    default:
      // nameConstraints (26), IPAddrBlocks and AS identifiers (32..35) are carried in the
      // generic form (see README of this layer).
      return false;
  }
}

Result<cbor::Item> ExtensionValueFromDer(int64_t id, ByteView ev) {
  switch (id) {
    case 1:
      return SubjectKeyIdFromDer(ev);
    case 2:
      return KeyUsageFromDer(ev);
    case 3:
    case 25:
      return AltNameFromDer(ev);
    case 4:
      return BasicConstraintsFromDer(ev);
    case 5:
    case 29:
      return CrlDistributionPointsFromDer(ev);
    case 6:
      return CertificatePoliciesFromDer(ev);
    case 7:
      return AuthorityKeyIdFromDer(ev);
    case 8:
      return ExtKeyUsageFromDer(ev);
    case 9:
    case 31:
      return InfoAccessFromDer(ev);
    case 27:
      return PolicyMappingsFromDer(ev);
    case 28:
      return PolicyConstraintsFromDer(ev);
    case 30:
      return InhibitAnyPolicyFromDer(ev);
    case 36:
      return OcspNoCheckFromDer(ev);
    case 38:
      return TlsFeaturesFromDer(ev);
    default:
      return Fail(Unsupported("extension " + std::to_string(id) + " in its specific encoding"));
  }
}

Result<Bytes> ExtensionValueToDer(int64_t id, const cbor::Item& v) {
  Result<Bytes> der = [&]() -> Result<Bytes> {
    switch (id) {
      case 1:
        return SubjectKeyIdToDer(v);
      case 2:
        return KeyUsageToDer(v);
      case 3:
      case 25:
        return AltNameToDer(v);
      case 4:
        return BasicConstraintsToDer(v);
      case 5:
      case 29:
        return CrlDistributionPointsToDer(v);
      case 6:
        return CertificatePoliciesToDer(v);
      case 7:
        return AuthorityKeyIdToDer(v);
      case 8:
        return ExtKeyUsageToDer(v);
      case 9:
      case 31:
        return InfoAccessToDer(v);
      case 27:
        return PolicyMappingsToDer(v);
      case 28:
        return PolicyConstraintsToDer(v);
      case 30:
        return InhibitAnyPolicyToDer(v);
      case 36:
        return OcspNoCheckToDer(v);
      case 38:
        return TlsFeaturesToDer(v);
      default:
        return Fail(Code::kUnimplemented,
                    "decoding its specific C509 encoding is not implemented (nameConstraints, "
                    "IP address blocks and AS identifiers are read in the generic form only)");
    }
  }();
  if (!der) {
    const registry::OidEntry* e = registry::Extensions().ByCode(id);
    std::string name = e ? std::string(e->name) : "extension " + std::to_string(id);
    return Fail(Error(der.error().code(), name + ": " + der.error().message()));
  }
  return der;
}

cbor::Item MakeExtensionValueNative(int64_t id, const cbor::Item& value) {
  switch (id) {
    case 3:
    case 25:
      return NativeGeneralNames(value);
    case 7:
      if (value.is_array() && value.items().size() == 3) {
        return Item::Array(
            {value.items()[0], NativeGeneralNames(value.items()[1]), value.items()[2]});
      }
      return value;
    case 5:
    case 29: {
      if (!value.is_array()) return value;
      std::vector<Item> points = value.items();
      for (Item& dp : points) {
        if (!dp.is_array() || dp.items().size() != 3 || dp.items()[2].is_null()) continue;
        auto name = NameFromCbor(dp.items()[2]);
        if (!name) continue;
        MakeNameNative(*name);
        dp = Item::Array({dp.items()[0], dp.items()[1], NameToCbor(*name)});
      }
      return Item::Array(std::move(points));
    }
    default:
      return value;
  }
}

}  // namespace iotpki::c509::internal

namespace iotpki::c509 {
namespace {

Extension MakeExtension(int64_t id, bool critical, cbor::Item value) {
  Extension e;
  e.id = id;
  e.critical = critical;
  e.value = std::move(value);
  return e;
}

}  // namespace

Extension KeyUsageExtension(uint32_t bits, bool critical) {
  return MakeExtension(2, critical, cbor::Item::Uint(bits));
}
Extension BasicConstraintsExtension(bool ca, std::optional<uint32_t> path_len, bool critical) {
  cbor::Item v = !ca        ? cbor::Item::Int(-2)
                 : path_len ? cbor::Item::Uint(*path_len)
                            : cbor::Item::Int(-1);
  return MakeExtension(4, critical, std::move(v));
}
Extension SubjectKeyIdExtension(ByteView key_id) {
  return MakeExtension(1, false, cbor::Item::ByteString(key_id));
}
Extension AuthorityKeyIdExtension(ByteView key_id) {
  return MakeExtension(7, false, cbor::Item::ByteString(key_id));
}
Extension ExtKeyUsageExtension(const std::vector<int64_t>& purposes) {
  std::vector<cbor::Item> items;
  for (int64_t p : purposes) items.push_back(cbor::Item::Int(p));
  return MakeExtension(8, false,
                       items.size() == 1 ? items[0] : cbor::Item::Array(std::move(items)));
}

}  // namespace iotpki::c509
