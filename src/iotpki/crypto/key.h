// Public keys as immutable values, and the key types the policy talks about.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace iotpki::crypto {

enum class KeyType { kP256, kP384, kEd25519, kRsa, kOtherEc, kOther };

// "P-256", "P-384", "Ed25519", "RSA-2048", "EC secp192r1", ...
std::string KeyTypeName(KeyType type, int bits = 0, std::string_view curve = {});
// Parses "P-256" / "P-384" (case-insensitive, also "prime256v1", "secp384r1").
Result<KeyType> ParseCurve(std::string_view name);

enum class DigestAlgorithm { kSha256, kSha384 };

// A public key. Cheap to copy (shares one refcounted OpenSSL key). Thread-safe for reads.
class PublicKey {
 public:
  // SubjectPublicKeyInfo DER / "PUBLIC KEY" PEM.
  //
  // Every factory canonicalizes P-256 and P-384 keys to the uncompressed point form: a key sent
  // as a compressed (02/03) or hybrid (06/07) point is the same value as the uncompressed one,
  // and ToDer(), Fingerprint(), KeyIdentifier() and == see the uncompressed SPKI. One key thus
  // has one identity for duplicate-key and key-compromise checks, and certificates carry it
  // uncompressed.
  static Result<PublicKey> FromDer(ByteView spki);
  static Result<PublicKey> FromPem(std::string_view pem);
  // An uncompressed, compressed or hybrid SEC1 point on the given curve.
  static Result<PublicKey> FromSec1(KeyType curve, ByteView point);
  // The key OpenSSL already decoded while parsing a certificate or CSR, shared (up-referenced)
  // rather than decoded again: OpenSSL 3.0's decoder and encoder lookups cost more than an ECDSA
  // verification. `spki` must be that key's SubjectPublicKeyInfo DER, as it appears in the
  // parsed structure.
  static Result<PublicKey> FromParsed(EVP_PKEY* key, ByteView spki);

  const Bytes& ToDer() const { return spki_; }
  std::string ToPem() const;

  KeyType type() const { return type_; }
  int bits() const { return bits_; }
  // OpenSSL's short curve name for EC keys ("prime256v1"), empty otherwise.
  const std::string& curve() const { return curve_; }
  std::string Describe() const { return KeyTypeName(type_, bits_, curve_); }

  // SEC1 point (EC keys only; empty otherwise).
  Bytes Sec1Point(bool compressed) const;
  // The BIT STRING contents of the SPKI (the raw key), as X.509 key identifiers hash it.
  Bytes RawKey() const;
  // SHA-256 of the SPKI DER: a stable identity for duplicate-key checks.
  Bytes Fingerprint() const;
  // RFC 5280 key identifier: SHA-1 of RawKey() (method 1), as OpenSSL and most CAs compute it.
  Bytes KeyIdentifier() const;

  // Verifies a signature (DER ECDSA, raw Ed25519, PKCS#1 RSA) over `data` hashed with `digest`
  // (ignored for Ed25519). False for a bad signature; never an error.
  bool Verify(ByteView data, ByteView signature, DigestAlgorithm digest) const;

  bool operator==(const PublicKey& other) const { return spki_ == other.spki_; }

  // Borrowed OpenSSL handle for the library's own use; valid while this value lives.
  EVP_PKEY* get() const { return key_.get(); }

 private:
  PublicKey() = default;
  // `spki`: the key's DER if known; empty to encode it.
  // `curve`: the EC group's name when the caller has already asked OpenSSL for it.
  static Result<PublicKey> FromHandle(std::shared_ptr<EVP_PKEY> key, ByteView spki = {},
                                      std::string_view curve = {});
  // Replaces a compressed or hybrid P-256/P-384 SPKI by the uncompressed one (see FromDer).
  Result<void> Canonicalize();

  std::shared_ptr<EVP_PKEY> key_;
  Bytes spki_;
  KeyType type_ = KeyType::kOther;
  int bits_ = 0;
  std::string curve_;

  friend class PrivateKey;
};

// SubjectPublicKeyInfo DER of an EC key (id-ecPublicKey, namedCurve P-256 or P-384) from its
// uncompressed SEC1 point: what i2d_PUBKEY produces, without OpenSSL 3.0's encoder lookup.
Bytes EncodeEcSpki(KeyType curve, ByteView uncompressed_point);

// The digest a CA uses with a key of this type: SHA-384 for P-384, SHA-256 otherwise.
DigestAlgorithm DefaultDigest(KeyType type);

}  // namespace iotpki::crypto
