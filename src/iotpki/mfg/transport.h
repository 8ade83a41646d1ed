// Transport encryption of device keys the CA generates (`mfg provision --keys ca`): each key
// leaves the CA as an encrypted PKCS#8 file (RFC 5958 EncryptedPrivateKeyInfo, PBES2 per RFC
// 8018: PBKDF2-HMAC-SHA256 and AES-256-CBC) under a per-batch transport passphrase, so that the
// station that injects it into the device's secure element, and `openssl pkey -passin`, can read
// it with that passphrase alone.
//
// Every key of a batch uses the same PBKDF2 salt and iteration count (from batch.json), so the
// expensive derivation runs once per batch instead of once per device; each file still has its
// own random IV. Sharing the salt costs nothing here: all files of a batch are under one
// passphrase, so whoever guesses it for one file has it for all of them anyway.
#pragma once

#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::mfg {

// As for the CA's own keys (crypto::SaveKeyFile): a station decrypting one key pays ~30 ms.
inline constexpr int kTransportIterations = 100000;
inline constexpr size_t kMinTransportPassphrase = 12;

// The derived AES-256 key of one batch. Move-only; the key is wiped on destruction.
class TransportKey {
 public:
  // InvalidArgument for a passphrase under kMinTransportPassphrase characters, a salt that is not
  // 16 bytes, or an iteration count under 10,000.
  static Result<TransportKey> Derive(std::string_view passphrase, ByteView salt, int iterations);

  TransportKey(TransportKey&& other) noexcept;
  TransportKey& operator=(TransportKey&& other) noexcept;
  TransportKey(const TransportKey&) = delete;
  TransportKey& operator=(const TransportKey&) = delete;
  ~TransportKey();

  const Bytes& salt() const { return salt_; }
  int iterations() const { return iterations_; }
  // Lowercase hex HMAC-SHA256(key, "iotpki/mfg/transport-check/v1"): kept in batch.json so that
  // --resume refuses a different passphrase before encrypting anything under it. Reveals
  // nothing usable about the key.
  std::string CheckValue() const;

  // "ENCRYPTED PRIVATE KEY" PEM of the key's PKCS#8. Thread-safe.
  Result<std::string> Encrypt(const crypto::PrivateKey& key) const;
  // The inverse for files of this batch (same salt, iteration count and algorithms);
  // DataLoss for anything else, a wrong key or a corrupted file. Thread-safe.
  Result<crypto::PrivateKey> Decrypt(std::string_view pem) const;

 private:
  TransportKey() = default;
  Bytes key_;
  Bytes salt_;
  int iterations_ = 0;
};

}  // namespace iotpki::mfg
