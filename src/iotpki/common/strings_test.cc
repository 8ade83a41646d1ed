#include "iotpki/common/strings.h"

#include <gtest/gtest.h>

#include <string>

namespace iotpki {
namespace {

TEST(Strings, ToLowerAsciiTouchesOnlyAsciiLetters) {
  EXPECT_EQ(ToLowerAscii("AbC-9_Z@[`"), "abc-9_z@[`");
  EXPECT_EQ(ToLowerAscii(""), "");
  // UTF-8 bytes (here "É", C3 89) pass through; a locale-dependent tolower could change them.
  EXPECT_EQ(ToLowerAscii("\xc3\x89T\xc3\xa9"), "\xc3\x89t\xc3\xa9");
}

TEST(Strings, TrimRemovesAsciiWhiteSpaceAtBothEnds) {
  EXPECT_EQ(Trim("  a b\t"), "a b");
  EXPECT_EQ(Trim("\r\n\v\fx\r\n"), "x");
  EXPECT_EQ(Trim(" \t "), "");
  EXPECT_EQ(Trim(""), "");
  EXPECT_EQ(Trim("a"), "a");
  // A no-break space (C2 A0) is not ASCII white space.
  EXPECT_EQ(Trim("\xc2\xa0x"), "\xc2\xa0x");
}

TEST(Strings, Utf8LengthCountsCodePoints) {
  EXPECT_EQ(Utf8Length(""), 0u);
  EXPECT_EQ(Utf8Length("abc"), 3u);
  EXPECT_EQ(Utf8Length(std::string_view("a\0b", 3)), 3u);  // NUL is valid UTF-8
  EXPECT_EQ(Utf8Length("\xc3\xa9"), 1u);                   // U+00E9
  EXPECT_EQ(Utf8Length("\xe2\x82\xac!"), 2u);              // U+20AC
  EXPECT_EQ(Utf8Length("\xf0\x9f\x98\x80"), 1u);           // U+1F600
  EXPECT_EQ(Utf8Length("\xf4\x8f\xbf\xbf"), 1u);           // U+10FFFF, the last code point
  EXPECT_EQ(Utf8Length("\xed\x9f\xbf"), 1u);               // U+D7FF, just below the surrogates
  EXPECT_TRUE(IsValidUtf8(AsBytes("\xc2\x80")));
}

TEST(Strings, Utf8RefusesMalformedInput) {
  for (std::string_view bad : {
           "\x80",                  // a lone continuation byte
           "\xc3",                  // truncated
           "a\xe2\x82",             // truncated at the end
           "\xe2\x28\xa1",          // a non-continuation byte inside
           "\xc0\x80",              // overlong NUL
           "\xc1\xbf",              // overlong
           "\xe0\x9f\xbf",          // overlong 3-byte form
           "\xf0\x8f\xbf\xbf",      // overlong 4-byte form
           "\xed\xa0\x80",          // U+D800, a surrogate
           "\xed\xbf\xbf",          // U+DFFF
           "\xf4\x90\x80\x80",      // U+110000
           "\xf8\x88\x80\x80\x80",  // 5-byte form
           "\xff",
       }) {
    EXPECT_FALSE(Utf8Length(bad)) << ToHex(AsBytes(bad));
    EXPECT_FALSE(IsValidUtf8(bad)) << ToHex(AsBytes(bad));
  }
}

TEST(Strings, Utf8SequenceLengthFindsTheNextCodePoint) {
  std::string_view s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x80";
  EXPECT_EQ(Utf8SequenceLength(s, 0), 1u);
  EXPECT_EQ(Utf8SequenceLength(s, 1), 2u);
  EXPECT_EQ(Utf8SequenceLength(s, 2), 0u);  // inside a sequence
  EXPECT_EQ(Utf8SequenceLength(s, 3), 3u);
  EXPECT_EQ(Utf8SequenceLength(s, 6), 4u);
  EXPECT_EQ(Utf8SequenceLength(s, 10), 0u);  // a stray continuation byte
  EXPECT_EQ(Utf8SequenceLength(s, 11), 0u);  // past the end
  EXPECT_EQ(Utf8SequenceLength("\xe2\x82", 0), 0u);
}

}  // namespace
}  // namespace iotpki
