#include "iotpki/enroll/est.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "iotpki/c509/c509.h"
#include "iotpki/c509/cbor.h"
#include "iotpki/common/der.h"
#include "iotpki/common/strings.h"
#include "iotpki/crypto/ossl.h"

namespace iotpki::enroll {
namespace {

// RFC 9110 section 5.6.2.
bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

struct MediaRange {
  std::string type;                                         // lower case; "*" for a wildcard
  std::string subtype;                                      // lower case; "*" for a wildcard
  std::vector<std::pair<std::string, std::string>> params;  // name lower case, value unquoted
  int q = 1000;                                             // thousandths
};

// The Accept grammar of RFC 9110 section 12.5.1, element by element.
class AcceptParser {
 public:
  explicit AcceptParser(std::string_view text) : s_(text) {}

  Result<std::vector<MediaRange>> Parse() {
    std::vector<MediaRange> ranges;
    for (;;) {
      SkipSpace();
      if (AtEnd()) return ranges;
      if (s_[i_] == ',') {  // empty list elements are allowed
        ++i_;
        continue;
      }
      MediaRange range;
      range.type = ToLowerAscii(Token());
      if (range.type.empty() || AtEnd() || s_[i_] != '/') return Bad("expected type/subtype");
      ++i_;
      range.subtype = ToLowerAscii(Token());
      if (range.subtype.empty()) return Bad("expected a subtype after '/'");
      if (range.type == "*" && range.subtype != "*") return Bad("*/" + range.subtype);
      SkipSpace();
      while (!AtEnd() && s_[i_] == ';') {
        ++i_;
        SkipSpace();
        if (AtEnd() || s_[i_] == ';' || s_[i_] == ',') continue;  // empty parameter
        std::string name = ToLowerAscii(Token());
        if (name.empty() || AtEnd() || s_[i_] != '=') return Bad("expected parameter=value");
        ++i_;
        IOTPKI_TRY(std::string value, Value());
        if (name == "q") {
          IOTPKI_TRY(range.q, QValue(value));
        } else {
          range.params.emplace_back(std::move(name), std::move(value));
        }
        SkipSpace();
      }
      if (!AtEnd() && s_[i_] != ',') return Bad("unexpected character");
      ranges.push_back(std::move(range));
    }
  }

 private:
  bool AtEnd() const { return i_ >= s_.size(); }
  void SkipSpace() {
    while (!AtEnd() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  std::string_view Token() {
    size_t begin = i_;
    while (!AtEnd() && IsTokenChar(s_[i_])) ++i_;
    return s_.substr(begin, i_ - begin);
  }
  Result<std::string> Value() {
    if (AtEnd() || s_[i_] != '"') {
      std::string_view token = Token();
      if (token.empty()) return Bad("expected a parameter value");
      return std::string(token);
    }
    std::string value;
    for (++i_; !AtEnd(); ++i_) {
      char c = s_[i_];
      if (c == '"') {
        ++i_;
        return value;
      }
      if (c == '\\') {
        if (++i_ == s_.size()) break;
        c = s_[i_];
      }
      value += c;
    }
    return Bad("unterminated quoted string");
  }
  // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
  Result<int> QValue(std::string_view v) {
    if (v.empty() || v.size() > 5 || (v[0] != '0' && v[0] != '1') ||
        (v.size() > 1 && v[1] != '.')) {
      return Bad("q=" + std::string(v) + " is not a q-value from 0 to 1");
    }
    int q = (v[0] - '0') * 1000;
    int scale = 100;
    for (size_t k = 2; k < v.size(); ++k, scale /= 10) {
      if (v[k] < '0' || v[k] > '9') return Bad("q=" + std::string(v) + " is not a q-value");
      q += (v[k] - '0') * scale;
    }
    if (q > 1000) return Bad("q=" + std::string(v) + " is above 1");
    return q;
  }
  tl::unexpected<Error> Bad(const std::string& what) const {
    return Fail(Code::kInvalidArgument,
                "malformed Accept header: " + what + " at character " + std::to_string(i_ + 1));
  }

  std::string_view s_;
  size_t i_ = 0;
};

struct Offer {
  std::string_view subtype;  // of application/
  std::string_view usage;    // the `usage` parameter it carries, "" for none
};

Offer OfferOf(CertFormat format) {
  switch (format) {
    case CertFormat::kPkcs7:
      return {"pkcs7-mime", ""};
    case CertFormat::kC509Cert:
      return {"cose-c509-cert+cbor", ""};
    case CertFormat::kC509Set:
      return {"cose-c509+cbor", ""};
    case CertFormat::kC509Chain:
      return {"cose-c509+cbor", "chain"};
  }
  return {"", ""};
}

// How specifically `range` names `format`: -1 not at all, 0 */*, 1 application/*, 2 the type,
// 3 the type with a parameter that selects it.
int Specificity(const MediaRange& range, CertFormat format) {
  if (range.type == "*") return 0;
  if (range.type != "application") return -1;
  if (range.subtype == "*") return 1;
  Offer offer = OfferOf(format);
  if (range.subtype != offer.subtype) return -1;
  int specificity = 2;
  for (const auto& [name, value] : range.params) {
    if (name == "usage" && offer.subtype == "cose-c509+cbor") {
      if (ToLowerAscii(value) != offer.usage) return -1;
      specificity = 3;
    } else if (name == "smime-type" && format == CertFormat::kPkcs7) {
      if (ToLowerAscii(value) != "certs-only") return -1;
      specificity = 3;
    }
  }
  return specificity;
}

}  // namespace

Result<Bytes> CertsOnlyPkcs7(std::span<const x509::Certificate> certs) {
  // Degenerate SignedData (RFC 5652 5.1): version 1, no digest algorithms, encapsulated content
  // "data" with its content absent, the certificates in order, no signers; the bytes i2d_PKCS7
  // writes. Written here because handing the certificates to OpenSSL's PKCS7 parses each one
  // again (d2i_X509, more than two ECDSA verifications in OpenSSL 3.0).
  Bytes list;
  for (const auto& cert : certs) list.insert(list.end(), cert.ToDer().begin(), cert.ToDer().end());
  Bytes signed_data =
      der::Sequence({der::SmallInteger(1), der::Tlv(der::kSet, {}),
                     der::Sequence({der::Oid("1.2.840.113549.1.7.1")}),
                     der::Tlv(der::ContextConstructed(0), list), der::Tlv(der::kSet, {})});
  return der::Sequence(
      {der::Oid("1.2.840.113549.1.7.2"), der::Tlv(der::ContextConstructed(0), signed_data)});
}

std::string EstBase64(ByteView der) {
  std::string b64 = Base64Encode(der);
  std::string out;
  out.reserve(b64.size() + b64.size() / 32 + 2);
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.append(b64, i, 64);
    out += "\n";
  }
  return out;
}

Bytes CsrAttributes() {
  static const Bytes kAttrs = [] {
    Bytes ec_key = der::Sequence({der::Oid("1.2.840.10045.2.1"),
                                  der::Constructed(der::kSet, {der::Oid("1.2.840.10045.3.1.7")})});
    return der::Sequence({der::Oid("1.2.840.10045.4.3.2"), ec_key});
  }();
  return kAttrs;
}

Result<std::vector<CertFormat>> NegotiateCertFormat(std::string_view accept,
                                                    std::span<const CertFormat> offered) {
  IOTPKI_TRY(std::vector<MediaRange> ranges, AcceptParser(accept).Parse());
  if (ranges.empty()) return std::vector<CertFormat>(offered.begin(), offered.end());
  std::vector<std::pair<int, CertFormat>> acceptable;  // (q, format)
  for (CertFormat format : offered) {
    int best = -1;
    int q = 0;
    for (const auto& range : ranges) {
      int specificity = Specificity(range, format);
      if (specificity > best) {
        best = specificity;
        q = range.q;
      } else if (specificity == best) {
        q = std::max(q, range.q);
      }
    }
    if (best >= 0 && q > 0) acceptable.emplace_back(q, format);
  }
  std::stable_sort(acceptable.begin(), acceptable.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<CertFormat> formats;
  for (const auto& [q, format] : acceptable) formats.push_back(format);
  return formats;
}

std::string_view C509ContentType(CertFormat format) {
  switch (format) {
    case CertFormat::kC509Cert:
      return kC509CertType;
    case CertFormat::kC509Set:
      return kCoseC509Type;
    case CertFormat::kC509Chain:
      return kCoseC509ChainType;
    case CertFormat::kPkcs7:
      break;
  }
  return kPkcs7Mime;
}

Result<Bytes> CoseC509(std::span<const x509::Certificate> certs) {
  if (certs.empty()) return Fail(Code::kInvalidArgument, "COSE_C509 needs a certificate");
  std::vector<cbor::Item> items;
  for (const auto& cert : certs) {
    auto encoded = c509::EncodeX509(cert.ToDer());
    if (!encoded) return Fail(std::move(encoded).error().Context("certificate " + cert.subject()));
    items.push_back(cbor::Item::ByteString(*encoded));
  }
  if (items.size() == 1) return items.front().Encode();
  return cbor::Item::Array(std::move(items)).Encode();
}

Result<std::string> C509Body(CertFormat format, std::span<const x509::Certificate> certs) {
  if (format == CertFormat::kPkcs7 || certs.empty()) {
    return Fail(Code::kInternal, "C509Body: not a C509 format, or no certificate");
  }
  if (format == CertFormat::kC509Cert) {
    auto encoded = c509::EncodeX509(certs.front().ToDer());
    if (!encoded) {
      return Fail(std::move(encoded).error().Context("certificate " + certs.front().subject()));
    }
    return EstBase64(*encoded);
  }
  IOTPKI_TRY(Bytes cose, CoseC509(certs));
  return EstBase64(cose);
}

std::string ServerKeygenBody(ByteView sealed_key, ByteView certs_pkcs7) {
  auto part = [](std::string_view type, ByteView der) {
    std::string b64 = EstBase64(der);
    std::string crlf;
    crlf.reserve(b64.size() + b64.size() / 32);
    for (char c : b64) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    return "--" + std::string(kServerKeygenBoundary) + "\r\nContent-Type: " + std::string(type) +
           "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + crlf;
  };
  return part(kServerGeneratedKey, sealed_key) + part(kCertsOnly, certs_pkcs7) + "--" +
         kServerKeygenBoundary + "--\r\n";
}

Result<x509::Csr> ParseEstCsr(std::string_view body) {
  auto der = Base64Decode(body);
  if (!der || der->empty()) {
    return Fail(Code::kInvalidArgument,
                "the request body is not base64 (RFC 7030 wants base64 DER)");
  }
  auto csr = x509::Csr::FromDer(*der);
  if (!csr) return Fail(std::move(csr).error());
  return csr;
}

}  // namespace iotpki::enroll
