#include "iotpki/x509/internal.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>

#include <algorithm>
#include <cstring>

namespace iotpki::x509::internal {
namespace {

Bytes Rdn(std::string_view oid, const Bytes& value) {
  Bytes atv = der::Sequence({der::Oid(oid), value});
  return der::Constructed(der::kSet, {atv});
}

bool IsAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

Bytes EncodeName(const NameFields& name) {
  Bytes body;
  auto add = [&body](std::string_view oid, const Bytes& value) {
    Bytes rdn = Rdn(oid, value);
    body.insert(body.end(), rdn.begin(), rdn.end());
  };
  if (!name.country.empty()) add(kOidCountry, der::PrintableString(name.country));
  if (!name.organization.empty()) add(kOidOrganization, der::Utf8String(name.organization));
  if (!name.common_name.empty()) add(kOidCommonName, der::Utf8String(name.common_name));
  if (!name.serial_number.empty()) add(kOidSerialNumber, der::PrintableString(name.serial_number));
  return der::Tlv(der::kSequence, body);
}

Bytes EncodeExtension(std::string_view oid, bool critical, ByteView value) {
  Bytes oct = der::OctetString(value);
  if (critical) return der::Sequence({der::Oid(oid), der::Boolean(true), oct});
  return der::Sequence({der::Oid(oid), oct});
}

Bytes EncodeKeyUsage(uint16_t bits) {
  Bytes bytes;
  int highest = -1;
  for (int i = 0; i < 16; ++i) {
    if (bits & (1u << i)) highest = i;
  }
  if (highest < 0) return der::BitString({}, 0);
  bytes.assign(static_cast<size_t>(highest / 8 + 1), 0);
  for (int i = 0; i <= highest; ++i) {
    if (bits & (1u << i))
      bytes[static_cast<size_t>(i / 8)] |= static_cast<uint8_t>(0x80 >> (i % 8));
  }
  return der::BitString(bytes, 7 - highest % 8);
}

Result<Bytes> EncodeStatusExtensions(std::string_view crl_url, std::string_view ocsp_url) {
  auto check = [](std::string_view url) -> Result<void> {
    bool scheme = url.starts_with("http://") || url.starts_with("https://");
    bool printable =
        std::all_of(url.begin(), url.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    if (!scheme || !printable || url.size() > 1024) {
      return Fail(Code::kInvalidArgument,
                  "a CRL or OCSP URL must be http:// or https:// and "
                  "printable ASCII without spaces");
    }
    return {};
  };
  Bytes out;
  if (!crl_url.empty()) {
    IOTPKI_CHECK(check(crl_url));
    Bytes uri = der::Tlv(der::ContextPrimitive(6), AsBytes(crl_url));
    Bytes full_name = der::Constructed(der::ContextConstructed(0), {uri});
    Bytes point_name = der::Constructed(der::ContextConstructed(0), {full_name});
    Bytes ext = EncodeExtension(kOidCrlDistributionPoints, false,
                                der::Sequence({der::Sequence({point_name})}));
    out.insert(out.end(), ext.begin(), ext.end());
  }
  if (!ocsp_url.empty()) {
    IOTPKI_CHECK(check(ocsp_url));
    Bytes uri = der::Tlv(der::ContextPrimitive(6), AsBytes(ocsp_url));
    Bytes ext = EncodeExtension(kOidAuthorityInfoAccess, false,
                                der::Sequence({der::Sequence({der::Oid(kOidAccessOcsp), uri})}));
    out.insert(out.end(), ext.begin(), ext.end());
  }
  return out;
}

Result<Bytes> EncodeGeneralNames(const SubjectAltNames& san) {
  if (san.other != 0) {
    return Fail(Code::kInvalidArgument,
                "only URI, DNS, IP and hardwareModuleName SANs are supported");
  }
  Bytes body;
  auto append = [&body](const Bytes& b) { body.insert(body.end(), b.begin(), b.end()); };
  for (const auto& uri : san.uris) {
    if (uri.empty() || !IsAscii(uri)) {
      return Fail(Code::kInvalidArgument, "SAN URI must be non-empty printable ASCII");
    }
    append(der::Tlv(kGeneralNameUri, AsBytes(uri)));
  }
  for (const auto& dns : san.dns_names) {
    if (dns.empty() || !IsAscii(dns)) {
      return Fail(Code::kInvalidArgument, "SAN DNS name must be non-empty printable ASCII");
    }
    append(der::Tlv(kGeneralNameDns, AsBytes(dns)));
  }
  for (const auto& ip : san.ip_addresses) {
    IOTPKI_TRY(Bytes raw, IpFromText(ip));
    append(der::Tlv(kGeneralNameIp, raw));
  }
  for (const auto& hw : san.hardware_module_names) {
    Bytes type = der::OidContent(hw.hw_type);
    if (type.empty()) {
      return Fail(Code::kInvalidArgument, "hwType '" + hw.hw_type + "' is not a valid OID");
    }
    Bytes value = der::Sequence({der::Tlv(der::kOid, type), der::OctetString(hw.hw_serial)});
    Bytes explicit_value = der::Constructed(der::ContextConstructed(0), {value});
    append(der::Constructed(kGeneralNameOther, {der::Oid(kOidHardwareModuleName), explicit_value}));
  }
  return der::Tlv(der::kSequence, body);
}

Bytes EncodeAuthorityKeyId(ByteView key_id) {
  return der::Sequence({der::Tlv(der::ContextPrimitive(0), key_id)});
}

Result<Bytes> SignatureAlgorithm(const crypto::PublicKey& key, crypto::DigestAlgorithm digest) {
  switch (key.type()) {
    case crypto::KeyType::kP256:
    case crypto::KeyType::kP384:
    case crypto::KeyType::kOtherEc:
      return der::Sequence({der::Oid(
          digest == crypto::DigestAlgorithm::kSha384 ? kOidEcdsaSha384 : kOidEcdsaSha256)});
    case crypto::KeyType::kEd25519:
      return der::Sequence({der::Oid(kOidEd25519)});
    default:
      return Fail(Code::kUnimplemented,
                  "signing with " + key.Describe() + " keys is not supported (use ECDSA)");
  }
}

Result<Bytes> SignatureAlgorithm(const crypto::Signer& signer) {
  return SignatureAlgorithm(signer.public_key(), signer.digest());
}

Result<Bytes> PlaceholderSignature(const crypto::PublicKey& key) {
  switch (key.type()) {
    case crypto::KeyType::kP256:
    case crypto::KeyType::kP384:
    case crypto::KeyType::kOtherEc: {
      // r and s are below the group order, so at most ceil(bits/8) bytes; with the top bit set
      // DER adds a zero byte: the longest encoding.
      Bytes magnitude(static_cast<size_t>((key.bits() + 7) / 8), 0);
      magnitude[0] = 0x80;
      Bytes integer = der::UnsignedInteger(magnitude);
      return der::BitString(der::Sequence({integer, integer}));
    }
    case crypto::KeyType::kEd25519:
      return der::BitString(Bytes(64, 0));
    default:
      return Fail(Code::kUnimplemented,
                  "signing with " + key.Describe() + " keys is not supported");
  }
}

Result<Bytes> SignAndAssemble(ByteView tbs, ByteView algorithm, const crypto::Signer& signer) {
  IOTPKI_TRY(Bytes signature, signer.Sign(tbs));
  return der::Sequence({tbs, algorithm, der::BitString(signature)});
}

Result<SignedParts> SplitSigned(ByteView der) {
  der::Reader outer(der);
  IOTPKI_TRY(der::Element whole, outer.Expect(der::kSequence));
  if (!outer.empty()) return Fail(Code::kInvalidArgument, "trailing data after the DER structure");
  der::Reader inner(whole.contents);
  SignedParts parts;
  IOTPKI_TRY(parts.tbs, inner.Expect(der::kSequence));
  IOTPKI_TRY(parts.algorithm, inner.Expect(der::kSequence));
  IOTPKI_TRY(der::Element sig, inner.Expect(der::kBitString));
  if (!inner.empty()) return Fail(Code::kInvalidArgument, "unexpected element after the signature");
  if (sig.contents.empty() || sig.contents[0] != 0) {
    return Fail(Code::kInvalidArgument, "signature BIT STRING has unused bits");
  }
  parts.signature = sig.contents.subspan(1);
  return parts;
}

std::string NameToText(const X509_NAME* name) {
  auto bio = ossl::Own(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    ossl::ClearErrors();
    return {};
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

std::string NameAttribute(const X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return {};
  return StringToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx))).value_or("");
}

std::optional<std::string> StringToUtf8(const ASN1_STRING* data) {
  unsigned char* raw = nullptr;
  int len = ASN1_STRING_to_UTF8(&raw, data);
  auto utf8 = ossl::Own(raw);
  if (len < 0) {
    ossl::ClearErrors();
    return std::nullopt;
  }
  return std::string(reinterpret_cast<const char*>(utf8.get()), static_cast<size_t>(len));
}

int NameAttributeType(const X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return -1;
  return ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
}

Result<int64_t> TimeToUnix(const ASN1_TIME* time) {
  if (time == nullptr) return Fail(Code::kInvalidArgument, "missing time");
  der::Element e;
  int type = ASN1_STRING_type(time);
  if (type == V_ASN1_UTCTIME) {
    e.tag = der::kUtcTime;
  } else if (type == V_ASN1_GENERALIZEDTIME) {
    e.tag = der::kGeneralizedTime;
  } else {
    return Fail(Code::kInvalidArgument, "time is neither UTCTime nor GeneralizedTime");
  }
  e.contents = ByteView(ASN1_STRING_get0_data(time), static_cast<size_t>(ASN1_STRING_length(time)));
  return der::ParseTime(e);
}

std::string IpToText(ByteView ip) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ip.size() == 4) {
    inet_ntop(AF_INET, ip.data(), buf, sizeof buf);
  } else if (ip.size() == 16) {
    inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
  }
  return buf;
}

Result<Bytes> IpFromText(std::string_view text) {
  std::string s(text);
  unsigned char buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return Bytes(buf, buf + 4);
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return Bytes(buf, buf + 16);
  return Fail(Code::kInvalidArgument, "'" + s + "' is not an IPv4 or IPv6 address");
}

std::string ObjectToOid(const ASN1_OBJECT* obj) {
  if (obj == nullptr) return {};
  const unsigned char* data = OBJ_get0_data(obj);
  size_t len = OBJ_length(obj);
  if (data == nullptr || len == 0) return {};
  return der::OidToText(ByteView(data, len));
}

Bytes IntegerMagnitude(ByteView contents) {
  if (contents.size() > 1 && contents[0] == 0) return Bytes(contents.begin() + 1, contents.end());
  return Bytes(contents.begin(), contents.end());
}

SubjectAltNames DecodeGeneralNames(const GENERAL_NAMES* names) {
  SubjectAltNames out;
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    int type = 0;
    void* value = GENERAL_NAME_get0_value(gn, &type);
    switch (type) {
      case GEN_URI:
      case GEN_DNS: {
        const auto* s = static_cast<const ASN1_IA5STRING*>(value);
        std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
        (type == GEN_URI ? out.uris : out.dns_names).push_back(std::move(text));
        break;
      }
      case GEN_IPADD: {
        const auto* s = static_cast<const ASN1_OCTET_STRING*>(value);
        std::string text = IpToText(
            ByteView(ASN1_STRING_get0_data(s), static_cast<size_t>(ASN1_STRING_length(s))));
        if (text.empty()) {
          ++out.other;
        } else {
          out.ip_addresses.push_back(std::move(text));
        }
        break;
      }
      case GEN_OTHERNAME: {
        ASN1_OBJECT* oid = nullptr;
        ASN1_TYPE* any = nullptr;
        if (GENERAL_NAME_get0_otherName(gn, &oid, &any) != 1 ||
            ObjectToOid(oid) != kOidHardwareModuleName || any == nullptr ||
            any->type != V_ASN1_SEQUENCE) {
          ++out.other;
          break;
        }
        // OpenSSL keeps an ANY SEQUENCE as its full DER encoding.
        const ASN1_STRING* seq = any->value.sequence;
        der::Reader r(
            ByteView(ASN1_STRING_get0_data(seq), static_cast<size_t>(ASN1_STRING_length(seq))));
        auto body = r.Expect(der::kSequence);
        if (!body || !r.empty()) {
          ++out.other;
          break;
        }
        der::Reader fields(body->contents);
        auto type_oid = fields.Expect(der::kOid);
        auto serial = type_oid ? fields.Expect(der::kOctetString) : type_oid;
        std::string hw_type = type_oid ? der::OidToText(type_oid->contents) : std::string();
        if (!type_oid || !serial || !fields.empty() || hw_type.empty()) {
          ++out.other;
          break;
        }
        out.hardware_module_names.push_back(
            {hw_type, Bytes(serial->contents.begin(), serial->contents.end())});
        break;
      }
      default:
        ++out.other;
    }
  }
  return out;
}

}  // namespace iotpki::x509::internal
