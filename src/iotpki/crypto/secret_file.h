// Symmetric secrets at rest (the bootstrap master key), encrypted with the CA passphrase in the
// format of `openssl enc -aes-256-cbc -pbkdf2 -iter 100000 -md sha256`, so an operator can
// inspect or re-wrap one with the openssl CLI alone:
//
//   openssl enc -d -aes-256-cbc -pbkdf2 -iter 100000 -md sha256
//       -in keys/bootstrap-master.key -pass env:IOTPKI_PASSPHRASE   (one command line)
//
// Layout: "Salted__" || salt (8) || AES-256-CBC(PKCS#7 padding) with key || iv = the first 48
// bytes of PBKDF2-HMAC-SHA256(passphrase, salt, 100000). The plaintext starts with a fixed
// label line, so a wrong passphrase is detected reliably (CBC padding alone would accept one
// wrong passphrase in 256).
#pragma once

#include <filesystem>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki::crypto {

inline constexpr int kSecretFileIterations = 100000;

// `label` is a single line without '\n', e.g. "iotpki-bootstrap-master-v1".
Result<Bytes> SealSecret(ByteView secret, std::string_view label, std::string_view passphrase);
// Unauthenticated for a wrong passphrase; DataLoss for a corrupted file or another label.
Result<Bytes> OpenSecret(ByteView sealed, std::string_view label, std::string_view passphrase);

// Mode 0600, atomic.
Result<void> SaveSecretFile(const std::filesystem::path& path, ByteView secret,
                            std::string_view label, std::string_view passphrase);
Result<Bytes> LoadSecretFile(const std::filesystem::path& path, std::string_view label,
                             std::string_view passphrase);

}  // namespace iotpki::crypto
