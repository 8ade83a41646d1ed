#include "iotpki/common/bytes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

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

// Every byte value in both places of a pair, against the C library's idea of a hex digit.
TEST(Hex, DecodesEveryCharacterLikeStrtol) {
  for (int v = 0; v < 256; ++v) {
    char c = static_cast<char>(v);
    bool digit = std::isxdigit(static_cast<unsigned char>(c)) != 0;
    int expected =
        digit ? static_cast<int>(std::strtol(std::string(1, c).c_str(), nullptr, 16)) : -1;
    EXPECT_EQ(HexDigitValue(c), expected) << "byte " << v;
    for (bool high : {true, false}) {
      std::string pair = high ? std::string{c, '7'} : std::string{'7', c};
      uint8_t out[1] = {0};
      EXPECT_EQ(FromHexInto(pair, out), digit) << "byte " << v << (high ? " first" : " second");
      if (digit) {
        EXPECT_EQ(out[0], high ? (expected << 4 | 7) : (7 << 4 | expected));
      }
    }
  }
}

TEST(Hex, DecodesIntoAFixedBufferOfExactlyHalfTheDigits) {
  uint8_t out[4] = {};
  ASSERT_TRUE(FromHexInto("0001ABff", out));
  EXPECT_EQ(Bytes(out, out + 4), (Bytes{0x00, 0x01, 0xab, 0xff}));
  EXPECT_FALSE(FromHexInto("0001ab", out));      // too short
  EXPECT_FALSE(FromHexInto("0001abff00", out));  // too long
  EXPECT_FALSE(FromHexInto("0001abf", out));
  EXPECT_FALSE(FromHexInto("0001ab f", out));
  EXPECT_TRUE(FromHexInto("", std::span<uint8_t>()));
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

TEST(Bytes, BytesLessIsLexicographic) {
  BytesLess less;
  EXPECT_TRUE(less(Bytes{}, Bytes{0x00}));
  EXPECT_FALSE(less(Bytes{0x00}, Bytes{}));
  EXPECT_TRUE(less(Bytes{0x01, 0xff}, Bytes{0x02}));
  EXPECT_TRUE(less(Bytes{0x7f}, Bytes{0x80}));  // unsigned, not char's sign
  EXPECT_TRUE(less(Bytes{0x01}, Bytes{0x01, 0x00}));
  EXPECT_FALSE(less(Bytes{0x01, 0x02}, Bytes{0x01, 0x02}));
  std::vector<Bytes> v = {{0x02}, {0x01, 0x05}, {}, {0x01}, {0xff}};
  std::sort(v.begin(), v.end(), less);
  EXPECT_EQ(v, (std::vector<Bytes>{{}, {0x01}, {0x01, 0x05}, {0x02}, {0xff}}));
}

}  // namespace
}  // namespace iotpki
