#include "iotpki/c509/cbor.h"

#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <string>

#include "iotpki/common/strings.h"

namespace iotpki::cbor {
namespace {

Bytes Hex(std::string_view hex) {
  auto b = FromHex(hex);
  EXPECT_TRUE(b) << hex;
  return b ? *b : Bytes{};
}

std::string Enc(const Item& item) { return ToHex(item.Encode()); }

// The refusal message for `hex`, which must be refused.
std::string Refusal(std::string_view hex) {
  auto r = Decode(Hex(hex));
  EXPECT_FALSE(r) << hex << " decoded as " << (r ? Diagnostic(*r) : "");
  if (r) return "";
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  return r.error().message();
}

TEST(Cbor, IntegersUseTheShortestHead) {
  EXPECT_EQ(Enc(Item::Uint(0)), "00");
  EXPECT_EQ(Enc(Item::Uint(23)), "17");
  EXPECT_EQ(Enc(Item::Uint(24)), "1818");
  EXPECT_EQ(Enc(Item::Uint(255)), "18ff");
  EXPECT_EQ(Enc(Item::Uint(256)), "190100");
  EXPECT_EQ(Enc(Item::Uint(65535)), "19ffff");
  EXPECT_EQ(Enc(Item::Uint(65536)), "1a00010000");
  EXPECT_EQ(Enc(Item::Uint(0xffffffff)), "1affffffff");
  EXPECT_EQ(Enc(Item::Uint(0x100000000)), "1b0000000100000000");
  EXPECT_EQ(Enc(Item::Uint(std::numeric_limits<uint64_t>::max())), "1bffffffffffffffff");
  EXPECT_EQ(Enc(Item::Int(-1)), "20");
  EXPECT_EQ(Enc(Item::Int(-24)), "37");
  EXPECT_EQ(Enc(Item::Int(-25)), "3818");
  EXPECT_EQ(Enc(Item::Int(-256)), "38ff");
  EXPECT_EQ(Enc(Item::Int(std::numeric_limits<int64_t>::min())), "3b7fffffffffffffff");
  EXPECT_EQ(Enc(Item::NegativeRaw(std::numeric_limits<uint64_t>::max())), "3bffffffffffffffff");
}

TEST(Cbor, OtherTypes) {
  EXPECT_EQ(Enc(Item::ByteString(Hex("01f50d"))), "4301f50d");
  EXPECT_EQ(Enc(Item::TextString("RFC test CA")), "6b5246432074657374204341");
  EXPECT_EQ(Enc(Item::TextString("")), "60");
  EXPECT_EQ(Enc(Item::Array({})), "80");
  EXPECT_EQ(Enc(Item::Array({Item::Int(-4), Item::Int(-1)})), "822320");
  EXPECT_EQ(Enc(Item::Tagged(48, Item::ByteString(Hex("0123456789ab")))), "d830460123456789ab");
  EXPECT_EQ(Enc(Item::Bool(false)), "f4");
  EXPECT_EQ(Enc(Item::Bool(true)), "f5");
  EXPECT_EQ(Enc(Item::Null()), "f6");
  EXPECT_EQ(Enc(Item::Undefined()), "f7");
  EXPECT_EQ(Enc(Item()), "f7");
  Bytes long_bytes(300, 0xaa);
  EXPECT_EQ(ToHex(Item::ByteString(long_bytes).Encode()).substr(0, 6), "59012c");
}

TEST(Cbor, DecodeRoundTripsEveryType) {
  for (std::string_view hex :
       {"00",
        "17",
        "1818",
        "190100",
        "1a00010000",
        "1b0000000100000000",
        "1bffffffffffffffff",
        "20",
        "3818",
        "3bffffffffffffffff",
        "40",
        "4301f50d",
        "60",
        "63616263",
        "80",
        "8301820203f6",
        "c11a514b67b0",
        "d830460123456789ab",
        "f4",
        "f5",
        "f6",
        "f7",
        "8b024301f50d006b52464320746573742043411a63b0cd001a6955b900d830460123456789ab01"
        "582102b1216ab96e5b3b3340f5bdf02e693f16213a04525ed44450b1019c2dfd3838ab0140"}) {
    auto item = Decode(Hex(hex));
    ASSERT_TRUE(item) << hex << ": " << item.error().message();
    EXPECT_EQ(ToHex(item->Encode()), hex);
  }
}

TEST(Cbor, Accessors) {
  auto item = Decode(Hex("8320d83043010203f6"));
  ASSERT_TRUE(item);
  ASSERT_TRUE(item->is_array());
  ASSERT_EQ(item->items().size(), 3u);
  EXPECT_EQ(item->items()[0].AsInt(), -1);
  EXPECT_TRUE(item->items()[1].is_tag());
  EXPECT_EQ(item->items()[1].tag(), 48u);
  EXPECT_EQ(ToHex(item->items()[1].tagged().bytes()), "010203");
  EXPECT_TRUE(item->items()[2].is_null());
  EXPECT_FALSE(Item::Uint(std::numeric_limits<uint64_t>::max()).AsInt());
  EXPECT_FALSE(Item::NegativeRaw(std::numeric_limits<uint64_t>::max()).AsInt());
  EXPECT_EQ(Item::NegativeRaw(uint64_t{std::numeric_limits<int64_t>::max()}).AsInt(),
            std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(Item::TextString("1").AsInt());
}

TEST(Cbor, Diagnostic) {
  auto item = Decode(Hex("86036b5246432074657374204341d830460123456789ab20f6f7"));
  ASSERT_TRUE(item);
  EXPECT_EQ(Diagnostic(*item), "[3, \"RFC test CA\", 48(h'0123456789ab'), -1, null, undefined]");
  EXPECT_EQ(Diagnostic(Item::NegativeRaw(std::numeric_limits<uint64_t>::max())),
            "-18446744073709551616");
  EXPECT_EQ(Diagnostic(Item::TextString("a\"b")), "\"a\\\"b\"");
}

TEST(Cbor, RefusesTruncation) {
  for (std::string_view hex : {"", "18", "19ff", "1a0000", "1b00000000000000", "430102", "62",
                               "8201", "d8", "d830", "c1"}) {
    EXPECT_NE(Refusal(hex).find("truncated"), std::string::npos) << hex;
  }
  // Every strict prefix of a valid item.
  Bytes full = Hex("8301820203d8304401020304");
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_FALSE(Decode(ByteView(full.data(), n))) << n;
  }
}

TEST(Cbor, RefusesIndefiniteLengths) {
  for (std::string_view hex : {"5f41ff", "7f6161ff", "9f01ff", "bfff", "ff", "1f", "3f"}) {
    std::string m = Refusal(hex);
    EXPECT_TRUE(m.find("indefinite") != std::string::npos) << hex << ": " << m;
  }
}

TEST(Cbor, RefusesNonShortestHeads) {
  for (std::string_view hex : {"1817", "190017", "1900ff", "1a0000ffff", "1b00000000ffffffff",
                               "3817", "5801aa", "780161", "9800", "d81730", "d9003000"}) {
    EXPECT_NE(Refusal(hex).find("non-shortest"), std::string::npos) << hex;
  }
}

TEST(Cbor, RefusesFloatsMapsAndOtherSimpleValues) {
  EXPECT_NE(Refusal("f93c00").find("floating-point"), std::string::npos);
  EXPECT_NE(Refusal("fa3f800000").find("floating-point"), std::string::npos);
  EXPECT_NE(Refusal("fb3ff0000000000000").find("floating-point"), std::string::npos);
  EXPECT_NE(Refusal("f820").find("simple value"), std::string::npos);
  EXPECT_NE(Refusal("e0").find("simple value"), std::string::npos);
  EXPECT_NE(Refusal("f3").find("simple value"), std::string::npos);
  EXPECT_NE(Refusal("a0").find("maps"), std::string::npos);
  EXPECT_NE(Refusal("a10102").find("maps"), std::string::npos);
  for (std::string_view hex : {"1c", "3d", "5e", "fc"}) {
    EXPECT_NE(Refusal(hex).find("reserved"), std::string::npos) << hex;
  }
}

TEST(Cbor, RefusesHugeLengthsWithoutAllocating) {
  EXPECT_NE(Refusal("5bffffffffffffffff").find("length exceeds"), std::string::npos);
  EXPECT_NE(Refusal("7b7fffffffffffffff61").find("length exceeds"), std::string::npos);
  EXPECT_NE(Refusal("9bffffffffffffffff00").find("length exceeds"), std::string::npos);
  EXPECT_NE(Refusal("9a0001000000").find("length exceeds"), std::string::npos);
  const Bytes huge_array = Hex("9bffffffffffffffff");
  Reader r(huge_array);
  EXPECT_FALSE(r.ArrayHeader());
}

TEST(Cbor, RefusesTrailingBytes) {
  EXPECT_NE(Refusal("0000").find("trailing"), std::string::npos);
  EXPECT_NE(Refusal("80f6").find("trailing"), std::string::npos);
  auto seq = DecodeSequence(Hex("0000"));
  ASSERT_TRUE(seq);
  EXPECT_EQ(seq->size(), 2u);
  auto empty = DecodeSequence({});
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(Cbor, RefusesDeepNesting) {
  Bytes ok(kMaxDepth - 1, 0x81);
  ok.push_back(0x00);
  EXPECT_TRUE(Decode(ok));
  Bytes deep(kMaxDepth, 0x81);
  deep.push_back(0x00);
  auto r = Decode(deep);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("nesting"), std::string::npos);
  Bytes tags(kMaxDepth, 0xc1);
  tags.push_back(0x00);
  EXPECT_FALSE(Decode(tags));
  // A hostile input nesting far deeper than the limit does not recurse far.
  Bytes very_deep(100000, 0x81);
  EXPECT_FALSE(Decode(very_deep));
}

TEST(Cbor, RefusesInvalidUtf8) {
  for (std::string_view hex : {"61ff", "61c0", "62c080", "62c1bf", "63e08080", "63eda080",
                               "64f4908080", "64f0808080", "62e282", "61f8", "6180"}) {
    EXPECT_NE(Refusal(hex).find("UTF-8"), std::string::npos) << hex;
  }
  EXPECT_TRUE(Decode(Hex("62c3a9")));      // é
  EXPECT_TRUE(Decode(Hex("63e282ac")));    // €
  EXPECT_TRUE(Decode(Hex("64f09f9880")));  // U+1F600
  EXPECT_TRUE(Decode(Hex("64f48fbfbf")));  // U+10FFFF
  EXPECT_TRUE(Decode(Hex("63efbfbf")));    // U+FFFF
}

TEST(Cbor, MessagesNameTheOffset) {
  auto r = Decode(Hex("830102f9"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("offset 3"), std::string::npos) << r.error().message();
}

TEST(Cbor, ReaderReadsHeadersAndItems) {
  const Bytes data = Hex("820343010203");
  Reader r(data);
  auto n = r.ArrayHeader();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(r.offset(), 1u);
  auto a = r.Next();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->AsInt(), 3);
  auto b = r.Next();
  ASSERT_TRUE(b);
  EXPECT_EQ(r.offset(), 6u);
  EXPECT_TRUE(r.empty());
  const Bytes one = Hex("01");
  Reader not_array(one);
  EXPECT_FALSE(not_array.ArrayHeader());
  // A count above the bytes left is refused before anything is reserved.
  const Bytes eleven = Hex("8b0343010203");
  Reader too_long(eleven);
  EXPECT_FALSE(too_long.ArrayHeader());
}

TEST(Cbor, RandomInputNeverCrashesAndAcceptedInputIsCanonical) {
  std::mt19937_64 rng(8949);
  size_t accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    Bytes data(rng() % 24);
    for (auto& b : data) {
      // Bias towards small heads and structure so that some inputs parse.
      const uint64_t r = rng();
      b = (r & 3) == 0 ? static_cast<uint8_t>(r >> 8) : static_cast<uint8_t>((r >> 8) % 0x9c);
    }
    auto item = Decode(data);
    if (item) {
      ++accepted;
      EXPECT_EQ(item->Encode(), data);
    }
  }
  EXPECT_GT(accepted, 100u);
}

TEST(Cbor, Utf8Checker) {
  EXPECT_TRUE(IsValidUtf8(AsBytes("plain ascii")));
  EXPECT_TRUE(IsValidUtf8(AsBytes("Ünïcødé")));
  EXPECT_FALSE(IsValidUtf8(Hex("eda080")));  // surrogate
  EXPECT_FALSE(IsValidUtf8(Hex("c0af")));    // overlong '/'
}

}  // namespace
}  // namespace iotpki::cbor
