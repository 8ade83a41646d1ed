// Names and their text values: X.509 DER <-> fields <-> C509 CBOR.
#include <string>
#include <utility>

#include "iotpki/c509/internal.h"
#include "iotpki/common/strings.h"

namespace iotpki::c509::internal {
namespace {

constexpr uint64_t kMacAddressTag = 48;  // RFC 9542

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool IsUpperHex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

// "HH-HH-HH-HH-HH-HH-HH-HH" with upper-case hex digits, as the whole string.
bool IsEui64Text(std::string_view s) {
  if (s.size() != 23) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i % 3 == 2) {
      if (s[i] != '-') return false;
    } else if (!IsUpperHex(s[i])) {
      return false;
    }
  }
  return true;
}

std::string UpperHexGroups(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i > 0) out += '-';
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0xf];
  }
  return out;
}

// Checks that `value` is exactly one DER element (for values carried as raw DER bytes).
Result<void> CheckSingleElement(ByteView value, std::string_view what) {
  der::Reader r(value);
  auto e = r.Next();
  if (!e || !r.empty()) return Fail(Malformed(std::string(what) + " is not one DER element"));
  return {};
}

Attribute AttributeFromDer(ByteView oid, const der::Element& value) {
  if (const registry::OidEntry* e = registry::Attributes().ByOid(oid)) {
    const std::string_view text = AsString(value.contents);
    if (IsValidUtf8(value.contents)) {
      if (registry::IsIa5Attribute(e->code)) {
        if (value.tag == der::kIa5String && IsIa5String(text)) {
          return Attribute{e->code, std::string(text), {}, {}};
        }
      } else if (value.tag == der::kUtf8String) {
        return Attribute{e->code, std::string(text), {}, {}};
      } else if (value.tag == der::kPrintableString && IsPrintableString(text)) {
        return Attribute{-e->code, std::string(text), {}, {}};
      }
    }
  }
  return Attribute{
      0, {}, Bytes(oid.begin(), oid.end()), Bytes(value.whole.begin(), value.whole.end())};
}

Result<Bytes> AttributeToDer(const Attribute& a) {
  if (!a.oid.empty()) {
    if (der::OidToText(a.oid).empty()) return Fail(Malformed("attribute OID is malformed"));
    IOTPKI_CHECK(CheckSingleElement(a.value_der, "attribute value"));
    return der::Sequence({der::Tlv(der::kOid, a.oid), a.value_der});
  }
  const int64_t code = a.type < 0 ? -a.type : a.type;
  const registry::OidEntry* e = registry::Attributes().ByCode(code);
  if (e == nullptr) return Fail(Unsupported("attribute type " + std::to_string(a.type)));
  uint8_t tag;
  if (registry::IsIa5Attribute(code)) {
    if (a.type < 0) {
      return Fail(Malformed("attribute " + std::string(e->name) + " cannot be negative"));
    }
    if (!IsIa5String(a.text)) {
      return Fail(Malformed("attribute " + std::string(e->name) + " is not IA5 text"));
    }
    tag = der::kIa5String;
  } else if (a.type < 0) {
    if (!IsPrintableString(a.text)) {
      return Fail(Malformed("attribute " + std::string(e->name) +
                            " is marked PrintableString but has other characters"));
    }
    tag = der::kPrintableString;
  } else {
    tag = der::kUtf8String;
  }
  return der::Sequence({der::Tlv(der::kOid, e->oid), der::Tlv(tag, AsBytes(a.text))});
}

Result<Attribute> AttributeFromCbor(const cbor::Item& type, const cbor::Item& value) {
  if (type.is_bytes()) {
    if (der::OidToText(type.bytes()).empty()) return Fail(Malformed("attribute OID is malformed"));
    if (!value.is_bytes()) return Fail(Malformed("OID-typed attribute value must be bytes"));
    IOTPKI_CHECK(CheckSingleElement(value.bytes(), "attribute value"));
    return Attribute{0,
                     {},
                     Bytes(type.bytes().begin(), type.bytes().end()),
                     Bytes(value.bytes().begin(), value.bytes().end())};
  }
  auto code = type.AsInt();
  if (!code) return Fail(Malformed("attribute type must be an int or an OID"));
  const int64_t abs = *code < 0 ? -*code : *code;
  const registry::OidEntry* e = registry::Attributes().ByCode(abs);
  if (e == nullptr) return Fail(Unsupported("attribute type " + std::to_string(*code)));
  if (registry::IsIa5Attribute(abs) && *code < 0) {
    return Fail(Malformed("attribute " + std::string(e->name) + " cannot be negative"));
  }
  IOTPKI_TRY(std::string text, FromSpecialText(value));
  return Attribute{*code, std::move(text), {}, {}};
}

}  // namespace

Error Unsupported(std::string_view what) {
  return Error(Code::kInvalidArgument, "C509 cannot represent " + std::string(what));
}
Error Malformed(std::string_view what) {
  return Error(Code::kInvalidArgument, "malformed C509: " + std::string(what));
}
Error BadX509(std::string_view what) {
  return Error(Code::kInvalidArgument, "malformed X.509 certificate: " + std::string(what));
}

bool IsPrintableString(std::string_view s) {
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    std::string_view(" '()+,-./:=?").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool IsIa5String(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

cbor::Item SpecialText(std::string_view text) {
  if (text.size() >= 2 && text.size() % 2 == 0) {
    bool hex = true;
    for (char c : text) hex = hex && IsLowerHex(c);
    if (hex) return cbor::Item::ByteString(*FromHex(text));
  }
  if (IsEui64Text(text)) {
    std::string digits;
    for (char c : text) {
      if (c != '-') digits += c;
    }
    Bytes eui = *FromHex(digits);
    if (eui[3] == 0xff && eui[4] == 0xfe) {
      // A MAC-48 embedded in an EUI-64: the FF-FE filler is implied.
      eui = Bytes{eui[0], eui[1], eui[2], eui[5], eui[6], eui[7]};
    }
    return cbor::Item::Tagged(kMacAddressTag, cbor::Item::ByteString(eui));
  }
  return cbor::Item::TextString(text);
}

Result<std::string> FromSpecialText(const cbor::Item& item) {
  if (item.is_text()) return std::string(item.text());
  if (item.is_bytes()) return ToHex(item.bytes());
  if (item.is_tag() && item.tag() == kMacAddressTag && item.tagged().is_bytes()) {
    ByteView mac = item.tagged().bytes();
    if (mac.size() == 8) return UpperHexGroups(mac);
    if (mac.size() == 6) {
      Bytes eui = {mac[0], mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]};
      return UpperHexGroups(eui);
    }
    return Fail(Malformed("tag 48 attribute value must hold 6 or 8 bytes"));
  }
  return Fail(Malformed("attribute value must be text, bytes or tag 48"));
}

Result<Name> NameFromDer(ByteView der) {
  der::Reader outer(der);
  IOTPKI_TRY(der::Element seq, outer.Expect(der::kSequence));
  if (!outer.empty()) return Fail(BadX509("trailing bytes after a Name"));
  der::Reader rdns(seq.contents);
  Name name;
  while (!rdns.empty()) {
    IOTPKI_TRY(der::Element set, rdns.Expect(der::kSet));
    der::Reader atvs(set.contents);
    IOTPKI_TRY(der::Element atv, atvs.Expect(der::kSequence));
    if (!atvs.empty()) return Fail(Unsupported("a multi-valued RDN"));
    der::Reader parts(atv.contents);
    IOTPKI_TRY(der::Element oid, parts.Expect(der::kOid));
    IOTPKI_TRY(der::Element value, parts.Next());
    if (!parts.empty()) return Fail(BadX509("AttributeTypeAndValue with extra elements"));
    name.push_back(AttributeFromDer(oid.contents, value));
  }
  return name;
}

Result<Bytes> NameToDer(const Name& name) {
  Bytes rdns;
  for (const Attribute& a : name) {
    IOTPKI_TRY(Bytes atv, AttributeToDer(a));
    der::AppendTlv(rdns, der::kSet, atv);
  }
  return der::Tlv(der::kSequence, rdns);
}

cbor::Item NameToCbor(const Name& name) {
  if (name.size() == 1 && name[0].oid.empty() && name[0].type == 1) {
    return SpecialText(name[0].text);
  }
  std::vector<cbor::Item> items;
  items.reserve(name.size() * 2);
  for (const Attribute& a : name) {
    if (a.oid.empty()) {
      items.push_back(cbor::Item::Int(a.type));
      items.push_back(SpecialText(a.text));
    } else {
      items.push_back(cbor::Item::ByteString(a.oid));
      items.push_back(cbor::Item::ByteString(a.value_der));
    }
  }
  return cbor::Item::Array(std::move(items));
}

Result<Name> NameFromCbor(const cbor::Item& item) {
  if (item.is_text() || item.is_bytes() || item.is_tag()) {
    IOTPKI_TRY(std::string text, FromSpecialText(item));
    return Name{Attribute{1, std::move(text), {}, {}}};
  }
  if (!item.is_array()) return Fail(Malformed("Name must be an array or a text value"));
  const auto& items = item.items();
  if (items.size() % 2 != 0) return Fail(Malformed("Name array has an odd number of items"));
  Name name;
  for (size_t i = 0; i < items.size(); i += 2) {
    IOTPKI_TRY(Attribute a, AttributeFromCbor(items[i], items[i + 1]));
    name.push_back(std::move(a));
  }
  return name;
}

void MakeNameNative(Name& name) {
  for (Attribute& a : name) {
    if (a.oid.empty() && a.type < 0) a.type = -a.type;
  }
}

}  // namespace iotpki::c509::internal
