#include "iotpki/x509/ocsp.h"

#include <openssl/evp.h>
#include <openssl/ocsp.h>

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/internal.h"

namespace iotpki::x509 {

namespace {

const EVP_MD* DigestOf(std::string_view hash) {
  if (hash == "sha1") return EVP_sha1();
  if (hash == "sha256") return EVP_sha256();
  if (hash == "sha384") return EVP_sha384();
  if (hash == "sha512") return EVP_sha512();
  return nullptr;
}

std::string HashName(int nid) {
  switch (nid) {
    case NID_sha1:
      return "sha1";
    case NID_sha256:
      return "sha256";
    case NID_sha384:
      return "sha384";
    case NID_sha512:
      return "sha512";
    default:
      return {};
  }
}

Bytes Digest(const EVP_MD* md, ByteView data) {
  Bytes out(static_cast<size_t>(EVP_MD_get_size(md)));
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &n, md, nullptr);
  out.resize(n);
  return out;
}

Bytes StringBytes(const ASN1_STRING* s) {
  const uint8_t* p = ASN1_STRING_get0_data(s);
  return Bytes(p, p + ASN1_STRING_length(s));
}

Error Malformed(std::string message) {
  ossl::ClearErrors();
  return Error(Code::kInvalidArgument, "malformed OCSP request: " + std::move(message));
}

Result<std::optional<Bytes>> ReadNonce(OCSP_REQUEST* req) {
  int idx = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1);
  if (idx < 0) return std::optional<Bytes>();
  if (OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, idx) >= 0) {
    return Fail(Malformed("the nonce extension appears twice"));
  }
  X509_EXTENSION* ext = OCSP_REQUEST_get_ext(req, idx);
  Bytes value = StringBytes(X509_EXTENSION_get_data(ext));
  // RFC 8954 2.1: extnValue holds an OCTET STRING of the nonce.
  der::Reader r(value);
  auto nonce = r.Expect(der::kOctetString);
  if (!nonce || !r.empty()) return Fail(Malformed("the nonce is not an OCTET STRING"));
  if (nonce->contents.empty() || nonce->contents.size() > kMaxOcspNonceBytes) {
    return Fail(Malformed("the nonce must be 1 to 32 octets (RFC 8954)"));
  }
  return std::optional<Bytes>(Bytes(nonce->contents.begin(), nonce->contents.end()));
}

// The request as `openssl ocsp`, curl and most clients send it, read with the DER reader: one or
// more CertIDs (no singleRequestExtensions) with a SHA-1 or SHA-2 hash of the right length and a
// positive serial of 1 to 20 octets, then at most a nonce of 1 to 32 octets as the only request
// extension (not critical); no version, requestorName or signature. Every element is checked to
// be DER (minimal lengths and INTEGER, primitive strings, the exact OIDs and NULL), so what it
// accepts is exactly what the OpenSSL path accepts for these shapes, with the same fields.
// nullopt for anything else, which the OpenSSL path then judges (and refuses with its reasons).
// d2i_OCSP_REQUEST and its i2d check were 7% of a fresh answer's CPU (docs/performance.md,
// session 7).
std::optional<OcspRequest> ParseCommonOcspRequest(ByteView der) {
  struct Hash {
    std::string_view name;
    ByteView oid;  // the OID's contents
    size_t size;
  };
  static const uint8_t kSha1[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
  static const uint8_t kSha256[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
  static const uint8_t kSha384[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02};
  static const uint8_t kSha512[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03};
  static const Hash kHashes[] = {{"sha1", kSha1, 20},
                                 {"sha256", kSha256, 32},
                                 {"sha384", kSha384, 48},
                                 {"sha512", kSha512, 64}};
  // id-pkix-ocsp-nonce, 1.3.6.1.5.5.7.48.1.2
  static const uint8_t kNonceOid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02};
  auto same = [](ByteView a, ByteView b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
  };

  der::Reader outer(der);
  auto request = outer.Expect(der::kSequence);
  if (!request || !outer.empty()) return std::nullopt;
  der::Reader request_fields(request->contents);
  auto tbs = request_fields.Expect(der::kSequence);
  if (!tbs || !request_fields.empty()) return std::nullopt;  // a signature: OpenSSL's path
  der::Reader tbs_fields(tbs->contents);
  auto list = tbs_fields.Expect(der::kSequence);  // not a version or requestorName first
  if (!list) return std::nullopt;
  auto extensions = tbs_fields.Optional(der::ContextConstructed(2));
  if (!extensions || !tbs_fields.empty()) return std::nullopt;

  OcspRequest out;
  der::Reader requests(list->contents);
  while (!requests.empty()) {
    if (out.cert_ids.size() == kMaxOcspCertIds) return std::nullopt;
    auto one = requests.Expect(der::kSequence);
    if (!one) return std::nullopt;
    der::Reader one_fields(one->contents);
    auto cert_id = one_fields.Expect(der::kSequence);
    if (!cert_id || !one_fields.empty()) return std::nullopt;  // singleRequestExtensions
    der::Reader id_fields(cert_id->contents);
    auto algorithm = id_fields.Expect(der::kSequence);
    auto name_hash = id_fields.Expect(der::kOctetString);
    auto key_hash = id_fields.Expect(der::kOctetString);
    auto serial = id_fields.Expect(der::kInteger);
    if (!algorithm || !name_hash || !key_hash || !serial || !id_fields.empty()) {
      return std::nullopt;
    }
    der::Reader algorithm_fields(algorithm->contents);
    auto oid = algorithm_fields.Expect(der::kOid);
    if (!oid) return std::nullopt;
    if (!algorithm_fields.empty()) {  // parameters: only NULL
      auto null = algorithm_fields.Expect(der::kNull);
      if (!null || !null->contents.empty() || !algorithm_fields.empty()) return std::nullopt;
    }
    const Hash* hash = nullptr;
    for (const Hash& h : kHashes) {
      if (same(oid->contents, h.oid)) hash = &h;
    }
    if (hash == nullptr || name_hash->contents.size() != hash->size ||
        key_hash->contents.size() != hash->size) {
      return std::nullopt;
    }
    // A positive INTEGER in its minimal encoding; the magnitude without the sign octet.
    ByteView value = serial->contents;
    if (value.size() < 2 || value.size() > 21 || (value[0] & 0x80) != 0) return std::nullopt;
    if (value[0] == 0) {
      if ((value[1] & 0x80) == 0) return std::nullopt;  // not minimal (or zero)
      value = value.subspan(1);
    }
    if (value.size() > 20) return std::nullopt;
    OcspCertId id;
    id.hash = std::string(hash->name);
    id.issuer_name_hash.assign(name_hash->contents.begin(), name_hash->contents.end());
    id.issuer_key_hash.assign(key_hash->contents.begin(), key_hash->contents.end());
    id.serial.assign(value.begin(), value.end());
    id.der.assign(cert_id->whole.begin(), cert_id->whole.end());
    out.cert_ids.push_back(std::move(id));
  }
  if (out.cert_ids.empty()) return std::nullopt;

  if (extensions->tag != 0) {
    der::Reader explicit_fields(extensions->contents);
    auto list_of = explicit_fields.Expect(der::kSequence);
    if (!list_of || !explicit_fields.empty()) return std::nullopt;
    der::Reader each(list_of->contents);
    auto extension = each.Expect(der::kSequence);
    if (!extension || !each.empty()) return std::nullopt;  // none, or more than one
    der::Reader extension_fields(extension->contents);
    auto oid = extension_fields.Expect(der::kOid);
    auto value = extension_fields.Expect(der::kOctetString);  // not a critical flag first
    if (!oid || !value || !extension_fields.empty() || !same(oid->contents, kNonceOid)) {
      return std::nullopt;
    }
    der::Reader nonce_fields(value->contents);
    auto nonce = nonce_fields.Expect(der::kOctetString);
    if (!nonce || !nonce_fields.empty() || nonce->contents.empty() ||
        nonce->contents.size() > kMaxOcspNonceBytes) {
      return std::nullopt;
    }
    out.nonce = Bytes(nonce->contents.begin(), nonce->contents.end());
  }
  return out;
}

}  // namespace

Result<OcspRequest> ParseOcspRequest(ByteView der) {
  if (auto common = ParseCommonOcspRequest(der)) return std::move(*common);
  return ParseOcspRequestWithOpenSsl(der);
}

Result<OcspRequest> ParseOcspRequestWithOpenSsl(ByteView der) {
  const unsigned char* p = der.data();
  auto req = ossl::Own(d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(der.size())));
  if (!req || p != der.data() + der.size()) return Fail(Malformed("not a DER OCSPRequest"));
  // DER, not BER: the encoding must be the one OpenSSL would write.
  if (i2d_OCSP_REQUEST(req.get(), nullptr) != static_cast<int>(der.size())) {
    return Fail(Malformed("not DER"));
  }
  int count = OCSP_request_onereq_count(req.get());
  if (count <= 0) return Fail(Malformed("no CertID"));
  if (static_cast<size_t>(count) > kMaxOcspCertIds) {
    return Fail(Malformed("more than " + std::to_string(kMaxOcspCertIds) + " CertIDs"));
  }
  OcspRequest out;
  out.cert_ids.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    OCSP_CERTID* cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req.get(), i));
    ASN1_OCTET_STRING* name_hash = nullptr;
    ASN1_OCTET_STRING* key_hash = nullptr;
    ASN1_OBJECT* md = nullptr;
    ASN1_INTEGER* serial = nullptr;
    if (cid == nullptr || OCSP_id_get0_info(&name_hash, &md, &key_hash, &serial, cid) != 1) {
      return Fail(Malformed("a CertID does not decode"));
    }
    OcspCertId id;
    id.hash = HashName(OBJ_obj2nid(md));
    const EVP_MD* digest = DigestOf(id.hash);
    if (digest == nullptr) {
      return Fail(Malformed("unsupported CertID hash algorithm (use SHA-1 or SHA-256)"));
    }
    id.issuer_name_hash = StringBytes(name_hash);
    id.issuer_key_hash = StringBytes(key_hash);
    size_t size = static_cast<size_t>(EVP_MD_get_size(digest));
    if (id.issuer_name_hash.size() != size || id.issuer_key_hash.size() != size) {
      return Fail(Malformed("a CertID hash has the wrong length for its algorithm"));
    }
    if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) {
      return Fail(Malformed("a CertID serial is negative"));
    }
    id.serial = StringBytes(serial);
    if (id.serial.empty() || id.serial.size() > 20) {
      return Fail(Malformed("a CertID serial is not 1 to 20 octets"));
    }
    int len = i2d_OCSP_CERTID(cid, nullptr);
    if (len <= 0) return Fail(Malformed("a CertID does not encode"));
    id.der.resize(static_cast<size_t>(len));
    unsigned char* w = id.der.data();
    i2d_OCSP_CERTID(cid, &w);
    out.cert_ids.push_back(std::move(id));
  }
  IOTPKI_TRY(out.nonce, ReadNonce(req.get()));
  ossl::ClearErrors();
  return out;
}

std::optional<OcspIssuerHashes> OcspIssuerHashesOf(const Certificate& issuer,
                                                   std::string_view hash) {
  const EVP_MD* md = DigestOf(hash);
  if (md == nullptr) return std::nullopt;
  // The key hash covers the subjectPublicKey BIT STRING's value, without tag, length or the
  // unused-bits octet (RFC 6960 4.1.1).
  der::Reader spki(issuer.public_key().ToDer());
  auto seq = spki.Expect(der::kSequence);
  if (!seq) return std::nullopt;
  der::Reader fields(seq->contents);
  if (!fields.Expect(der::kSequence)) return std::nullopt;
  auto bits = fields.Expect(der::kBitString);
  if (!bits || bits->contents.empty()) return std::nullopt;
  return OcspIssuerHashes{Digest(md, issuer.subject_der()),
                          Digest(md, ByteView(bits->contents).subspan(1))};
}

struct OcspSigningContext::Impl {
  EVP_PKEY* pkey = nullptr;  // borrowed from the signer, which outlives the context's users
  ossl::UniquePtr<EVP_MD_CTX> proto;
};

OcspSigningContext::OcspSigningContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OcspSigningContext::~OcspSigningContext() = default;

Result<std::shared_ptr<const OcspSigningContext>> OcspSigningContext::Make(
    const crypto::Signer& key) {
  auto impl = std::make_unique<Impl>();
  impl->pkey = crypto::OpenSslHandle(key);
  if (impl->pkey == nullptr) {
    return Fail(Code::kFailedPrecondition, "the OCSP responder key is not reachable by OpenSSL");
  }
  const char* md = key.digest() == crypto::DigestAlgorithm::kSha384 ? "SHA384" : "SHA256";
  impl->proto = ossl::Own(EVP_MD_CTX_new());
  if (!impl->proto || EVP_DigestSignInit_ex(impl->proto.get(), nullptr, md, nullptr, nullptr,
                                            impl->pkey, nullptr) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "preparing the OCSP responder's signature"));
  }
  return std::shared_ptr<const OcspSigningContext>(new OcspSigningContext(std::move(impl)));
}

Result<Bytes> BuildOcspResponse(const Certificate& responder, const crypto::Signer& responder_key,
                                std::span<const OcspSingleAnswer> answers,
                                const std::optional<Bytes>& nonce,
                                const OcspSigningContext* prepared) {
  EVP_PKEY* pkey = crypto::OpenSslHandle(responder_key);
  if (pkey == nullptr) {
    return Fail(Code::kFailedPrecondition, "the OCSP responder key is not reachable by OpenSSL");
  }
  auto basic = ossl::Own(OCSP_BASICRESP_new());
  if (!basic) return Fail(ossl::Drain(Code::kInternal, "building an OCSP response"));
  for (const auto& a : answers) {
    if (a.id == nullptr) return Fail(Code::kInvalidArgument, "an OCSP answer without CertID");
    const unsigned char* p = a.id->der.data();
    auto cid = ossl::Own(d2i_OCSP_CERTID(nullptr, &p, static_cast<long>(a.id->der.size())));
    auto this_update = ossl::Own(ASN1_GENERALIZEDTIME_set(nullptr, a.this_update));
    auto next_update = ossl::Own(ASN1_GENERALIZEDTIME_set(nullptr, a.next_update));
    if (!cid || !this_update || !next_update) {
      return Fail(ossl::Drain(Code::kInternal, "building an OCSP response"));
    }
    int status = V_OCSP_CERTSTATUS_UNKNOWN;
    int reason = -1;
    ossl::UniquePtr<ASN1_STRING> revoked_at;
    if (a.status == OcspCertStatus::kGood) status = V_OCSP_CERTSTATUS_GOOD;
    if (a.status == OcspCertStatus::kRevoked) {
      status = V_OCSP_CERTSTATUS_REVOKED;
      // Absent rather than unspecified, as in CRLs (RFC 5280 5.3.1).
      if (a.reason != RevocationReason::kUnspecified) reason = static_cast<int>(a.reason);
      revoked_at = ossl::Own(ASN1_GENERALIZEDTIME_set(nullptr, a.revoked_at));
      if (!revoked_at) return Fail(ossl::Drain(Code::kInternal, "building an OCSP response"));
    }
    if (OCSP_basic_add1_status(basic.get(), cid.get(), status, reason, revoked_at.get(),
                               this_update.get(), next_update.get()) == nullptr) {
      return Fail(ossl::Drain(Code::kInternal, "building an OCSP response"));
    }
  }
  if (nonce && OCSP_basic_add1_nonce(basic.get(), const_cast<unsigned char*>(nonce->data()),
                                     static_cast<int>(nonce->size())) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "echoing the OCSP nonce"));
  }
  // The certificate's own handle (parsed once per certificate), not a d2i_X509 per answer.
  X509* cert = responder.handle();
  if (cert == nullptr) return Fail(Code::kInternal, "the OCSP responder certificate is unreadable");
  int signed_ok = 0;
  if (prepared != nullptr && prepared->impl().pkey == pkey) {
    // A copy of the prepared EVP_DigestSignInit: no fetch. FINALISE: the signature consumes the
    // copy instead of duplicating it once more.
    auto ctx = ossl::Own(EVP_MD_CTX_new());
    if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), prepared->impl().proto.get()) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "signing the OCSP response"));
    }
    EVP_MD_CTX_set_flags(ctx.get(), EVP_MD_CTX_FLAG_FINALISE);
    signed_ok = OCSP_basic_sign_ctx(basic.get(), cert, ctx.get(), nullptr, OCSP_RESPID_KEY);
  } else {
    const EVP_MD* md =
        responder_key.digest() == crypto::DigestAlgorithm::kSha384 ? EVP_sha384() : EVP_sha256();
    signed_ok = OCSP_basic_sign(basic.get(), cert, pkey, md, nullptr, OCSP_RESPID_KEY);
  }
  if (signed_ok != 1) return Fail(ossl::Drain(Code::kInternal, "signing the OCSP response"));
  auto response = ossl::Own(OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()));
  if (!response) return Fail(ossl::Drain(Code::kInternal, "building an OCSP response"));
  int len = i2d_OCSP_RESPONSE(response.get(), nullptr);
  if (len <= 0) return Fail(ossl::Drain(Code::kInternal, "encoding the OCSP response"));
  Bytes der(static_cast<size_t>(len));
  unsigned char* w = der.data();
  i2d_OCSP_RESPONSE(response.get(), &w);
  ossl::ClearErrors();
  return der;
}

namespace {

// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1) and id-pkix-ocsp-nonce (1.3.6.1.5.5.7.48.1.2), as
// OBJECT IDENTIFIER TLVs.
constexpr uint8_t kOidOcspBasic[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
                                     0x05, 0x07, 0x30, 0x01, 0x01};
constexpr uint8_t kOidOcspNonce[] = {0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
                                     0x05, 0x07, 0x30, 0x01, 0x02};
constexpr size_t kTimeBytes = der::kGeneralizedTimeSize;
using der::AppendGeneralizedTime;
using der::AppendHeader;
using der::TlvSize;

void Append(Bytes& out, ByteView bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); }

// CertStatus: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo { revocationTime,
// revocationReason [0] EXPLICIT CRLReason OPTIONAL }, unknown [2] IMPLICIT NULL. The reason is
// absent rather than unspecified, as in CRLs (RFC 5280 5.3.1) and BuildOcspResponse.
size_t CertStatusSize(const OcspSingleAnswer& a) {
  if (a.status != OcspCertStatus::kRevoked) return 2;
  return TlvSize(kTimeBytes + (a.reason != RevocationReason::kUnspecified ? 5 : 0));
}

size_t SingleResponseContent(const OcspSingleAnswer& a) {
  // certID, certStatus, thisUpdate, nextUpdate [0] EXPLICIT.
  return a.id->der.size() + CertStatusSize(a) + kTimeBytes + 2 + kTimeBytes;
}

Result<Bytes> SignTbs(const crypto::Signer& key, ByteView tbs, const OcspSigningContext* prepared) {
  EVP_PKEY* pkey = prepared != nullptr ? crypto::OpenSslHandle(key) : nullptr;
  if (pkey == nullptr || prepared->impl().pkey != pkey) return key.Sign(tbs);
  // A copy of the prepared EVP_DigestSignInit: no fetch. FINALISE: the signature consumes the
  // copy instead of duplicating it once more.
  auto ctx = ossl::Own(EVP_MD_CTX_new());
  if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), prepared->impl().proto.get()) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "signing the OCSP response"));
  }
  EVP_MD_CTX_set_flags(ctx.get(), EVP_MD_CTX_FLAG_FINALISE);
  size_t len = static_cast<size_t>(EVP_PKEY_get_size(pkey));
  Bytes signature(len);
  if (EVP_DigestSign(ctx.get(), signature.data(), &len, tbs.data(), tbs.size()) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "signing the OCSP response"));
  }
  signature.resize(len);
  return signature;
}

}  // namespace

Result<OcspResponseTemplate> OcspResponseTemplate::Make(const Certificate& responder,
                                                        const crypto::Signer& key) {
  if (!(key.public_key() == responder.public_key())) {
    return Fail(Code::kFailedPrecondition,
                "the OCSP signing key does not belong to the responder's certificate");
  }
  auto key_hash = OcspIssuerHashesOf(responder, "sha1");
  if (!key_hash) {
    return Fail(Code::kInvalidArgument, "the OCSP responder's public key does not decode");
  }
  OcspResponseTemplate t;
  t.responder_id_ =
      der::Constructed(der::ContextConstructed(2), {der::OctetString(key_hash->key_hash)});
  IOTPKI_TRY(t.algorithm_, internal::SignatureAlgorithm(key));
  t.certs_ = der::Constructed(der::ContextConstructed(0), {der::Sequence({responder.ToDer()})});
  return t;
}

Result<Bytes> OcspResponseTemplate::Write(const crypto::Signer& key,
                                          std::span<const OcspSingleAnswer> answers,
                                          const std::optional<Bytes>& nonce, int64_t produced_at,
                                          const OcspSigningContext* prepared) const {
  if (answers.empty() || answers.size() > kMaxOcspCertIds) {
    return Fail(Code::kInvalidArgument,
                "an OCSP response answers 1 to " + std::to_string(kMaxOcspCertIds) + " CertIDs");
  }
  if (nonce && (nonce->empty() || nonce->size() > kMaxOcspNonceBytes)) {
    return Fail(Code::kInvalidArgument, "an OCSP nonce is 1 to 32 octets (RFC 8954)");
  }
  // Sizes first, so that every length is written once and the ResponseData has one buffer.
  size_t responses = 0;
  for (const auto& a : answers) {
    if (a.id == nullptr) return Fail(Code::kInvalidArgument, "an OCSP answer without CertID");
    responses += TlvSize(SingleResponseContent(a));
  }
  // responseExtensions [1] EXPLICIT Extensions { Extension { id-pkix-ocsp-nonce, extnValue
  // OCTET STRING { OCTET STRING nonce } } } (RFC 8954; not critical).
  size_t nonce_value = nonce ? 2 + nonce->size() : 0;
  size_t extension = sizeof kOidOcspNonce + 2 + nonce_value;
  size_t extensions = nonce ? TlvSize(TlvSize(TlvSize(extension))) : 0;
  size_t tbs_content = responder_id_.size() + kTimeBytes + TlvSize(responses) + extensions;

  Bytes tbs;
  tbs.reserve(TlvSize(tbs_content));
  AppendHeader(tbs, der::kSequence, tbs_content);  // version omitted: v1 (DEFAULT)
  Append(tbs, responder_id_);
  bool times_ok = AppendGeneralizedTime(tbs, produced_at);
  AppendHeader(tbs, der::kSequence, responses);
  for (const auto& a : answers) {
    AppendHeader(tbs, der::kSequence, SingleResponseContent(a));
    Append(tbs, a.id->der);
    if (a.status == OcspCertStatus::kRevoked) {
      bool reason = a.reason != RevocationReason::kUnspecified;
      AppendHeader(tbs, der::ContextConstructed(1), kTimeBytes + (reason ? 5 : 0));
      times_ok = AppendGeneralizedTime(tbs, a.revoked_at) && times_ok;
      if (reason) {
        const uint8_t crl_reason[] = {der::ContextConstructed(0), 3, der::kEnumerated, 1,
                                      static_cast<uint8_t>(a.reason)};
        Append(tbs, crl_reason);
      }
    } else {
      tbs.push_back(der::ContextPrimitive(a.status == OcspCertStatus::kGood ? 0 : 2));
      tbs.push_back(0);
    }
    times_ok = AppendGeneralizedTime(tbs, a.this_update) && times_ok;
    AppendHeader(tbs, der::ContextConstructed(0), kTimeBytes);
    times_ok = AppendGeneralizedTime(tbs, a.next_update) && times_ok;
  }
  if (nonce) {
    AppendHeader(tbs, der::ContextConstructed(1), TlvSize(TlvSize(extension)));
    AppendHeader(tbs, der::kSequence, TlvSize(extension));
    AppendHeader(tbs, der::kSequence, extension);
    Append(tbs, kOidOcspNonce);
    AppendHeader(tbs, der::kOctetString, nonce_value);
    AppendHeader(tbs, der::kOctetString, nonce->size());
    Append(tbs, *nonce);
  }
  if (!times_ok) return Fail(Code::kInvalidArgument, "an OCSP time is outside years 0 to 9999");

  IOTPKI_TRY(Bytes signature, SignTbs(key, tbs, prepared));
  // OCSPResponse { responseStatus successful, responseBytes [0] EXPLICIT { id-pkix-ocsp-basic,
  // OCTET STRING { BasicOCSPResponse { tbs, algorithm, BIT STRING signature, certs } } } }.
  size_t basic_content =
      tbs.size() + algorithm_.size() + TlvSize(1 + signature.size()) + certs_.size();
  size_t response_bytes = sizeof kOidOcspBasic + TlvSize(TlvSize(basic_content));
  size_t outer = 3 + TlvSize(TlvSize(response_bytes));
  Bytes der;
  der.reserve(TlvSize(outer));
  AppendHeader(der, der::kSequence, outer);
  const uint8_t successful[] = {der::kEnumerated, 1, 0};
  Append(der, successful);
  AppendHeader(der, der::ContextConstructed(0), TlvSize(response_bytes));
  AppendHeader(der, der::kSequence, response_bytes);
  Append(der, kOidOcspBasic);
  AppendHeader(der, der::kOctetString, TlvSize(basic_content));
  AppendHeader(der, der::kSequence, basic_content);
  Append(der, tbs);
  Append(der, algorithm_);
  AppendHeader(der, der::kBitString, 1 + signature.size());
  der.push_back(0);
  Append(der, signature);
  Append(der, certs_);
  return der;
}

Bytes OcspErrorResponse(OcspResponseStatus status) {
  uint8_t code = static_cast<uint8_t>(status);
  return der::Sequence({der::Tlv(der::kEnumerated, ByteView(&code, 1))});
}

}  // namespace iotpki::x509
