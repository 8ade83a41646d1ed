#include "iotpki/crypto/secret_file.h"

#include <gtest/gtest.h>

#include "iotpki/crypto/primitives.h"

namespace iotpki::crypto {
namespace {

TEST(SecretFile, SealOpenRoundTrip) {
  Bytes secret = RandomBytes(32);
  auto sealed = SealSecret(secret, "iotpki-test-v1", "pass phrase");
  ASSERT_TRUE(sealed);
  EXPECT_EQ(AsString(ByteView(*sealed).first(8)), "Salted__");
  auto opened = OpenSecret(*sealed, "iotpki-test-v1", "pass phrase");
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ(*opened, secret);
}

TEST(SecretFile, WrongPassphraseAndLabelRefused) {
  auto sealed = SealSecret(RandomBytes(32), "iotpki-test-v1", "pass phrase");
  for (int i = 0; i < 20; ++i) {
    auto wrong = OpenSecret(*sealed, "iotpki-test-v1", "wrong " + std::to_string(i));
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code(), Code::kUnauthenticated);
  }
  EXPECT_FALSE(OpenSecret(*sealed, "other-label", "pass phrase"));
}

TEST(SecretFile, CorruptionRefused) {
  auto sealed = SealSecret(RandomBytes(32), "iotpki-test-v1", "pass phrase");
  Bytes truncated(sealed->begin(), sealed->end() - 5);
  EXPECT_EQ(OpenSecret(truncated, "iotpki-test-v1", "pass phrase").error().code(), Code::kDataLoss);
  Bytes garbage = ToBytes("definitely not an openssl enc file");
  EXPECT_EQ(OpenSecret(garbage, "iotpki-test-v1", "pass phrase").error().code(), Code::kDataLoss);
  EXPECT_FALSE(SealSecret(RandomBytes(32), "x", ""));
}

}  // namespace
}  // namespace iotpki::crypto
