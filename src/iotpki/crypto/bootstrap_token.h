// Per-device bootstrap secrets and tokens (DESIGN.md, docs/formats.md), one implementation for
// the CA, the onboarding server and the device agent. The server re-derives K_dev from the
// master key, so nothing per device is stored server-side.
//
//   K_dev = HKDF-SHA256(ikm = master_key, salt = [bootstrap] salt from iotpki.toml,
//                       info = "iotpki/bootstrap/v1" || device_id)        32 bytes
//   token = lowercase hex of HMAC-SHA256(K_dev, device_id || "." || timestamp)
//
// device_id is the 64-character lowercase hex text; timestamp is Unix seconds in decimal ASCII
// without sign or leading zeros. Example message: "87c8...11f7.1790000000".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/crypto/secret.h"

namespace iotpki::crypto {

inline constexpr char kBootstrapInfoPrefix[] = "iotpki/bootstrap/v1";

Secret DeriveBootstrapSecret(ByteView master_key, ByteView salt, std::string_view device_id);

// The exact bytes the token's HMAC covers.
std::string BootstrapTokenMessage(std::string_view device_id, int64_t timestamp);
std::string BootstrapToken(ByteView k_dev, std::string_view device_id, int64_t timestamp);
// Constant-time; false for a token that is not 64 lowercase hex digits.
bool VerifyBootstrapToken(ByteView k_dev, std::string_view device_id, int64_t timestamp,
                          std::string_view token_hex);

}  // namespace iotpki::crypto
