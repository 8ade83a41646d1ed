#include "iotpki/mfg/transport.h"

#include <openssl/crypto.h>

#include <utility>

#include "iotpki/common/der.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"

namespace iotpki::mfg {
namespace {

constexpr std::string_view kPbes2 = "1.2.840.113549.1.5.13";
constexpr std::string_view kPbkdf2 = "1.2.840.113549.1.5.12";
constexpr std::string_view kHmacSha256 = "1.2.840.113549.2.9";
constexpr std::string_view kAes256Cbc = "2.16.840.1.101.3.4.1.42";
constexpr std::string_view kPemLabel = "ENCRYPTED PRIVATE KEY";
constexpr size_t kIvSize = 16;

Error Corrupt(std::string_view what) {
  return Error(Code::kDataLoss, "the encrypted device key is unreadable", std::string(what));
}

// AES-256-CBC with PKCS#7 padding, either way (crypto::Aes256Cbc); a bad padding on decryption
// is this file's DataLoss.
Result<Bytes> Cipher(ByteView key, ByteView iv, ByteView in, bool encrypt) {
  auto out = crypto::Aes256Cbc(encrypt, key, iv, in);
  if (!out && out.error().code() == Code::kUnauthenticated) {
    return Fail(Corrupt("bad padding: wrong transport key or corrupted file"));
  }
  return out;
}

Bytes AlgorithmId(std::string_view oid, ByteView params) {
  return der::Sequence({der::Oid(oid), params});
}

// Reads an AlgorithmIdentifier and checks its OID; returns the parameters element.
Result<der::Element> ExpectAlgorithm(der::Reader& r, std::string_view oid) {
  IOTPKI_TRY(der::Element alg, r.Expect(der::kSequence));
  der::Reader in(alg.contents);
  IOTPKI_TRY(der::Element id, in.Expect(der::kOid));
  if (der::OidToText(id.contents) != oid) {
    return Fail(Corrupt("unexpected algorithm " + der::OidToText(id.contents)));
  }
  return in.Next();
}

}  // namespace

Result<TransportKey> TransportKey::Derive(std::string_view passphrase, ByteView salt,
                                          int iterations) {
  if (passphrase.size() < kMinTransportPassphrase) {
    return Fail(Code::kInvalidArgument, "the key transport passphrase must be at least " +
                                            std::to_string(kMinTransportPassphrase) +
                                            " characters");
  }
  if (salt.size() != 16 || iterations < 10000) {
    return Fail(Code::kInvalidArgument, "transport key parameters out of range",
                "salt " + std::to_string(salt.size()) + " bytes, " + std::to_string(iterations) +
                    " iterations");
  }
  IOTPKI_TRY(crypto::Secret derived, crypto::Pbkdf2Sha256(passphrase, salt, iterations, 32));
  TransportKey k;
  k.key_.assign(derived.bytes().begin(), derived.bytes().end());
  k.salt_.assign(salt.begin(), salt.end());
  k.iterations_ = iterations;
  return k;
}

TransportKey::TransportKey(TransportKey&& other) noexcept
    : key_(std::move(other.key_)), salt_(std::move(other.salt_)), iterations_(other.iterations_) {}

TransportKey& TransportKey::operator=(TransportKey&& other) noexcept {
  if (this != &other) {
    if (!key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
    key_ = std::move(other.key_);
    salt_ = std::move(other.salt_);
    iterations_ = other.iterations_;
  }
  return *this;
}

TransportKey::~TransportKey() {
  if (!key_.empty()) OPENSSL_cleanse(key_.data(), key_.size());
}

std::string TransportKey::CheckValue() const {
  return ToHex(crypto::HmacSha256(key_, AsBytes("iotpki/mfg/transport-check/v1")));
}

Result<std::string> TransportKey::Encrypt(const crypto::PrivateKey& key) const {
  IOTPKI_TRY(Bytes plain, key.ToDer());
  Bytes iv = crypto::RandomBytes(kIvSize);
  auto sealed = Cipher(key_, iv, plain, /*encrypt=*/true);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (!sealed) return Fail(std::move(sealed).error());
  Bytes prf = AlgorithmId(kHmacSha256, der::Tlv(der::kNull, {}));
  Bytes kdf_params = der::Sequence({der::OctetString(salt_), der::SmallInteger(iterations_), prf});
  Bytes pbes2_params = der::Sequence(
      {AlgorithmId(kPbkdf2, kdf_params), AlgorithmId(kAes256Cbc, der::OctetString(iv))});
  Bytes info = der::Sequence({AlgorithmId(kPbes2, pbes2_params), der::OctetString(*sealed)});
  return ossl::PemEncode(kPemLabel, info);
}

Result<crypto::PrivateKey> TransportKey::Decrypt(std::string_view pem) const {
  auto info_der = ossl::PemDecode(pem, kPemLabel);
  if (!info_der) return Fail(Corrupt(info_der.error().message()));
  // EncryptedPrivateKeyInfo { PBES2 { PBKDF2 { salt, count, prf }, AES-256-CBC iv }, data }
  auto parse = [&]() -> Result<std::pair<Bytes, Bytes>> {
    der::Reader top(*info_der);
    IOTPKI_TRY(der::Element info, top.Expect(der::kSequence));
    der::Reader r(info.contents);
    IOTPKI_TRY(der::Element pbes2, ExpectAlgorithm(r, kPbes2));
    IOTPKI_TRY(der::Element data, r.Expect(der::kOctetString));
    der::Reader p(pbes2.contents);
    IOTPKI_TRY(der::Element kdf, ExpectAlgorithm(p, kPbkdf2));
    IOTPKI_TRY(der::Element cipher, ExpectAlgorithm(p, kAes256Cbc));
    der::Reader k(kdf.contents);
    IOTPKI_TRY(der::Element salt, k.Expect(der::kOctetString));
    IOTPKI_TRY(der::Element count, k.Expect(der::kInteger));
    IOTPKI_TRY(int64_t iterations, der::ParseSmallInteger(count.contents));
    IOTPKI_TRY(der::Element prf, ExpectAlgorithm(k, kHmacSha256));
    (void)prf;
    if (Bytes(salt.contents.begin(), salt.contents.end()) != salt_ || iterations != iterations_) {
      return Fail(Corrupt("the file was encrypted with another batch's salt or iteration count"));
    }
    if (cipher.tag != der::kOctetString || cipher.contents.size() != kIvSize) {
      return Fail(Corrupt("bad AES-256-CBC IV"));
    }
    return std::make_pair(Bytes(cipher.contents.begin(), cipher.contents.end()),
                          Bytes(data.contents.begin(), data.contents.end()));
  };
  auto parts = parse();
  if (!parts) {
    if (parts.error().code() == Code::kDataLoss) return Fail(std::move(parts).error());
    return Fail(Corrupt(parts.error().ToString()));
  }
  IOTPKI_TRY(Bytes plain, Cipher(key_, parts->first, parts->second, /*encrypt=*/false));
  auto key = crypto::PrivateKey::FromDer(plain);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (!key) return Fail(Corrupt(key.error().ToString()));
  return key;
}

}  // namespace iotpki::mfg
