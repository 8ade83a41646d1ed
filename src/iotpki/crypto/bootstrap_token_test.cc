#include "iotpki/crypto/bootstrap_token.h"

#include <gtest/gtest.h>

#include <cctype>

namespace iotpki::crypto {
namespace {

// A known-answer vector built from DESIGN.md's byte layout with the openssl CLI alone, not from
// this implementation:
//   device_id = SHA-256("SN-000001" || 0x00 || 00112233), lowercase hex
//     printf 'SN-000001\0\x00\x11\x22\x33' | openssl dgst -sha256
//   K_dev = HKDF-SHA256(master 00..1f, salt f0..ff, info "iotpki/bootstrap/v1" || device_id)
//     openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:0001..1f
//       -kdfopt hexsalt:f0f1..ff -kdfopt info:iotpki/bootstrap/v1<device_id> HKDF
//   token = HMAC-SHA256(K_dev, device_id "." "1790000000")
//     printf '%s' "<device_id>.1790000000" | openssl dgst -sha256 -mac HMAC -macopt hexkey:<K_dev>
constexpr char kDeviceId[] = "7cb2e4df4698d303697fc76c13ce5f2ba3858c4a5790c22689312648c50bce20";
constexpr char kMaster[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr char kSalt[] = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
constexpr char kKDev[] = "bac4600ef569945dadcf4f31fef2a10a215ee40cfc1682b787ad6b27416d695a";
constexpr char kToken[] = "f3a5119e005b3b1ebdc2cf69821831ed3f37945531db0353eb3a25b7380f3b25";

TEST(BootstrapToken, SecretMatchesTheKnownAnswer) {
  Secret k = DeriveBootstrapSecret(*FromHex(kMaster), *FromHex(kSalt), kDeviceId);
  EXPECT_EQ(ToHex(k.bytes()), kKDev);
  Secret other = DeriveBootstrapSecret(*FromHex(kMaster), *FromHex(kSalt), std::string(64, 'b'));
  EXPECT_NE(ToHex(other.bytes()), kKDev);
}

TEST(BootstrapToken, TokenMatchesTheKnownAnswer) {
  Bytes k = *FromHex(kKDev);
  EXPECT_EQ(BootstrapTokenMessage(kDeviceId, 1790000000), std::string(kDeviceId) + ".1790000000");
  EXPECT_EQ(BootstrapToken(k, kDeviceId, 1790000000), kToken);
  EXPECT_TRUE(VerifyBootstrapToken(k, kDeviceId, 1790000000, kToken));
  EXPECT_FALSE(VerifyBootstrapToken(k, kDeviceId, 1790000001, kToken));
  std::string upper = kToken;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_FALSE(VerifyBootstrapToken(k, kDeviceId, 1790000000, upper));
  EXPECT_FALSE(VerifyBootstrapToken(k, kDeviceId, 1790000000, std::string(kToken).substr(0, 63)));
  EXPECT_FALSE(
      VerifyBootstrapToken(k, kDeviceId, 1790000000, "zz" + std::string(kToken).substr(2)));
}

}  // namespace
}  // namespace iotpki::crypto
