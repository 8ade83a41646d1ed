// Key stores: where private keys are created, opened and deleted, each named by URI. One
// implementation per URI scheme ("file:", "pkcs11:", "tpm2:"), chosen through a registry, so that
// callers (ca init, the server, the factory) never branch on where a key lives.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::crypto {

// What a key store may need besides the URI. Nothing here is written to disk or logged.
struct KeyStoreOptions {
  // file: the passphrase that encrypts the key at rest (at least 8 characters to generate).
  // tpm2: the key's authorization value in the TPM (empty: none).
  std::string_view passphrase;
  // file: relative paths are resolved against this directory.
  std::filesystem::path base_dir;
  // pkcs11: the module to load when the URI has no module-path; empty: IOTPKI_PKCS11_MODULE,
  // else /usr/lib/softhsm/libsofthsm2.so.
  std::string pkcs11_module;
  // pkcs11: accept a PIN written in the URI (pin-value). Only tests set this; everywhere else a
  // PIN in a URI would end up in configuration files and shell history.
  bool allow_pin_value = false;
};

// Thread-safe: every method may be called from several threads, and the signers it returns too.
class KeyStore {
 public:
  virtual ~KeyStore() = default;
  // The URI scheme this store answers, without the colon ("file", "pkcs11", "tpm2").
  virtual std::string_view scheme() const = 0;
  // Creates a new key where `uri` says and returns its signer, whose uri() names it for Open
  // (without any secret). AlreadyExists if `uri` names an existing key; nothing is overwritten.
  virtual Result<std::unique_ptr<Signer>> Generate(std::string_view uri, KeyType type) = 0;
  // NotFound for a missing key (only), Unauthenticated for a wrong passphrase or PIN,
  // FailedPrecondition for a store that cannot be reached (no such token or module).
  virtual Result<std::unique_ptr<Signer>> Open(std::string_view uri) = 0;
  // Destroys the key (and, in a token, its public key and certificate). NotFound if missing.
  virtual Result<void> Delete(std::string_view uri) = 0;
};

using KeyStoreFactory =
    std::function<Result<std::unique_ptr<KeyStore>>(const KeyStoreOptions& options)>;

// Registers (or replaces) the store for a scheme. "file", "pkcs11" and "tpm2"
// (tpm2_key_store.h) are registered from the start.
void RegisterKeyStore(std::string scheme, KeyStoreFactory factory);

// The store for `uri`'s scheme. InvalidArgument for an unknown scheme, naming the known ones.
Result<std::unique_ptr<KeyStore>> KeyStoreFor(std::string_view uri, const KeyStoreOptions& options);

// "pkcs11:token=ca" + "object=root" -> "pkcs11:token=ca;object=root"; the URI's query
// (after '?') stays at the end.
std::string AppendPkcs11Attribute(std::string_view uri, std::string_view attribute);

// The encrypted PKCS#8 files of today: "file:PATH".
std::unique_ptr<KeyStore> NewFileKeyStore(const KeyStoreOptions& options);

}  // namespace iotpki::crypto
