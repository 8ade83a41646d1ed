#include "iotpki/crypto/primitives.h"

#include <gtest/gtest.h>

namespace iotpki::crypto {
namespace {

Bytes Hex(std::string_view h) { return *FromHex(h); }
Bytes Range(int from, int to) {
  Bytes b;
  for (int i = from; i <= to; ++i) b.push_back(static_cast<uint8_t>(i));
  return b;
}

TEST(Sha256, KnownValue) {
  EXPECT_EQ(ToHex(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// RFC 5869 appendix A, test cases 1 to 3.
TEST(Hkdf, Rfc5869Case1) {
  auto okm = HkdfSha256(Bytes(22, 0x0b), Range(0x00, 0x0c), Range(0xf0, 0xf9), 42);
  ASSERT_TRUE(okm);
  EXPECT_EQ(ToHex(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Hkdf, Rfc5869Case2) {
  auto okm = HkdfSha256(Range(0x00, 0x4f), Range(0x60, 0xaf), Range(0xb0, 0xff), 82);
  ASSERT_TRUE(okm);
  EXPECT_EQ(ToHex(*okm),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac78272"
            "71cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f"
            "1d87");
}

TEST(Hkdf, Rfc5869Case3EmptySaltAndInfo) {
  auto okm = HkdfSha256(Bytes(22, 0x0b), {}, {}, 42);
  ASSERT_TRUE(okm);
  EXPECT_EQ(ToHex(*okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Hkdf, RefusesBadLength) {
  EXPECT_FALSE(HkdfSha256(Bytes(22, 0x0b), {}, {}, 0));
  EXPECT_FALSE(HkdfSha256(Bytes(22, 0x0b), {}, {}, 255 * 32 + 1));
}

// RFC 4231 section 4, HMAC-SHA256 outputs.
struct HmacCase {
  Bytes key;
  Bytes data;
  const char* mac;
};

TEST(Hmac, Rfc4231Cases) {
  const HmacCase cases[] = {
      {Bytes(20, 0x0b), ToBytes("Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {ToBytes("Jefe"), ToBytes("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {Bytes(20, 0xaa), Bytes(50, 0xdd),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {Range(0x01, 0x19), Bytes(50, 0xcd),
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {Bytes(131, 0xaa), ToBytes("Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {Bytes(131, 0xaa),
       ToBytes("This is a test using a larger than block-size key and a larger than block-size "
               "data. The key needs to be hashed before being used by the HMAC algorithm."),
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ToHex(HmacSha256(c.key, c.data)), c.mac);
    EXPECT_TRUE(VerifyHmacSha256(c.key, c.data, Hex(c.mac)));
    Bytes wrong = Hex(c.mac);
    wrong[31] ^= 1;
    EXPECT_FALSE(VerifyHmacSha256(c.key, c.data, wrong));
    Bytes shorter = Hex(c.mac);
    shorter.pop_back();
    EXPECT_FALSE(VerifyHmacSha256(c.key, c.data, shorter));
  }
}

TEST(Ecdh, BothSidesAgree) {
  auto device = PrivateKey::Generate(KeyType::kP256);
  auto server = PrivateKey::Generate(KeyType::kP256);
  ASSERT_TRUE(device && server);
  auto a = Ecdh(*device, server->public_key());
  auto b = Ecdh(*server, device->public_key());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->size(), 32u);
  EXPECT_EQ(*a, *b);
  Bytes salt = ToBytes("salt"), ctx = ToBytes("device-1");
  auto ka = DeriveSessionKey(*device, server->public_key(), salt, ctx);
  auto kb = DeriveSessionKey(*server, device->public_key(), salt, ctx);
  ASSERT_TRUE(ka && kb);
  EXPECT_EQ(*ka, *kb);
  EXPECT_EQ(ka->size(), 32u);
  auto other = DeriveSessionKey(*server, device->public_key(), salt, ToBytes("device-2"));
  EXPECT_NE(*ka, *other);
}

TEST(Ecdh, RefusesMixedCurves) {
  auto a = PrivateKey::Generate(KeyType::kP256);
  auto b = PrivateKey::Generate(KeyType::kP384);
  EXPECT_FALSE(Ecdh(*a, b->public_key()));
}

TEST(Random, Distinct) { EXPECT_NE(RandomBytes(16), RandomBytes(16)); }

}  // namespace
}  // namespace iotpki::crypto
