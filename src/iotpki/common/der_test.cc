#include "iotpki/common/der.h"

#include <gtest/gtest.h>

namespace iotpki::der {
namespace {

TEST(Der, OidRoundTrip) {
  EXPECT_EQ(ToHex(Oid("2.5.4.3")), "0603550403");
  EXPECT_EQ(ToHex(Oid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  EXPECT_EQ(OidToText(OidContent("1.3.6.1.5.5.7.8.4")), "1.3.6.1.5.5.7.8.4");
  EXPECT_TRUE(OidContent("1").empty());
  EXPECT_TRUE(OidContent("1.2.x").empty());
}

TEST(Der, OidEncodingFollowsX690) {
  // X.690 8.19.5's example: the first two arcs share one subidentifier, 2 * 40 + 999 = 1079.
  EXPECT_EQ(ToHex(Oid("2.999.3")), "0603883703");
  EXPECT_EQ(OidToText(OidContent("2.999.3")), "2.999.3");
  EXPECT_EQ(ToHex(Oid("1.2.18446744073709551615")), "060b2a81ffffffffffffffff7f");
  EXPECT_EQ(OidToText(OidContent("1.2.18446744073709551615")), "1.2.18446744073709551615");
  for (std::string_view bad :
       {"", "1", "1.", ".1", "1..2", "1.2.", "3.1", "0.40", "1.40", "1.2.-3", "+1.2", "1.2 ",
        "1.2.18446744073709551616", "2.18446744073709551600"}) {
    EXPECT_TRUE(OidContent(bad).empty()) << bad;
    EXPECT_EQ(ToHex(Oid(bad)), "0600") << bad;
  }
  EXPECT_EQ(ToHex(Oid("2.100")), "06028134");  // 180: a second arc over 39 under arc 2
}

TEST(Der, IntegersAreMinimalAndPositive) {
  Bytes high = {0x80, 0x01};
  EXPECT_EQ(ToHex(UnsignedInteger(high)), "0203008001");
  Bytes zeros = {0x00, 0x00, 0x7f};
  EXPECT_EQ(ToHex(UnsignedInteger(zeros)), "02017f");
  EXPECT_EQ(ToHex(SmallInteger(0)), "020100");
  EXPECT_EQ(ToHex(SmallInteger(128)), "02020080");
  EXPECT_EQ(ToHex(SmallInteger(-1)), "0201ff");
}

TEST(Der, LongLengths) {
  Bytes big(300, 0xaa);
  Bytes tlv = OctetString(big);
  EXPECT_EQ(tlv[0], 0x04);
  EXPECT_EQ(tlv[1], 0x82);
  Reader r(tlv);
  auto e = r.Expect(kOctetString);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->contents.size(), 300u);
  EXPECT_TRUE(r.empty());
}

TEST(Der, ReaderRefusesMalformed) {
  Bytes truncated = {0x30, 0x05, 0x01};
  EXPECT_FALSE(Reader(truncated).Next());
  Bytes indefinite = {0x30, 0x80, 0x00, 0x00};
  EXPECT_FALSE(Reader(indefinite).Next());
  Bytes nonminimal = {0x04, 0x81, 0x01, 0x00};
  EXPECT_FALSE(Reader(nonminimal).Next());
  Bytes wrong = {0x02, 0x01, 0x00};
  EXPECT_FALSE(Reader(wrong).Expect(kSequence));
}

TEST(Der, Times) {
  auto t = Time(1672531200);  // 2023-01-01
  EXPECT_EQ(AsString(ByteView(t).subspan(2)), "230101000000Z");
  Reader r(t);
  EXPECT_EQ(*ParseTime(*r.Next()), 1672531200);
  auto far = Time(253402300799);
  EXPECT_EQ(far[0], kGeneralizedTime);
  EXPECT_EQ(AsString(ByteView(far).subspan(2)), "99991231235959Z");
  Reader r2(far);
  EXPECT_EQ(*ParseTime(*r2.Next()), 253402300799);
  auto y2050 = Time(2524608000);  // 2050-01-01
  EXPECT_EQ(y2050[0], kGeneralizedTime);
}

// The allocation-free GeneralizedTime writer agrees with Time() wherever Time() writes a
// GeneralizedTime, parses back to its input on either side of the epoch, and refuses years past
// 9999 without writing anything.
TEST(Der, AppendGeneralizedTime) {
  for (int64_t t : {int64_t{2524608000}, int64_t{2524608000} + 86399, int64_t{4107542400},
                    int64_t{253402300799}}) {
    Bytes out;
    ASSERT_TRUE(AppendGeneralizedTime(out, t));
    EXPECT_EQ(out, Time(t)) << t;
  }
  for (int64_t t : {int64_t{0}, int64_t{-1}, int64_t{951782400}, int64_t{1672531199}}) {
    Bytes out;
    ASSERT_TRUE(AppendGeneralizedTime(out, t));
    EXPECT_EQ(out.size(), kGeneralizedTimeSize);
    Reader r(out);
    EXPECT_EQ(*ParseTime(*r.Next()), t) << t;
  }
  Bytes out;
  EXPECT_FALSE(AppendGeneralizedTime(out, 253402300800));
  EXPECT_TRUE(out.empty());
}

TEST(Der, HeaderAndTlvSize) {
  for (size_t n : {size_t{0}, size_t{127}, size_t{128}, size_t{255}, size_t{256}, size_t{70000}}) {
    Bytes out;
    AppendHeader(out, kOctetString, n);
    EXPECT_EQ(out.size() + n, TlvSize(n)) << n;
    EXPECT_EQ(Tlv(kOctetString, Bytes(n)), [&] {
      Bytes whole = out;
      whole.resize(out.size() + n);
      return whole;
    }()) << n;
  }
}

}  // namespace
}  // namespace iotpki::der
