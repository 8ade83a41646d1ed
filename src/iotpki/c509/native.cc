// Signatures: natively signed (type 2) certificates, and verification of both types.
#include <algorithm>
#include <string>
#include <utility>

#include "iotpki/c509/internal.h"

namespace iotpki::c509 {
namespace {

using cbor::Item;
using crypto::DigestAlgorithm;
using crypto::KeyType;

// Registry codes of the public-key algorithms for the key types the crypto layer knows.
Result<int64_t> PublicKeyCode(const crypto::PublicKey& key) {
  switch (key.type()) {
    case KeyType::kP256:
      return 1;
    case KeyType::kP384:
      return 2;
    case KeyType::kEd25519:
      return 12;
    case KeyType::kRsa:
      return 0;
    case KeyType::kOtherEc: {
      const std::string& c = key.curve();
      if (c == "secp521r1") return 3;
      if (c == "SM2") return 6;
      if (c == "brainpoolP256r1") return 24;
      if (c == "brainpoolP384r1") return 25;
      if (c == "brainpoolP512r1") return 26;
      break;
    }
    default:
      break;
  }
  return Fail(internal::Unsupported("public keys of type " + key.Describe()));
}

Result<AlgorithmId> NativeSignatureAlgorithm(const crypto::Signer& signer) {
  const bool sha384 = signer.digest() == DigestAlgorithm::kSha384;
  switch (signer.public_key().type()) {
    case KeyType::kP256:
    case KeyType::kP384:
      return AlgorithmId{sha384 ? 1 : 0, {}, std::nullopt};
    case KeyType::kEd25519:
      return AlgorithmId{12, {}, std::nullopt};
    case KeyType::kRsa:
      return AlgorithmId{sha384 ? 24 : 23, {}, std::nullopt};
    default:
      return Fail(internal::Unsupported("native signatures with a " +
                                        signer.public_key().Describe() + " key"));
  }
}

// Byte length of the group order for r || s: the field size for the NIST curves used here.
size_t EcdsaScalarBytes(const crypto::PublicKey& key) {
  Bytes point = key.Sec1Point(false);
  return point.empty() ? 0 : (point.size() - 1) / 2;
}

Result<bool> VerifySignature(const AlgorithmId& alg, ByteView data, ByteView signature,
                             const crypto::PublicKey& key) {
  if (!alg.oid.empty()) {
    return Fail(Code::kUnimplemented,
                "verifying signatures of unregistered algorithms is not supported");
  }
  switch (alg.code) {
    case 0:
    case 1: {
      auto der_sig = internal::EcdsaRawToDer(signature);
      if (!der_sig) return false;
      return key.Verify(data, *der_sig,
                        alg.code == 0 ? DigestAlgorithm::kSha256 : DigestAlgorithm::kSha384);
    }
    case 12:
      return key.type() == KeyType::kEd25519 &&
             key.Verify(data, signature, DigestAlgorithm::kSha256);
    case 23:
    case 24:
      return key.type() == KeyType::kRsa &&
             key.Verify(data, signature,
                        alg.code == 23 ? DigestAlgorithm::kSha256 : DigestAlgorithm::kSha384);
    default: {
      const auto* e = registry::SignatureAlgorithmByCode(alg.code);
      return Fail(Code::kUnimplemented, "verifying " +
                                            std::string(e ? e->name : "this algorithm's") +
                                            " signatures is not supported");
    }
  }
}

Result<Bytes> TbsDer(const C509Certificate& cert) {
  IOTPKI_TRY(Bytes der, ToX509(cert));
  der::Reader top(der);
  IOTPKI_TRY(der::Element cert_el, top.Expect(der::kSequence));
  der::Reader c(cert_el.contents);
  IOTPKI_TRY(der::Element tbs, c.Expect(der::kSequence));
  return Bytes(tbs.whole.begin(), tbs.whole.end());
}

Result<void> RequireNativeName(const Name& name) {
  for (const Attribute& a : name) {
    if (a.oid.empty()) continue;
    if (const auto* e = registry::Attributes().ByOid(a.oid)) {
      return Fail(internal::Unsupported("attribute " + std::string(e->name) +
                                        " with this string type in a natively signed certificate"));
    }
  }
  return {};
}

}  // namespace

Result<Bytes> SignNative(const C509Certificate& tbs, const crypto::Signer& issuer) {
  C509Certificate cert = tbs;
  cert.type = kTypeNative;
  IOTPKI_TRY(cert.signature_algorithm, NativeSignatureAlgorithm(issuer));
  if (cert.public_key.is_bytes() && !cert.public_key.bytes().empty() &&
      (cert.public_key.bytes()[0] == 0xfe || cert.public_key.bytes()[0] == 0xfd)) {
    Bytes point(cert.public_key.bytes().begin(), cert.public_key.bytes().end());
    point[0] = point[0] == 0xfe ? 0x02 : 0x03;
    cert.public_key = Item::ByteString(point);
  }
  cert.signature.clear();
  // With an empty signature the encoding is 0x8B, the ten TBS items, then 0x40 (empty bstr):
  // the bytes in between are exactly what the signature covers.
  IOTPKI_TRY(Bytes unsigned_cert, Serialize(cert));
  ByteView tbs_bytes = ByteView(unsigned_cert).subspan(1, unsigned_cert.size() - 2);
  IOTPKI_TRY(Bytes sig, issuer.Sign(tbs_bytes));
  if (registry::IsEcdsaSignature(cert.signature_algorithm.code)) {
    IOTPKI_TRY(cert.signature, internal::EcdsaDerToRaw(sig, EcdsaScalarBytes(issuer.public_key())));
  } else {
    cert.signature = std::move(sig);
  }
  return Serialize(cert);
}

Result<bool> VerifyNative(ByteView c509, const crypto::PublicKey& issuer) {
  IOTPKI_TRY(internal::Parsed parsed, internal::ParseWithTbs(c509));
  if (parsed.cert.type != kTypeNative) {
    return Fail(Code::kInvalidArgument, "not a natively signed (type 2) C509 certificate");
  }
  return VerifySignature(parsed.cert.signature_algorithm, parsed.tbs_cbor, parsed.cert.signature,
                         issuer);
}

Result<bool> Verify(ByteView c509, const crypto::PublicKey& issuer) {
  IOTPKI_TRY(internal::Parsed parsed, internal::ParseWithTbs(c509));
  if (parsed.cert.type == kTypeNative) {
    return VerifySignature(parsed.cert.signature_algorithm, parsed.tbs_cbor, parsed.cert.signature,
                           issuer);
  }
  IOTPKI_TRY(Bytes tbs, TbsDer(parsed.cert));
  return VerifySignature(parsed.cert.signature_algorithm, tbs, parsed.cert.signature, issuer);
}

Result<Bytes> ToNative(ByteView x509_der, const crypto::Signer& issuer) {
  IOTPKI_TRY(C509Certificate cert, FromX509(x509_der));
  IOTPKI_CHECK(RequireNativeName(cert.subject));
  internal::MakeNameNative(cert.subject);
  if (cert.issuer) {
    IOTPKI_CHECK(RequireNativeName(*cert.issuer));
    internal::MakeNameNative(*cert.issuer);
    // Names that differed only in string type are now identical, and identical names must be
    // written as null.
    if (*cert.issuer == cert.subject) cert.issuer.reset();
  }
  for (Extension& e : cert.extensions) {
    if (e.oid.empty()) {
      e.value = internal::MakeExtensionValueNative(e.id, e.value);
    } else if (const auto* entry = registry::Extensions().ByOid(e.oid)) {
      return Fail(internal::Unsupported(
          "extension " + std::string(entry->name) +
          " in a natively signed certificate unless in its specific encoding, which this value "
          "does not fit"));
    }
  }
  return SignNative(cert, issuer);
}

Result<crypto::PublicKey> SubjectPublicKey(const C509Certificate& cert) {
  IOTPKI_TRY(Bytes spki,
             internal::SubjectPublicKeyInfoToDer(cert.public_key_algorithm, cert.public_key,
                                                 /*decompress_sec1=*/true));
  return crypto::PublicKey::FromDer(spki);
}

Result<AlgorithmId> PublicKeyAlgorithmFor(const crypto::PublicKey& key) {
  IOTPKI_TRY(int64_t code, PublicKeyCode(key));
  return AlgorithmId{code, {}, std::nullopt};
}

Result<cbor::Item> PublicKeyItemFor(const crypto::PublicKey& key) {
  IOTPKI_TRY(int64_t code, PublicKeyCode(key));
  if (code == 0) {
    // The SPKI BIT STRING of an RSA key holds RSAPublicKey { modulus, publicExponent }.
    const Bytes raw = key.RawKey();
    der::Reader r(raw);
    IOTPKI_TRY(der::Element seq, r.Expect(der::kSequence));
    der::Reader parts(seq.contents);
    IOTPKI_TRY(der::Element n, parts.Expect(der::kInteger));
    IOTPKI_TRY(der::Element e, parts.Expect(der::kInteger));
    auto strip = [](ByteView v) {
      while (!v.empty() && v[0] == 0) v = v.subspan(1);
      return v;
    };
    static const Bytes kF4 = {0x01, 0x00, 0x01};
    ByteView exponent = strip(e.contents);
    if (std::equal(exponent.begin(), exponent.end(), kF4.begin(), kF4.end())) {
      return Item::ByteString(strip(n.contents));
    }
    return Item::Array({Item::ByteString(strip(n.contents)), Item::ByteString(exponent)});
  }
  if (code == 12) return Item::ByteString(key.RawKey());
  Bytes point = key.Sec1Point(true);
  if (point.empty()) return Fail(internal::Unsupported("this EC public key"));
  return Item::ByteString(point);
}

}  // namespace iotpki::c509
