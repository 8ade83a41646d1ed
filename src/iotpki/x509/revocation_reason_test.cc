#include "iotpki/x509/revocation_reason.h"

#include <gtest/gtest.h>

namespace iotpki::x509 {
namespace {

TEST(RevocationReason, NamesAndCodesRoundTrip) {
  int known = 0;
  for (int64_t code = -1; code <= 11; ++code) {
    auto reason = RevocationReasonFromCode(code);
    if (!reason) continue;
    ++known;
    EXPECT_EQ(static_cast<int64_t>(*reason), code);
    auto parsed = ParseRevocationReason(RevocationReasonName(*reason));
    ASSERT_TRUE(parsed) << code;
    EXPECT_EQ(*parsed, *reason);
  }
  EXPECT_EQ(known, 10);  // 0..10 without the unassigned 7
  EXPECT_FALSE(RevocationReasonFromCode(7));
  EXPECT_EQ(RevocationReasonName(RevocationReason::kCaCompromise), "cACompromise");
  EXPECT_EQ(RevocationReasonName(RevocationReason::kRemoveFromCrl), "removeFromCRL");
}

TEST(RevocationReason, ParseRefusesOtherSpellings) {
  for (std::string_view bad : {"", "KeyCompromise", "keycompromise", "keyCompromise ", "7"}) {
    auto r = ParseRevocationReason(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    EXPECT_EQ(r.error().message(), "unknown revocation reason '" + std::string(bad) + "'");
  }
}

}  // namespace
}  // namespace iotpki::x509
