// The human-readable view for `iotpki c509 show`.
#include <ctime>
#include <string>

#include "iotpki/c509/internal.h"
#include "iotpki/common/clock.h"

namespace iotpki::c509 {
namespace {

using cbor::Item;

std::string OidText(ByteView oid) {
  std::string s = der::OidToText(oid);
  return s.empty() ? "h'" + ToHex(oid) + "'" : s;
}

std::string AlgorithmName(const AlgorithmId& alg, bool signature) {
  if (!alg.oid.empty()) {
    return OidText(alg.oid) + (alg.params ? " (parameters " + ToHex(*alg.params) + ")" : "");
  }
  const registry::AlgorithmEntry* e = signature ? registry::SignatureAlgorithmByCode(alg.code)
                                                : registry::PublicKeyAlgorithmByCode(alg.code);
  return std::string(e ? e->name : "unknown") + " (" + std::to_string(alg.code) + ")";
}

std::string CodeOrOidName(const registry::OidTable& table, const Item& item) {
  if (item.is_bytes()) return OidText(item.bytes());
  auto code = item.AsInt();
  const registry::OidEntry* e = code ? table.ByCode(*code) : nullptr;
  return e ? std::string(e->name) : Diagnostic(item);
}

std::string KeyUsageNames(uint64_t bits) {
  static constexpr const char* kNames[] = {"digitalSignature", "nonRepudiation", "keyEncipherment",
                                           "dataEncipherment", "keyAgreement",   "keyCertSign",
                                           "cRLSign",          "encipherOnly",   "decipherOnly"};
  std::string out;
  for (int k = 0; k < 64; ++k) {
    if (!(bits & (uint64_t{1} << k))) continue;
    if (!out.empty()) out += ", ";
    out += k < 9 ? kNames[k] : "bit" + std::to_string(k);
  }
  return out.empty() ? "(none)" : out;
}

std::string GeneralNamesText(const Item& names) {
  if (names.is_text()) return "DNS:" + std::string(names.text());
  if (!names.is_array() || names.items().size() % 2 != 0) return Diagnostic(names);
  std::string out;
  for (size_t i = 0; i < names.items().size(); i += 2) {
    if (!out.empty()) out += ", ";
    const Item& v = names.items()[i + 1];
    const auto type = names.items()[i].AsInt().value_or(99);
    switch (type) {
      case -3:
        out += "MACAddress:" + Diagnostic(v);
        break;
      case -2:
        out += "SmtpUTF8Mailbox:" + Diagnostic(v);
        break;
      case -1:
        if (v.is_array() && v.items().size() == 2 && v.items()[0].is_bytes()) {
          out += "hardwareModuleName:" + OidText(v.items()[0].bytes()) + ";" +
                 Diagnostic(v.items()[1]);
        } else {
          out += "hardwareModuleName:" + Diagnostic(v);
        }
        break;
      case 1:
        out += "email:" + (v.is_text() ? std::string(v.text()) : Diagnostic(v));
        break;
      case 2:
        out += "DNS:" + (v.is_text() ? std::string(v.text()) : Diagnostic(v));
        break;
      case 4: {
        auto name = internal::NameFromCbor(v);
        out += "dirName:" + (name ? NameToString(*name) : Diagnostic(v));
        break;
      }
      case 6:
        out += "URI:" + (v.is_text() ? std::string(v.text()) : Diagnostic(v));
        break;
      case 7:
        out += "IP:" + Diagnostic(v);
        break;
      case 8:
        out += "RID:" + (v.is_bytes() ? OidText(v.bytes()) : Diagnostic(v));
        break;
      default:
        out += "otherName:" + Diagnostic(v);
        break;
    }
  }
  return out;
}

std::string ExtensionValueText(const Extension& e) {
  const Item& v = e.value;
  switch (e.id) {
    case 1:
      return v.is_bytes() ? ToHex(v.bytes()) : Diagnostic(v);
    case 2:
      return v.is_unsigned() ? KeyUsageNames(v.raw()) : Diagnostic(v);
    case 3:
    case 25:
      return GeneralNamesText(v);
    case 4: {
      auto n = v.AsInt();
      if (n == -2) return "CA:FALSE";
      if (n == -1) return "CA:TRUE";
      if (n && *n >= 0) return "CA:TRUE, pathlen:" + std::to_string(*n);
      return Diagnostic(v);
    }
    case 7:
      return v.is_bytes() ? "keyid:" + ToHex(v.bytes()) : Diagnostic(v);
    case 8: {
      std::string out;
      const std::vector<Item> purposes = v.is_array() ? v.items() : std::vector<Item>{v};
      for (const Item& p : purposes) {
        if (!out.empty()) out += ", ";
        out += CodeOrOidName(registry::ExtendedKeyUsages(), p);
      }
      return out;
    }
    default:
      return Diagnostic(v);
  }
}

}  // namespace

std::string NameToString(const Name& name) {
  std::string out;
  for (const Attribute& a : name) {
    if (!out.empty()) out += ", ";
    if (!a.oid.empty()) {
      out += OidText(a.oid) + "=#" + ToHex(a.value_der);
    } else {
      out +=
          std::string(registry::AttributeShortName(a.type < 0 ? -a.type : a.type)) + "=" + a.text;
    }
  }
  return out;
}

std::string Describe(const C509Certificate& cert) {
  std::string out;
  out += "C509 certificate, type " + std::to_string(cert.type) +
         (cert.type == kTypeNative ? " (natively signed)\n" : " (re-encoded X.509)\n");
  out += "  Serial number:        " + (cert.serial.empty() ? "00" : ToHex(cert.serial)) + "\n";
  out += "  Signature algorithm:  " + AlgorithmName(cert.signature_algorithm, true) + "\n";
  out += "  Issuer:               " +
         (cert.issuer ? NameToString(*cert.issuer) : NameToString(cert.subject) + " (self)") + "\n";
  out += "  Not before:           " + FormatUtc(cert.not_before) + "\n";
  out += "  Not after:            " +
         (cert.not_after ? FormatUtc(*cert.not_after) : "9999-12-31T23:59:59Z (no expiry)") + "\n";
  out += "  Subject:              " + NameToString(cert.subject) + "\n";
  out += "  Public key algorithm: " + AlgorithmName(cert.public_key_algorithm, false) + "\n";
  out +=
      "  Public key:           " +
      (cert.public_key.is_bytes() ? ToHex(cert.public_key.bytes()) : Diagnostic(cert.public_key)) +
      "\n";
  if (cert.extensions.empty()) {
    out += "  Extensions:           (none)\n";
  } else {
    out += "  Extensions:\n";
    for (const Extension& e : cert.extensions) {
      std::string name;
      std::string value;
      if (e.oid.empty()) {
        const registry::OidEntry* entry = registry::Extensions().ByCode(e.id);
        name = entry ? std::string(entry->name) : "extension " + std::to_string(e.id);
        value = ExtensionValueText(e);
      } else {
        const registry::OidEntry* entry = registry::Extensions().ByOid(e.oid);
        name = entry ? std::string(entry->name) : OidText(e.oid);
        value = "DER " + ToHex(e.der_value);
      }
      out += "    " + name + (e.critical ? " (critical)" : "") + ": " + value + "\n";
    }
  }
  out += "  Signature:            " + ToHex(cert.signature) + "\n";
  return out;
}

}  // namespace iotpki::c509
