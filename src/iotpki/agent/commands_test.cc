// The agent's handling of signed rotate commands, without a broker or a server: every refusal
// becomes a "rejected" status and nothing is attempted; a verified command goes on to the
// rotation. The nonce cache survives a restart (a file).
#include "iotpki/agent/commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::agent {
namespace {

namespace fs = std::filesystem;
using x509::testing::kNow;
using x509::testing::Must;
using x509::testing::NewKey;

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = fs::temp_directory_path() / ("iotpki-agent-cmd-" + std::to_string(::getpid()) + "-" +
                                          ToHex(crypto::RandomBytes(4)));
    fs::create_directories(state_ / "slots" / "ldevid-1");
    fs::create_directory_symlink("slots/ldevid-1", state_ / "active");
    auto ldevid = Must(pki_.IssueFor(pki_.DeviceTemplate(x509::ProfileKind::kLDevID,
                                                         device_key_.public_key(), identity_)),
                       "ldevid");
    ASSERT_TRUE(WriteFileAtomic(state_ / "active" / "cert.pem", ldevid.ToPem()));
    ASSERT_TRUE(WriteFileAtomic(state_ / "active" / "chain.pem", pki_.ops.ToPem()));
    me_ = ldevid.common_name();
    x509::CertificateTemplate t = x509::NewTemplate(x509::ProfileKind::kCommandSigner,
                                                    command_key_.public_key(), kNow, pki_.policy);
    t.subject = {.organization = "Acme Devices", .common_name = "iotpki-server"};
    command_cert_ = Must(pki_.IssueFor(t), "command cert");
    auto cache = FileReplayCache::Open(state_ / "nonces");
    ASSERT_TRUE(cache) << cache.error().ToString();
    cache_ = std::move(*cache);
    options_ = {.state = state_, .server_url = "https://127.0.0.1:1", .clock = &clock_};
  }
  void TearDown() override { fs::remove_all(state_); }

  campaign::Command Rotate(std::string device = {}) const {
    return {.campaign = "q3",
            .job = 7,
            .device_id = device.empty() ? me_ : device,
            .mode = "rekey",
            .nonce = campaign::NewNonce(),
            .not_after = kNow + 3600};
  }
  std::string Signed(const campaign::Command& c) {
    return Must(campaign::SignCommand(c, command_key_, command_cert_), "sign");
  }
  static void ExpectRejected(const CommandOutcome& out, Code code, std::string_view text) {
    EXPECT_EQ(out.kind, CommandOutcome::kRejected);
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->code(), code) << out.error->ToString();
    auto j = nlohmann::json::parse(out.status_json);
    EXPECT_EQ(j["op"], "rejected");
    EXPECT_NE(j["reason"].get<std::string>().find(text), std::string::npos) << out.status_json;
  }

  fs::path state_;
  x509::testing::Pki pki_;
  crypto::PrivateKey device_key_ = NewKey();
  crypto::PrivateKey command_key_ = NewKey();
  x509::DeviceIdentity identity_ = x509::testing::Identity("SN-ME");
  x509::Certificate command_cert_ = pki_.ops;
  std::string me_;
  FakeClock clock_{kNow + 60};
  std::unique_ptr<FileReplayCache> cache_;
  AgentOptions options_;
};

TEST_F(CommandsTest, RefusedCommandsAreReportedAndNothingIsAttempted) {
  ExpectRejected(HandleCommand(options_, Signed(Rotate(std::string(64, 'b'))), *cache_),
                 Code::kPermissionDenied, "another device");
  std::string good = Signed(Rotate());
  std::string unsigned_cmd = good.substr(0, good.rfind('.') + 1);
  ExpectRejected(HandleCommand(options_, unsigned_cmd, *cache_), Code::kUnauthenticated, "");
  std::string tampered = good;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  ExpectRejected(HandleCommand(options_, tampered, *cache_), Code::kUnauthenticated, "");
  ExpectRejected(HandleCommand(options_, "{\"op\":\"rotate\"}", *cache_), Code::kInvalidArgument,
                 "");
  clock_.Advance(std::chrono::hours(2));
  auto expired = HandleCommand(options_, good, *cache_);
  ExpectRejected(expired, Code::kFailedPrecondition, "");
  EXPECT_EQ(expired.status_json.find(good.substr(0, 40)), std::string::npos)
      << "a reason never carries the envelope";
  EXPECT_EQ(cache_->size(), 0u) << "no refused command is remembered";
  EXPECT_FALSE(fs::exists(state_ / "pending"));
}

TEST_F(CommandsTest, AVerifiedCommandGoesOnToTheRotationAndIsNeverActedOnTwice) {
  std::string envelope = Signed(Rotate());
  auto first = HandleCommand(options_, envelope, *cache_);
  // No factory bundle or server here: the rotation itself fails, after the verification.
  EXPECT_EQ(first.kind, CommandOutcome::kFailed) << first.status_json;
  auto j = nlohmann::json::parse(first.status_json);
  EXPECT_EQ(j["op"], "rotate");
  EXPECT_EQ(j["campaign"], "q3");
  EXPECT_EQ(j["job"], 7);
  EXPECT_EQ(j["status"], "failed");
  EXPECT_FALSE(j["reason"].get<std::string>().empty());
  ExpectRejected(HandleCommand(options_, envelope, *cache_), Code::kAlreadyExists, "replayed");

  // After a restart (a new cache from the file), the replay is still refused.
  auto reopened = FileReplayCache::Open(state_ / "nonces");
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->size(), 1u);
  ExpectRejected(HandleCommand(options_, envelope, **reopened), Code::kAlreadyExists, "replayed");
  EXPECT_EQ(fs::status(state_ / "nonces").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(CommandsTest, ReplayCacheForgetsExpiredNoncesAndIsBounded) {
  auto small = FileReplayCache::Open(state_ / "small", 2);
  ASSERT_TRUE(small);
  FileReplayCache& c = **small;
  EXPECT_TRUE(c.CheckAndRecord("a", 100, 50));
  EXPECT_TRUE(c.CheckAndRecord("b", 200, 50));
  auto full = c.CheckAndRecord("c", 200, 60);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), Code::kResourceExhausted);
  EXPECT_TRUE(c.CheckAndRecord("c", 300, 150)) << "a expired at 100: room again";
  EXPECT_EQ(c.CheckAndRecord("b", 200, 150).error().code(), Code::kAlreadyExists);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(CommandTopic("ab"), "iotpki/devices/ab/cmd");
  EXPECT_EQ(StatusTopic("ab"), "iotpki/devices/ab/status");
}

}  // namespace
}  // namespace iotpki::agent
