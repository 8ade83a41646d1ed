#include "iotpki/store/validate.h"

#include <gtest/gtest.h>

namespace iotpki::store {
namespace {

TEST(Validate, LowerHex) {
  EXPECT_TRUE(IsLowerHex("00ff"));
  EXPECT_FALSE(IsLowerHex(""));
  EXPECT_FALSE(IsLowerHex("0"));
  EXPECT_FALSE(IsLowerHex("00FF"));
  EXPECT_FALSE(IsLowerHex("0g"));
  EXPECT_EQ(ToLowerAscii("AbC-9"), "abc-9");
  // Every byte value, in the first and in the last place.
  for (int v = 0; v < 256; ++v) {
    char c = static_cast<char>(v);
    bool lower_digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    EXPECT_EQ(IsLowerHex(std::string{c, '0'}), lower_digit) << "byte " << v;
    EXPECT_EQ(IsLowerHex(std::string{'a', 'b', '0', c}), lower_digit) << "byte " << v;
  }
}

TEST(Validate, CursorsRoundTripAndDoNotMix) {
  auto d = DecodeDeviceSeqCursor(EncodeCursor(DeviceSeqCursor{9000000001}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->seq, 9000000001);
  auto e = DecodeExpiringCursor(EncodeCursor(ExpiringCursor{-5, "0abc"}));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->not_after, -5);
  EXPECT_EQ(e->cert_serial, "0abc");
  EXPECT_FALSE(DecodeExpiringCursor(EncodeCursor(DeviceSeqCursor{7})));
  EXPECT_FALSE(DecodeDeviceSeqCursor(EncodeCursor(ExpiringCursor{1, "00"})));
  // "d1." is the device_id cursor of schema version 2: refused, not misread.
  for (std::string_view bad :
       {"", "e1.", "e1.12", "e1.x.00", "e1.1.0", "e1.1.ZZ", "d1.abc", "d1.12", "d2.", "d2.-1",
        "d2.1x", "d2.+1", "d2.99999999999999999999", "e1.99999999999999999999.00"}) {
    EXPECT_FALSE(DecodeExpiringCursor(bad)) << bad;
    EXPECT_FALSE(DecodeDeviceSeqCursor(bad)) << bad;
  }
}

TEST(Validate, TextMustBeUtf8WithoutNul) {
  auto audit = [](std::string details) {
    return ValidateBatch(WriteBatch().AppendAudit(AuditEvent{"a", "b", "c", std::move(details)}));
  };
  EXPECT_TRUE(
      audit("{\"name\":\"Gr\xc3\xbc\xc3\x9f"
            "e \xe2\x82\xac \xf0\x9f\x94\x91\"}"));
  EXPECT_FALSE(audit(std::string("a\0b", 3)));
  EXPECT_FALSE(audit("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(audit("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(audit("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(audit("\xe2\x82"));          // truncated
  EXPECT_FALSE(audit(std::string(kMaxDetailsBytes + 1, 'x')));
}

TEST(Validate, ErrorsNameTheOperation) {
  WriteBatch batch;
  batch.AppendAudit(AuditEvent{"a", "b", "", ""});
  batch.AppendAudit(AuditEvent{"", "b", "", ""});
  auto r = ValidateBatch(batch);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message(), "batch operation 2: audit actor is empty");
}

TEST(Validate, EnumNamesRoundTrip) {
  for (auto s : {DeviceState::kManufactured, DeviceState::kActive, DeviceState::kSuspended,
                 DeviceState::kDecommissioned}) {
    EXPECT_EQ(*ParseDeviceState(DeviceStateName(s)), s);
  }
  for (auto p : {CertProfile::kRoot, CertProfile::kIssuingCa, CertProfile::kIDevId,
                 CertProfile::kLDevId, CertProfile::kServer}) {
    EXPECT_EQ(*ParseCertProfile(CertProfileName(p)), p);
  }
  EXPECT_EQ(*ParseRevocationReason("keyCompromise"), RevocationReason::kKeyCompromise);
  EXPECT_FALSE(ParseDeviceState("Active"));
  EXPECT_FALSE(ParseRevocationReason("certificateHold"));
  EXPECT_FALSE(ParseRevocationReason("removeFromCRL"));
  EXPECT_FALSE(ParseRevocationReason("nonsense"));
}

TEST(Validate, RevocationIsFinal) {
  WriteBatch hold;
  hold.RevokeCertificate("0a", RevocationReason::kCertificateHold);
  auto r = ValidateBatch(hold);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message(),
            "batch operation 1: revocation reason certificateHold is not supported: a revocation "
            "is final");
  WriteBatch superseded;
  superseded.RevokeCertificate("0a", RevocationReason::kSuperseded);
  EXPECT_TRUE(ValidateBatch(superseded));
}

}  // namespace
}  // namespace iotpki::store
