#include "iotpki/common/bytes.h"

#include <gtest/gtest.h>

namespace iotpki {
namespace {

TEST(Hex, RoundTrip) {
  Bytes data = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(ToHex(data), "0001abff");
  EXPECT_EQ(*FromHex("0001ABff"), data);
}

TEST(Hex, RefusesBadInput) {
  EXPECT_FALSE(FromHex("abc"));
  EXPECT_FALSE(FromHex("zz"));
  EXPECT_EQ(FromHex("0g").error().code(), Code::kInvalidArgument);
}

TEST(Base64, Rfc4648Vectors) {
  const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(Base64Encode(AsBytes(plain[i])), coded[i]);
    auto decoded = Base64Decode(coded[i]);
    ASSERT_TRUE(decoded) << coded[i];
    EXPECT_EQ(AsString(*decoded), plain[i]);
  }
}

TEST(Base64, ToleratesLineBreaks) {
  auto decoded = Base64Decode("Zm9v\r\nYmFy\n");
  ASSERT_TRUE(decoded);
  EXPECT_EQ(AsString(*decoded), "foobar");
}

TEST(Base64, RefusesGarbage) {
  EXPECT_FALSE(Base64Decode("Zm9v!"));
  EXPECT_FALSE(Base64Decode("Zm9"));
  EXPECT_FALSE(Base64Decode("Zg==Zg=="));
  EXPECT_FALSE(Base64Decode("Zh=="));  // non-canonical trailing bits
  EXPECT_FALSE(Base64Decode("Z==="));
}

TEST(ConstantTimeEqual, ComparesContentAndLength) {
  Bytes a = {1, 2, 3}, b = {1, 2, 3}, c = {1, 2, 4}, d = {1, 2};
  EXPECT_TRUE(ConstantTimeEqual(a, b));
  EXPECT_FALSE(ConstantTimeEqual(a, c));
  EXPECT_FALSE(ConstantTimeEqual(a, d));
}

}  // namespace
}  // namespace iotpki
