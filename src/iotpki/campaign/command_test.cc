#include "iotpki/campaign/command.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "iotpki/common/bytes.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::campaign {
namespace {

using x509::ProfileKind;
using x509::testing::kNow;
using x509::testing::Must;
using x509::testing::NewKey;

std::string B64Url(std::string_view text) {
  std::string s =
      Base64Encode(ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

class CommandTest : public ::testing::Test {
 protected:
  x509::Certificate CommandCert(const x509::testing::Pki& pki, const crypto::PrivateKey& key) {
    x509::CertificateTemplate t =
        x509::NewTemplate(ProfileKind::kCommandSigner, key.public_key(), kNow, pki.policy);
    t.subject = {.organization = "Acme Devices", .common_name = "iotpki-server"};
    return Must(pki.IssueFor(t), "command cert");
  }

  Command Rotate() const {
    return {.campaign = "q3",
            .job = 7,
            .device_id = me_,
            .mode = "rekey",
            .nonce = NewNonce(),
            .not_after = kNow + 3600};
  }
  std::string Signed(const Command& c) { return Must(SignCommand(c, key_, cert_), "sign"); }
  Result<Command> Verify(std::string_view envelope, int64_t now = kNow + 60) {
    return VerifyCommand(envelope, pki_.ops, me_, now, cache_);
  }
  static void ExpectRefused(const Result<Command>& r, Code code, std::string_view text) {
    ASSERT_FALSE(r) << "accepted";
    EXPECT_EQ(r.error().code(), code) << r.error().ToString();
    EXPECT_NE(r.error().message().find(text), std::string::npos) << r.error().message();
  }

  x509::testing::Pki pki_;
  crypto::PrivateKey key_ = NewKey();
  x509::Certificate cert_ = CommandCert(pki_, key_);
  std::string me_ = x509::testing::Identity("SN-ME").device_id;
  std::string other_ = x509::testing::Identity("SN-OTHER").device_id;
  InMemoryReplayCache cache_;
};

TEST_F(CommandTest, TheProfileCarriesTheCommandPurposeAndClientAuth) {
  EXPECT_EQ(cert_.extended_key_usage(),
            (std::vector<std::string>{std::string(x509::kOidCommandSigning), "clientAuth"}));
  EXPECT_EQ(cert_.common_name(), "iotpki-server");
  EXPECT_FALSE(cert_.is_ca());
}

TEST_F(CommandTest, ASignedCommandVerifies) {
  Command c = Rotate();
  std::string env = Signed(c);
  EXPECT_EQ(std::count(env.begin(), env.end(), '.'), 2);
  auto got = Verify(env);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(*got, c);
  EXPECT_EQ(cache_.size(), 1u);
}

TEST_F(CommandTest, OpensslVerifiesTheSignatureToo) {
  // The signing input and r||s as RFC 7515 defines them: rebuild the DER signature by hand and
  // check it with the certificate's key through OpenSSL, independently of VerifyCommand.
  std::string env = Signed(Rotate());
  size_t dot2 = env.rfind('.');
  std::string sig = env.substr(dot2 + 1);
  for (char& ch : sig) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  while (sig.size() % 4) sig += '=';
  Bytes raw = Must(Base64Decode(sig), "sig");
  ASSERT_EQ(raw.size(), 64u);
  auto integer = [](const uint8_t* p) {
    Bytes v(p, p + 32);
    while (v.size() > 1 && v[0] == 0 && v[1] < 0x80) v.erase(v.begin());
    if (v[0] >= 0x80) v.insert(v.begin(), 0);
    // Sized first, then copied: GCC 12 at -O3 reports a false -Warray-bounds for an insert
    // after a two-byte initializer list.
    Bytes out(2 + v.size());
    out[0] = 0x02;
    out[1] = static_cast<uint8_t>(v.size());
    std::copy(v.begin(), v.end(), out.begin() + 2);
    return out;
  };
  Bytes r = integer(raw.data()), s = integer(raw.data() + 32);
  Bytes der(2 + r.size() + s.size());
  der[0] = 0x30;
  der[1] = static_cast<uint8_t>(r.size() + s.size());
  std::copy(s.begin(), s.end(), std::copy(r.begin(), r.end(), der.begin() + 2));
  std::string input = env.substr(0, dot2);
  EXPECT_TRUE(cert_.public_key().Verify(
      ByteView(reinterpret_cast<const uint8_t*>(input.data()), input.size()), der,
      crypto::DigestAlgorithm::kSha256));
}

TEST_F(CommandTest, UnsignedIsRefused) {
  std::string payload = B64Url(CommandJson(Rotate()));
  ExpectRefused(Verify(B64Url(R"({"alg":"none"})") + "." + payload + "."), Code::kUnauthenticated,
                "unsigned");
  std::string env = Signed(Rotate());
  ExpectRefused(Verify(env.substr(0, env.rfind('.') + 1)), Code::kUnauthenticated, "unsigned");
  ExpectRefused(Verify(B64Url(R"({"alg":"HS256"})") + "." + payload + ".c2ln"),
                Code::kUnauthenticated, "not ES256");
}

TEST_F(CommandTest, ABadSignatureIsRefused) {
  std::string env = Signed(Rotate());
  size_t at = env.rfind('.') + 10;
  env[at] = env[at] == 'A' ? 'B' : 'A';
  ExpectRefused(Verify(env), Code::kUnauthenticated, "bad signature");
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(CommandTest, AnAlteredPayloadIsRefused) {
  std::string env = Signed(Rotate());
  Command forged = Rotate();
  forged.mode = "renew";
  size_t dot1 = env.find('.'), dot2 = env.rfind('.');
  std::string altered = env.substr(0, dot1 + 1) + B64Url(CommandJson(forged)) + env.substr(dot2);
  ExpectRefused(Verify(altered), Code::kUnauthenticated, "bad signature");
}

TEST_F(CommandTest, AWrongSignerIsRefused) {
  // Another hierarchy's command certificate: does not chain to our operational CA.
  x509::testing::Pki other;
  crypto::PrivateKey other_key = NewKey();
  x509::Certificate foreign = CommandCert(other, other_key);
  ExpectRefused(Verify(Must(SignCommand(Rotate(), other_key, foreign), "sign")),
                Code::kUnauthenticated, "unknown_issuer");
  // Our operational CA, but a device's certificate: no command-signing purpose.
  crypto::PrivateKey device_key = NewKey();
  x509::Certificate ldevid = Must(
      pki_.IssueFor(pki_.DeviceTemplate(ProfileKind::kLDevID, device_key.public_key())), "ldevid");
  ExpectRefused(Verify(Must(SignCommand(Rotate(), device_key, ldevid), "sign")),
                Code::kPermissionDenied, "command-signing");
  // The right certificate, the wrong key.
  ExpectRefused(Verify(Must(SignCommand(Rotate(), device_key, cert_), "sign")),
                Code::kUnauthenticated, "bad signature");
  // The command certificate has expired.
  ExpectRefused(Verify(Signed(Rotate()), cert_.not_after() + 1), Code::kUnauthenticated, "expired");
  // No certificate at all.
  std::string payload = B64Url(CommandJson(Rotate()));
  ExpectRefused(Verify(B64Url(R"({"alg":"ES256"})") + "." + payload + ".c2ln"),
                Code::kUnauthenticated, "x5c");
}

TEST_F(CommandTest, ACommandForAnotherDeviceIsRefused) {
  Command c = Rotate();
  c.device_id = other_;
  ExpectRefused(Verify(Signed(c)), Code::kPermissionDenied, "another device");
}

TEST_F(CommandTest, AnExpiredCommandIsRefused) {
  Command c = Rotate();
  EXPECT_TRUE(Verify(Signed(c), c.not_after));  // Valid up to and including not_after.
  c.nonce = NewNonce();
  ExpectRefused(Verify(Signed(c), c.not_after + 1), Code::kFailedPrecondition, "expired");
}

TEST_F(CommandTest, AReplayedCommandIsRefused) {
  std::string env = Signed(Rotate());
  ASSERT_TRUE(Verify(env));
  ExpectRefused(Verify(env), Code::kAlreadyExists, "replayed");
}

TEST_F(CommandTest, MalformedEnvelopesAreRefused) {
  std::string good_header = B64Url(R"({"alg":"ES256"})");
  for (std::string env :
       {std::string(""), std::string("a.b"), std::string("a.b.c.d"), std::string("!!.b.c"),
        good_header + ".e30.", good_header + "." + B64Url("{not json") + ".c2ln",
        good_header + "." + B64Url("[1,2]") + ".c2ln",
        B64Url("not json") + "." + B64Url(CommandJson(Rotate())) + ".c2ln",
        std::string(20000, 'a')}) {
    auto r = Verify(env);
    ASSERT_FALSE(r) << env;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << env << ": " << r.error().ToString();
  }
  Command bad = Rotate();
  bad.job = -1;
  std::string payload = CommandJson(bad);
  ExpectRefused(Verify(good_header + "." + B64Url(payload) + ".c2ln"), Code::kInvalidArgument,
                "job");
  ExpectRefused(Verify(good_header + "." + B64Url(R"({"op":"rotate","job":"7"})") + ".c2ln"),
                Code::kInvalidArgument, "required");
  Command op = Rotate();
  op.op = "reboot";
  ExpectRefused(Verify(good_header + "." + B64Url(CommandJson(op)) + ".c2ln"),
                Code::kInvalidArgument, "unknown op");
}

TEST_F(CommandTest, SignRefusesWhatVerifyWouldRefuse) {
  Command c = Rotate();
  c.device_id = "ABC";
  auto r = SignCommand(c, key_, cert_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  c = Rotate();
  c.mode = "wipe";
  EXPECT_FALSE(SignCommand(c, key_, cert_));
}

TEST(ReplayCache, IsBoundedAndForgetsExpiredNonces) {
  InMemoryReplayCache cache(2);
  EXPECT_TRUE(cache.CheckAndRecord("a", 100, 10));
  EXPECT_TRUE(cache.CheckAndRecord("b", 200, 10));
  auto full = cache.CheckAndRecord("c", 300, 10);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), Code::kResourceExhausted);
  EXPECT_EQ(cache.CheckAndRecord("a", 100, 50).error().code(), Code::kAlreadyExists);
  // At 101 "a" has expired (its command is refused as expired before the cache is asked).
  EXPECT_TRUE(cache.CheckAndRecord("c", 300, 101));
  EXPECT_EQ(cache.size(), 2u);
}

}  // namespace
}  // namespace iotpki::campaign
