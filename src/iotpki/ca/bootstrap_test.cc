#include "iotpki/ca/bootstrap.h"

#include <gtest/gtest.h>

#include "iotpki/crypto/primitives.h"

namespace iotpki::ca {
namespace {

TEST(Bootstrap, SecretIsHkdfOfDeviceId) {
  Bytes master(32, 0x42), salt(16, 0x07);
  std::string id(64, 'a');
  Bytes info = ToBytes(std::string("iotpki/bootstrap/v1") + id);
  EXPECT_EQ(DeriveBootstrapSecret(master, salt, id), *crypto::HkdfSha256(master, salt, info, 32));
  EXPECT_NE(DeriveBootstrapSecret(master, salt, id),
            DeriveBootstrapSecret(master, salt, std::string(64, 'b')));
}

TEST(Bootstrap, TokenCoversIdDotTimestamp) {
  Bytes k(32, 0x01);
  std::string id(64, 'c');
  EXPECT_EQ(BootstrapTokenMessage(id, 1790000000), id + ".1790000000");
  std::string token = BootstrapToken(k, id, 1790000000);
  EXPECT_EQ(token, ToHex(crypto::HmacSha256(k, AsBytes(id + ".1790000000"))));
  EXPECT_TRUE(VerifyBootstrapToken(k, id, 1790000000, token));
  EXPECT_FALSE(VerifyBootstrapToken(k, id, 1790000001, token));
  std::string upper = token;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  EXPECT_FALSE(VerifyBootstrapToken(k, id, 1790000000, upper));
  EXPECT_FALSE(VerifyBootstrapToken(k, id, 1790000000, token.substr(0, 63)));
  EXPECT_FALSE(VerifyBootstrapToken(k, id, 1790000000, "zz" + token.substr(2)));
}

}  // namespace
}  // namespace iotpki::ca
