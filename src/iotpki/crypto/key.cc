#include "iotpki/crypto/key.h"

#include <openssl/core_names.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "iotpki/common/der.h"
#include "iotpki/common/strings.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"

namespace iotpki::crypto {
namespace {

const char* CurveSn(KeyType t) {
  switch (t) {
    case KeyType::kP256:
      return "prime256v1";
    case KeyType::kP384:
      return "secp384r1";
    default:
      return nullptr;
  }
}

const EVP_MD* Md(DigestAlgorithm d) {
  return d == DigestAlgorithm::kSha384 ? ossl::Sha384Md() : ossl::Sha256Md();
}

// The uncompressed SEC1 point 04 || X || Y of an EC key, from its affine coordinates: OpenSSL
// keeps whichever form it was given (compressed, hybrid), so its own encoding is no identity.
Bytes UncompressedPoint(EVP_PKEY* key, int bits) {
  BIGNUM* x_raw = nullptr;
  BIGNUM* y_raw = nullptr;
  bool got = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x_raw) == 1;
  auto x = ossl::Own(x_raw);
  got = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y_raw) == 1 && got;
  auto y = ossl::Own(y_raw);
  if (!got || bits <= 0) return {};
  size_t n = (static_cast<size_t>(bits) + 7) / 8;
  Bytes point(1 + 2 * n);
  point[0] = 0x04;
  if (BN_bn2binpad(x.get(), point.data() + 1, static_cast<int>(n)) < 0 ||
      BN_bn2binpad(y.get(), point.data() + 1 + n, static_cast<int>(n)) < 0) {
    return {};
  }
  return point;
}

}  // namespace

std::string KeyTypeName(KeyType type, int bits, std::string_view curve) {
  switch (type) {
    case KeyType::kP256:
      return "P-256";
    case KeyType::kP384:
      return "P-384";
    case KeyType::kEd25519:
      return "Ed25519";
    case KeyType::kRsa:
      return "RSA-" + std::to_string(bits);
    case KeyType::kOtherEc:
      return "EC " + std::string(curve.empty() ? "unknown curve" : curve);
    case KeyType::kOther:
      return "unsupported key type";
  }
  return "unknown";
}

Result<KeyType> ParseCurve(std::string_view name) {
  std::string n = ToLowerAscii(name);
  if (n == "p-256" || n == "p256" || n == "prime256v1" || n == "secp256r1") return KeyType::kP256;
  if (n == "p-384" || n == "p384" || n == "secp384r1") return KeyType::kP384;
  return Fail(Code::kInvalidArgument,
              "unsupported curve '" + std::string(name) + "' (use P-256 or P-384)");
}

DigestAlgorithm DefaultDigest(KeyType type) {
  return type == KeyType::kP384 ? DigestAlgorithm::kSha384 : DigestAlgorithm::kSha256;
}

Result<PublicKey> PublicKey::FromHandle(std::shared_ptr<EVP_PKEY> key, ByteView spki,
                                        std::string_view curve) {
  PublicKey pk;
  pk.spki_ = spki.empty() ? ossl::ToDer(key.get(), i2d_PUBKEY) : Bytes(spki.begin(), spki.end());
  if (pk.spki_.empty())
    return Fail(ossl::Drain(Code::kInvalidArgument, "cannot encode public key"));
  int id = EVP_PKEY_get_base_id(key.get());
  pk.bits_ = EVP_PKEY_get_bits(key.get());
  if (id == EVP_PKEY_EC) {
    if (!curve.empty()) {
      pk.curve_ = curve;
    } else {
      char name[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name,
                                         &len) == 1) {
        pk.curve_ = name;
      }
      ossl::ClearErrors();
    }
    if (pk.curve_ == "prime256v1") {
      pk.type_ = KeyType::kP256;
    } else if (pk.curve_ == "secp384r1") {
      pk.type_ = KeyType::kP384;
    } else {
      pk.type_ = KeyType::kOtherEc;
    }
  } else if (id == EVP_PKEY_ED25519) {
    pk.type_ = KeyType::kEd25519;
  } else if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) {
    pk.type_ = KeyType::kRsa;
  } else {
    pk.type_ = KeyType::kOther;
  }
  pk.key_ = std::move(key);
  IOTPKI_CHECK(pk.Canonicalize());
  return pk;
}

Result<void> PublicKey::Canonicalize() {
  if (type_ != KeyType::kP256 && type_ != KeyType::kP384) return {};
  Bytes raw = RawKey();
  if (!raw.empty() && raw[0] == 0x04) return {};
  Bytes point = UncompressedPoint(key_.get(), bits_);
  if (point.empty()) return Fail(ossl::Drain(Code::kInvalidArgument, "not a valid EC public key"));
  spki_ = EncodeEcSpki(type_, point);
  return {};
}

namespace {

constexpr std::string_view kOidEcPublicKey = "1.2.840.10045.2.1";
constexpr std::string_view kOidP256 = "1.2.840.10045.3.1.7";
constexpr std::string_view kOidP384 = "1.3.132.0.34";

// An EC key on a named curve we issue for, read with the strict DER reader: the curve and the
// point, or nullopt for any other SPKI (left to OpenSSL's decoders).
struct NamedCurvePoint {
  KeyType curve;
  ByteView point;
};
std::optional<NamedCurvePoint> ReadNamedCurveSpki(ByteView spki) {
  der::Reader outer(spki);
  auto seq = outer.Expect(der::kSequence);
  if (!seq || !outer.empty()) return std::nullopt;
  der::Reader fields(seq->contents);
  auto alg = fields.Expect(der::kSequence);
  auto bits = fields.Expect(der::kBitString);
  if (!alg || !bits || !fields.empty()) return std::nullopt;
  der::Reader a(alg->contents);
  auto type = a.Expect(der::kOid);
  auto curve = a.Expect(der::kOid);
  if (!type || !curve || !a.empty()) return std::nullopt;
  if (der::OidToText(type->contents) != kOidEcPublicKey) return std::nullopt;
  std::string curve_oid = der::OidToText(curve->contents);
  KeyType t = curve_oid == kOidP256   ? KeyType::kP256
              : curve_oid == kOidP384 ? KeyType::kP384
                                      : KeyType::kOther;
  if (t == KeyType::kOther || bits->contents.size() < 2 || bits->contents[0] != 0) {
    return std::nullopt;
  }
  return NamedCurvePoint{t, bits->contents.subspan(1)};
}

// EVP_PKEY_fromdata of an EC public point. The import decodes the point with
// EC_POINT_oct2point, which refuses a point that is not on the curve.
EVP_PKEY* EcPublicFromPoint(KeyType curve, ByteView point) {
  auto ctx = ossl::Own(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  char* group = const_cast<char*>(CurveSn(curve));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<uint8_t*>(point.data()),
                                        point.size()),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) return nullptr;
  return raw;
}

// The SPKI's subjectPublicKey BIT STRING holds a whole number of bytes for every key type there
// is (an EC point, an RSAPublicKey, a raw EdDSA key: RFC 5480, 8017, 8410). OpenSSL accepts
// unused bits there and re-encodes them away, so one key could arrive in several encodings with
// different fingerprints; such an SPKI is refused on every path.
bool WholeBytesKey(ByteView spki) {
  der::Reader outer(spki);
  auto seq = outer.Expect(der::kSequence);
  if (!seq) return false;
  der::Reader fields(seq->contents);
  if (!fields.Expect(der::kSequence)) return false;
  auto bits = fields.Expect(der::kBitString);
  return bits && !bits->contents.empty() && bits->contents[0] == 0;
}

constexpr std::string_view kUnusedBits =
    "not a valid SubjectPublicKeyInfo (the key's BIT STRING has unused bits)";

}  // namespace

Bytes EncodeEcSpki(KeyType curve, ByteView uncompressed_point) {
  std::string_view curve_oid = curve == KeyType::kP384 ? kOidP384 : kOidP256;
  return der::Sequence({der::Sequence({der::Oid(kOidEcPublicKey), der::Oid(curve_oid)}),
                        der::BitString(uncompressed_point)});
}

Result<PublicKey> PublicKey::FromDer(ByteView spki) {
  // OpenSSL 3.0's d2i_PUBKEY runs the generic decoder framework (~100 us, more than an ECDSA
  // verification); the keys we issue for are read directly and imported from their point.
  if (auto ec = ReadNamedCurveSpki(spki)) {
    auto key = ossl::Share(EcPublicFromPoint(ec->curve, ec->point));
    if (!key) return Fail(ossl::Drain(Code::kInvalidArgument, "not a valid point on the curve"));
    PublicKey pk;
    pk.key_ = std::move(key);
    pk.spki_.assign(spki.begin(), spki.end());
    pk.type_ = ec->curve;
    pk.bits_ = ec->curve == KeyType::kP384 ? 384 : 256;
    pk.curve_ = CurveSn(ec->curve);
    IOTPKI_CHECK(pk.Canonicalize());
    return pk;
  }
  const unsigned char* p = spki.data();
  auto key = ossl::Share(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (!key || p != spki.data() + spki.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a valid SubjectPublicKeyInfo"));
  }
  if (!WholeBytesKey(spki)) return Fail(Code::kInvalidArgument, std::string(kUnusedBits));
  // The bytes given, not OpenSSL's re-encoding: a key read from a certificate or CSR is the same
  // value whichever parser read it.
  return FromHandle(std::move(key), spki);
}

Result<PublicKey> PublicKey::FromParsed(EVP_PKEY* key, ByteView spki) {
  if (key == nullptr || spki.empty()) {
    return Fail(Code::kInvalidArgument, "not a valid SubjectPublicKeyInfo");
  }
  if (!WholeBytesKey(spki)) return Fail(Code::kInvalidArgument, std::string(kUnusedBits));
  if (EVP_PKEY_up_ref(key) != 1) {
    return Fail(Code::kInvalidArgument, "not a valid SubjectPublicKeyInfo");
  }
  return FromHandle(ossl::Share(key), spki);
}

Result<PublicKey> PublicKey::FromPem(std::string_view pem) {
  IOTPKI_TRY(Bytes der, ossl::PemDecode(pem, "PUBLIC KEY"));
  return FromDer(der);
}

Result<PublicKey> PublicKey::FromSec1(KeyType curve, ByteView point) {
  const char* sn = CurveSn(curve);
  if (sn == nullptr) return Fail(Code::kInvalidArgument, "SEC1 points need an EC curve");
  auto ctx = ossl::Own(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  auto bld = ossl::Own(OSSL_PARAM_BLD_new());
  if (!ctx || !bld ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, sn, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size())) {
    return Fail(ossl::Drain(Code::kInternal, "cannot build EC key parameters"));
  }
  auto params = ossl::Own(OSSL_PARAM_BLD_to_param(bld.get()));
  EVP_PKEY* raw = nullptr;
  if (!params || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a valid point on the curve"));
  }
  std::shared_ptr<EVP_PKEY> key = ossl::Share(raw);
  // fromdata does not validate the point; an off-curve point must not become a key.
  auto check = ossl::Own(EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a valid point on the curve"));
  }
  return FromHandle(std::move(key));
}

std::string PublicKey::ToPem() const { return ossl::PemEncode("PUBLIC KEY", spki_); }

Bytes PublicKey::Sec1Point(bool compressed) const {
  if (type_ != KeyType::kP256 && type_ != KeyType::kP384 && type_ != KeyType::kOtherEc) return {};
  // The SPKI's BIT STRING holds the uncompressed point 04 || X || Y.
  Bytes point = RawKey();
  if (point.size() < 3 || point[0] != 0x04 || point.size() % 2 != 1) return {};
  if (!compressed) return point;
  size_t n = (point.size() - 1) / 2;
  Bytes out;
  out.reserve(n + 1);
  out.push_back(static_cast<uint8_t>(0x02 | (point.back() & 1)));
  out.insert(out.end(), point.begin() + 1, point.begin() + 1 + static_cast<ptrdiff_t>(n));
  return out;
}

Bytes PublicKey::RawKey() const {
  // SPKI = SEQUENCE { AlgorithmIdentifier, BIT STRING }: the BIT STRING's content minus the
  // unused-bits byte. Read with the strict DER reader: d2i_X509_PUBKEY would decode the whole key
  // again through OpenSSL's (slow) decoders.
  der::Reader outer(spki_);
  auto seq = outer.Expect(der::kSequence);
  if (!seq) return {};
  der::Reader fields(seq->contents);
  if (!fields.Expect(der::kSequence)) return {};
  auto bits = fields.Expect(der::kBitString);
  if (!bits || bits->contents.empty()) return {};
  return Bytes(bits->contents.begin() + 1, bits->contents.end());
}

Bytes PublicKey::Fingerprint() const { return Sha256(spki_); }

Bytes PublicKey::KeyIdentifier() const { return Sha1(RawKey()); }

bool PublicKey::Verify(ByteView data, ByteView signature, DigestAlgorithm digest) const {
  auto ctx = ossl::Own(EVP_MD_CTX_new());
  const EVP_MD* md = type_ == KeyType::kEd25519 ? nullptr : Md(digest);
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key_.get()) == 1 &&
            EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(),
                             data.size()) == 1;
  ossl::ClearErrors();
  return ok;
}

}  // namespace iotpki::crypto
