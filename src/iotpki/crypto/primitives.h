// Hashes, MACs, KDFs, key agreement and randomness over OpenSSL 3.
#pragma once

#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/secret.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::crypto {

Bytes Sha256(ByteView data);
Bytes Sha384(ByteView data);
Bytes Sha1(ByteView data);

Bytes HmacSha256(ByteView key, ByteView data);
// Recomputes the MAC and compares it in constant time.
bool VerifyHmacSha256(ByteView key, ByteView data, ByteView mac);

// RFC 5869 HKDF-SHA256 (extract then expand). length at most 255 * 32.
Result<Bytes> HkdfSha256(ByteView ikm, ByteView salt, ByteView info, size_t length);

// PBKDF2-HMAC-SHA256 of a passphrase, `length` bytes, wiped when dropped: the one derivation
// behind every passphrase-protected file of the project (secret_file.h, mfg's transport keys).
Result<Secret> Pbkdf2Sha256(std::string_view passphrase, ByteView salt, int iterations,
                            size_t length);
// AES-256-CBC with PKCS#7 padding; `key` 32 bytes, `iv` 16. Decryption that fails (bad padding:
// a wrong key or a corrupted input) is Unauthenticated, with OpenSSL's error queue cleared.
Result<Bytes> Aes256Cbc(bool encrypt, ByteView key, ByteView iv, ByteView in);

// ECDH on the keys' common curve: the raw shared x-coordinate.
Result<Bytes> Ecdh(const PrivateKey& own, const PublicKey& peer);
// Session_Key = HKDF-SHA256(ikm = ECDH(own, peer), salt, info = "iotpki/session/v1" || context),
// 32 bytes. Both sides derive the same key.
Result<Bytes> DeriveSessionKey(const PrivateKey& own, const PublicKey& peer, ByteView salt,
                               ByteView context);

// Cryptographically secure random bytes (OpenSSL's DRBG).
Bytes RandomBytes(size_t n);

}  // namespace iotpki::crypto
