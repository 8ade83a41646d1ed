// Signing keys. Everything above the crypto layer signs through Signer and never sees key bytes:
// a key may live in a file, an HSM or a TPM.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"

namespace iotpki::crypto {

// Thread-safe: Sign may be called concurrently.
class Signer {
 public:
  virtual ~Signer() = default;
  virtual const PublicKey& public_key() const = 0;
  // Hashes `data` with digest() and signs it. ECDSA signatures are DER SEQUENCE{r, s}.
  virtual Result<Bytes> Sign(ByteView data) const = 0;
  virtual DigestAlgorithm digest() const { return DefaultDigest(public_key().type()); }
  // The key's URI, e.g. "file:/var/lib/iotpki/keys/root.key" (never includes a secret).
  virtual std::string uri() const = 0;
  // True when this process computes the signatures itself with OpenSSL from a key it checked
  // (PrivateKey). A CA verifies what other signers (HSM, TPM, remote KMS) return before a
  // certificate leaves; an in-process OpenSSL signature is correct by construction.
  virtual bool in_process() const { return false; }
  // Signs a digest the caller computed (a TLS handshake hands over its transcript hash): DER
  // ECDSA. Unimplemented unless the key's device signs bare digests (PKCS#11 CKM_ECDSA, a TPM).
  virtual Result<Bytes> SignDigest(ByteView hash) const;
};

// The optional second face of a signer whose key OpenSSL can use directly (TLS, where OpenSSL
// signs the handshake itself; OCSP responses). A token key has none: the CA signs through
// Signer::Sign only, and what needs a handle uses a key generated in memory.
class OpenSslKey {
 public:
  virtual ~OpenSslKey() = default;
  // Borrowed; valid while the signer lives.
  virtual EVP_PKEY* handle() const = 0;
};

// The signer's OpenSSL handle, or nullptr when it has none (a token key).
EVP_PKEY* OpenSslHandle(const Signer& signer);

// The key OpenSSL's TLS stack signs a handshake with for `signer`: its own handle when it has
// one (OpenSslKey), else the signer's TLS face: an EC key in the default library context that
// holds only the public point, with an EC_KEY_METHOD that sends every signature to
// signer.SignDigest (a PKCS#11 token, a TPM). OpenSSL 3.0 treats it as a foreign key and calls
// the method; digests, ECDHE and verifying the peer stay with the default provider. The face
// refers to `signer`, which must outlive it and every SSL_CTX or SSL it is given to.
// InvalidArgument for a key that is not P-256 or P-384 without a handle of its own.
Result<std::shared_ptr<EVP_PKEY>> TlsKeyOf(const Signer& signer);

// A private key held in this process's memory (generated here or loaded from an encrypted file).
class PrivateKey final : public Signer, public OpenSslKey {
 public:
  static Result<PrivateKey> Generate(KeyType type = KeyType::kP256);
  // PKCS#8 PEM, encrypted ("ENCRYPTED PRIVATE KEY") with the passphrase, or unencrypted when the
  // passphrase is empty and the PEM is unencrypted. A wrong passphrase is Unauthenticated.
  static Result<PrivateKey> FromPem(std::string_view pem, std::string_view passphrase);
  static Result<PrivateKey> FromDer(ByteView pkcs8_der);
  // A raw private scalar for a curve (test vectors).
  static Result<PrivateKey> FromScalar(KeyType curve, ByteView scalar);

  // PKCS#8 PEM encrypted with AES-256-CBC under a PBKDF2-derived key. An empty passphrase is
  // refused: keys at rest are always encrypted.
  Result<std::string> ToEncryptedPem(std::string_view passphrase) const;
  // Unencrypted PKCS#8 DER: only for handing a key to a device's secure element.
  Result<Bytes> ToDer() const;

  const PublicKey& public_key() const override { return public_; }
  Result<Bytes> Sign(ByteView data) const override;
  std::string uri() const override { return uri_; }
  EVP_PKEY* handle() const override { return key_.get(); }
  bool in_process() const override { return true; }
  void set_uri(std::string uri) { uri_ = std::move(uri); }

 private:
  PrivateKey() = default;
  static Result<PrivateKey> FromHandle(std::shared_ptr<EVP_PKEY> key);

  std::shared_ptr<EVP_PKEY> key_;
  PublicKey public_;
  std::string uri_ = "memory:";
  // EC keys: signing contexts set up for the key, each used by one thread at a time (setting one
  // up costs a fifth of a P-256 signature). Shared by copies, which hold the same key.
  struct SignContexts;
  std::shared_ptr<SignContexts> sign_contexts_;
};

// Saves a key as encrypted PKCS#8 PEM, mode 0600, atomically.
Result<void> SaveKeyFile(const std::filesystem::path& path, const PrivateKey& key,
                         std::string_view passphrase);
Result<PrivateKey> LoadKeyFile(const std::filesystem::path& path, std::string_view passphrase);

// Opens a signer by URI through the key store registered for its scheme (key_store.h):
// "file:PATH" (encrypted PKCS#8; relative paths against `base_dir`) or "pkcs11:..." (RFC 7512;
// `passphrase` unused, the PIN comes from IOTPKI_PKCS11_PIN or pin-source).
Result<std::unique_ptr<Signer>> OpenSigner(std::string_view uri, std::string_view passphrase,
                                           const std::filesystem::path& base_dir = {});

}  // namespace iotpki::crypto
