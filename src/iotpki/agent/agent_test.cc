#include "iotpki/agent/agent.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "iotpki/agent/https_client.h"
#include "iotpki/ca/bootstrap.h"
#include "iotpki/crypto/key_store.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::agent {
namespace {

TEST(AgentTest, TokenIsTheOneTheServerChecks) {
  Bytes k_dev(32, 0x42);
  std::string device_id(64, 'a');
  std::string token = BootstrapToken(k_dev, device_id, 1790000000);
  EXPECT_EQ(token, ca::BootstrapToken(k_dev, device_id, 1790000000));
  EXPECT_TRUE(ca::VerifyBootstrapToken(k_dev, device_id, 1790000000, token));
}

TEST(AgentTest, ServerUrls) {
  auto a = ParseServerUrl("https://127.0.0.1:8443");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8443);
  auto b = ParseServerUrl("https://est.example/");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "est.example");
  EXPECT_EQ(b->port, 443);
  auto c = ParseServerUrl("https://[::1]:9");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 9);
  for (const char* bad : {"http://x:1", "https://", "https://x:0", "https://x:65536", "https://x:",
                          "https://x:1/path", "x:1", "https://[::1", "https://x:1a"}) {
    auto r = ParseServerUrl(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(Classify(r.error()), Outcome::kUsage) << bad;
  }
}

TEST(AgentTest, OutcomesByCode) {
  EXPECT_EQ(Classify(Error(Code::kUnavailable, "")), Outcome::kUnreachable);
  EXPECT_EQ(Classify(Error(Code::kUnauthenticated, "")), Outcome::kTls);
  EXPECT_EQ(Classify(Error(Code::kPermissionDenied, "")), Outcome::kRefused);
  EXPECT_EQ(Classify(Error(Code::kDataLoss, "")), Outcome::kBadAnswer);
  EXPECT_EQ(Classify(Error(Code::kFailedPrecondition, "")), Outcome::kLocal);
  EXPECT_EQ(static_cast<int>(Outcome::kRefused), 5);
}

// A loopback port bound but not listening refuses every connection, and stays this test's for
// its whole run (a port merely assumed free could be taken by another process). The settings are
// usable, so the request really dials.
TEST(AgentTest, UnreachableServerIsUnavailable) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);

  x509::testing::Pki pki;
  TlsSettings tls{.trust_anchors = {pki.root.ToDer()}};
  auto r = HttpsRequest({.host = "127.0.0.1", .port = port}, tls, "GET", "/", "", "");
  ::close(fd);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnavailable) << r.error().ToString();
  EXPECT_NE(r.error().message().find("cannot connect to 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(Classify(r.error()), Outcome::kUnreachable);
}

TEST(AgentTest, MissingStateIsALocalFailure) {
  AgentOptions o{.state = "/nonexistent/iotpki-agent-state", .server_url = "https://127.0.0.1:1"};
  auto r = Bootstrap(o, BootstrapMode::kEst);
  ASSERT_FALSE(r);
  EXPECT_EQ(Classify(r.error()), Outcome::kLocal);
  EXPECT_NE(r.error().message().find("factory"), std::string::npos);
}

TEST(AgentTest, AutoRenewalAtTwoThirdsOfTheLifetimeWithJitter) {
  constexpr int64_t kStart = 1790000000, kLife = 90 * 86400;
  FakeClock clock(kStart);
  // No jitter: exactly two thirds; the jitter adds up to a twelfth of the lifetime.
  EXPECT_EQ(AutoRenewAt(kStart, kStart + kLife, 0.0), kStart + 60 * 86400);
  EXPECT_EQ(AutoRenewAt(kStart, kStart + kLife, 0.5), kStart + 60 * 86400 + kLife / 24);
  int64_t latest = AutoRenewAt(kStart, kStart + kLife, 0.999999);
  EXPECT_LT(latest, kStart + 60 * 86400 + kLife / 12 + 1);
  EXPECT_GT(latest, kStart + 67 * 86400);
  // Out-of-range randomness is clamped; a certificate of no lifetime renews at once.
  EXPECT_EQ(AutoRenewAt(kStart, kStart + kLife, -3), kStart + 60 * 86400);
  EXPECT_EQ(AutoRenewAt(kStart, kStart + kLife, 7), latest);
  EXPECT_EQ(AutoRenewAt(kStart, kStart, 0.5), kStart);
  EXPECT_EQ(AutoRenewAt(kStart, kStart + 1, 0.9), kStart);  // never after notAfter - 1

  // A fleet made in one second spreads its renewals over a twelfth of the lifetime.
  EXPECT_EQ(SecondsUntilAutoRenew(kStart, kStart + kLife, 0.25, clock), 60 * 86400 + kLife / 48);
  clock.Advance(std::chrono::hours(24 * 60));
  EXPECT_EQ(SecondsUntilAutoRenew(kStart, kStart + kLife, 0.0, clock), 0);
  EXPECT_EQ(SecondsUntilAutoRenew(kStart, kStart + kLife, 0.25, clock), kLife / 48);
  clock.Advance(std::chrono::hours(24 * 40));  // expired: due at once
  EXPECT_EQ(SecondsUntilAutoRenew(kStart, kStart + kLife, 0.9, clock), 0);
}

TEST(AgentTest, RetryBackoffDoublesUpToAnHourWithHalfJitter) {
  EXPECT_EQ(RetryBackoff(1, 1.0), 5);
  EXPECT_EQ(RetryBackoff(1, 0.0), 2);
  EXPECT_EQ(RetryBackoff(2, 1.0), 10);
  EXPECT_EQ(RetryBackoff(4, 1.0), 40);
  EXPECT_EQ(RetryBackoff(12, 1.0), 3600);
  EXPECT_EQ(RetryBackoff(1000, 0.0), 1800);
  EXPECT_EQ(RetryBackoff(0, 0.5), 3);
}

TEST(AgentTest, DeviceJitterIsStablePerDeviceAndSpread) {
  EXPECT_EQ(DeviceJitter(std::string(64, 'a')), DeviceJitter(std::string(64, 'a')));
  double sum = 0;
  for (int i = 0; i < 1000; ++i) {
    double u = DeviceJitter(std::to_string(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 1000, 0.5, 0.05);
}

TEST(AgentTest, RotateStepsHaveNames) {
  for (int i = 1; i <= 5; ++i) {
    auto step = static_cast<RotateStep>(i);
    EXPECT_EQ(ParseRotateStep(RotateStepName(step)), step);
  }
  EXPECT_EQ(ParseRotateStep("after-rename"), RotateStep::kAfterRename);
  EXPECT_EQ(ParseRotateStep("never"), std::nullopt);
}

TEST(AgentTest, RotateNeedsABootstrappedStateAndAJob) {
  AgentOptions o{.state = "/nonexistent/iotpki-agent-state", .server_url = "https://127.0.0.1:1"};
  auto bad = Rotate(o, {.campaign = "", .job = 0});
  ASSERT_FALSE(bad);
  EXPECT_EQ(Classify(bad.error()), Outcome::kUsage);
  auto r = Rotate(o, {.campaign = "c", .job = 0});
  ASSERT_FALSE(r);
  EXPECT_EQ(Classify(r.error()), Outcome::kLocal);
  auto nothing = Recover(o);
  ASSERT_TRUE(nothing) << nothing.error().ToString();
  EXPECT_EQ(nothing->what, Recovery::kNothing);
}

// A crash between making a TPM key and writing the slot that names it leaves the key's blob in
// STATE/keys/. Recover deletes such blobs once they are an hour old, and never a blob a slot or
// the factory names. (Deleting a blob needs no TPM: the TPM keeps no copy of the key.)
TEST(AgentTest, RecoverDeletesOrphanedKeyBlobs) {
  namespace fs = std::filesystem;
  fs::path state = fs::temp_directory_path() / ("iotpki-agent-orphans-" + std::to_string(getpid()));
  fs::remove_all(state);
  fs::create_directories(state / "keys");
  fs::create_directories(state / "slots" / "ldevid-01");
  fs::create_directories(state / "slots" / ".tmp-0a0b");
  fs::create_directories(state / "factory");
  auto write = [](const fs::path& p, const std::string& text) { std::ofstream(p) << text; };
  for (const char* name : {"named", "idevid", "orphan", "tmp-slot", "fresh"}) {
    write(state / "keys" / (std::string("ldevid-") + name + ".tpm"), "blob");
  }
  write(state / "keys" / "notes.txt", "not a key blob");
  write(state / "slots" / "ldevid-01" / "key.uri", "tpm2:blob=keys/ldevid-named.tpm\n");
  write(state / "factory" / "key.uri", "tpm2:blob=keys/ldevid-idevid.tpm\n");
  // A slot a crash left half written names nothing: Recover removes it first.
  write(state / "slots" / ".tmp-0a0b" / "key.uri", "tpm2:blob=keys/ldevid-tmp-slot.tpm\n");
  int64_t now = time(nullptr);
  FakeClock clock(now + 2 * 3600);
  // Made "just now" as far as the clock is concerned: a request in flight may own it.
  fs::last_write_time(
      state / "keys" / "ldevid-fresh.tpm",
      fs::last_write_time(state / "keys" / "ldevid-fresh.tpm") + std::chrono::hours(2));
  AgentOptions o{.state = state, .clock = &clock};
  auto r = Recover(o);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->what, Recovery::kNothing);
  std::sort(r->orphans_deleted.begin(), r->orphans_deleted.end());
  EXPECT_EQ(r->orphans_deleted, (std::vector<std::string>{"tpm2:blob=keys/ldevid-orphan.tpm",
                                                          "tpm2:blob=keys/ldevid-tmp-slot.tpm"}));
  EXPECT_TRUE(fs::exists(state / "keys" / "ldevid-named.tpm"));
  EXPECT_TRUE(fs::exists(state / "keys" / "ldevid-idevid.tpm"));
  EXPECT_TRUE(fs::exists(state / "keys" / "ldevid-fresh.tpm"));
  EXPECT_TRUE(fs::exists(state / "keys" / "notes.txt"));
  EXPECT_FALSE(fs::exists(state / "keys" / "ldevid-orphan.tpm"));
  EXPECT_FALSE(fs::exists(state / "slots" / ".tmp-0a0b"));
  fs::remove_all(state);
}

// A token key the agent makes is recorded in STATE/keys/<label>.p11 before the token makes it, so
// a crash before its slot is written leaves a record. Recover deletes an hour-old record's key
// from the token, and the record; never a key a slot names, a fresh one, or a key of the token
// that the agent did not record (the token may hold other software's keys). A real SoftHSM2
// token, made here with its own SOFTHSM2_CONF.
TEST(AgentTest, RecoverDeletesOrphanedTokenKeysByTheirRecords) {
  namespace fs = std::filesystem;
  fs::path dir =
      fs::temp_directory_path() / ("iotpki-agent-token-orphans-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "tokens");
  std::ofstream(dir / "softhsm2.conf") << "directories.tokendir = " << (dir / "tokens").string()
                                       << "\nobjectstore.backend = file\nlog.level = ERROR\n";
  ::setenv("SOFTHSM2_CONF", (dir / "softhsm2.conf").c_str(), 1);
  ::setenv("IOTPKI_PKCS11_PIN", "agent-pin-1234", 1);
  ::unsetenv("IOTPKI_PKCS11_MODULE");
  ASSERT_EQ(std::system("softhsm2-util --init-token --free --label agent-se --pin agent-pin-1234 "
                        "--so-pin 12345678 >/dev/null"),
            0)
      << "softhsm2-util failed (scripts/setup.sh installs softhsm2)";
  fs::path state = dir / "state";
  fs::create_directories(state / "keys");
  fs::create_directories(state / "slots" / "ldevid-01");
  auto write = [](const fs::path& p, const std::string& text) { std::ofstream(p) << text; };
  auto uri_of = [](const std::string& label) { return "pkcs11:token=agent-se;object=" + label; };
  auto store = crypto::KeyStoreFor("pkcs11:", {});
  ASSERT_TRUE(store) << store.error().ToString();
  // named: a slot's key; orphan: no slot; fresh: no slot yet; gone: recorded, never made.
  for (const char* label : {"ldevid-00000000000000a1", "ldevid-00000000000000a2",
                            "ldevid-00000000000000a3", "another-program"}) {
    auto key = (*store)->Generate(uri_of(label), crypto::KeyType::kP256);
    ASSERT_TRUE(key) << key.error().ToString();
    if (std::string(label) == "ldevid-00000000000000a1") {
      write(state / "slots" / "ldevid-01" / "key.uri", (*key)->uri() + "\n");
    }
  }
  for (const char* label : {"ldevid-00000000000000a1", "ldevid-00000000000000a2",
                            "ldevid-00000000000000a3", "ldevid-00000000000000a4"}) {
    write(state / "keys" / (std::string(label) + ".p11"), uri_of(label) + "\n");
  }
  // A record that names another key than its file's is not the agent's doing: left alone.
  write(state / "keys" / "ldevid-00000000000000a5.p11", uri_of("another-program") + "\n");
  int64_t now = time(nullptr);
  FakeClock clock(now + 2 * 3600);
  fs::path fresh = state / "keys" / "ldevid-00000000000000a3.p11";
  fs::last_write_time(fresh, fs::last_write_time(fresh) + std::chrono::hours(2));
  AgentOptions o{.state = state, .clock = &clock};
  auto r = Recover(o);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->orphans_deleted, (std::vector<std::string>{uri_of("ldevid-00000000000000a2")}));
  auto exists = [&](const std::string& label) { return bool((*store)->Open(uri_of(label))); };
  EXPECT_TRUE(exists("ldevid-00000000000000a1"));
  EXPECT_FALSE(exists("ldevid-00000000000000a2"));
  EXPECT_TRUE(exists("ldevid-00000000000000a3"));
  EXPECT_TRUE(exists("another-program"));
  EXPECT_TRUE(fs::exists(state / "keys" / "ldevid-00000000000000a1.p11"));
  EXPECT_FALSE(fs::exists(state / "keys" / "ldevid-00000000000000a2.p11"));
  EXPECT_TRUE(fs::exists(fresh));
  EXPECT_FALSE(fs::exists(state / "keys" / "ldevid-00000000000000a4.p11"));
  EXPECT_TRUE(fs::exists(state / "keys" / "ldevid-00000000000000a5.p11"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace iotpki::agent
