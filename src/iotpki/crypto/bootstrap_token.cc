#include "iotpki/crypto/bootstrap_token.h"

#include "iotpki/crypto/primitives.h"

namespace iotpki::crypto {

Secret DeriveBootstrapSecret(ByteView master_key, ByteView salt, std::string_view device_id) {
  Bytes info = ToBytes(kBootstrapInfoPrefix);
  info.insert(info.end(), device_id.begin(), device_id.end());
  // 32 bytes from HKDF-SHA256 cannot fail: the length is fixed and valid.
  return Secret(*HkdfSha256(master_key, salt, info, 32));
}

std::string BootstrapTokenMessage(std::string_view device_id, int64_t timestamp) {
  return std::string(device_id) + "." + std::to_string(timestamp);
}

std::string BootstrapToken(ByteView k_dev, std::string_view device_id, int64_t timestamp) {
  return ToHex(HmacSha256(k_dev, AsBytes(BootstrapTokenMessage(device_id, timestamp))));
}

bool VerifyBootstrapToken(ByteView k_dev, std::string_view device_id, int64_t timestamp,
                          std::string_view token_hex) {
  if (token_hex.size() != 64) return false;
  for (char c : token_hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  Bytes mac = *FromHex(token_hex);
  return VerifyHmacSha256(k_dev, AsBytes(BootstrapTokenMessage(device_id, timestamp)), mac);
}

}  // namespace iotpki::crypto
