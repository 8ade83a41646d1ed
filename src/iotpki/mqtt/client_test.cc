// The MQTT client against a real Mosquitto broker (tests/mqtt_broker.sh): mutual TLS with
// certificates from our CA, the rotation topics' ACLs, refusals, CRLs and reconnects.
#include "iotpki/mqtt/client.h"

#include <gtest/gtest.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/select.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/mqtt/testing/broker.h"
#include "iotpki/x509/crl.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::mqtt {
namespace {

namespace fs = std::filesystem;
using x509::testing::Must;
using x509::testing::NewKey;

std::string PlainKeyPem(const crypto::PrivateKey& key) {
  std::string b64 = Base64Encode(Must(key.ToDer(), "key der"));
  std::string pem = "-----BEGIN PRIVATE KEY-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  return pem + "-----END PRIVATE KEY-----\n";
}

// Messages a client received, for a test to wait on.
class Inbox {
 public:
  Client::MessageHandler handler() {
    return [this](const Message& m) {
      std::lock_guard<std::mutex> lock(mu_);
      messages_.push_back(m);
      cv_.notify_all();
    };
  }
  // Waits (bounded, generously: no timing is asserted) for the n-th message.
  std::vector<Message> WaitFor(size_t n,
                               std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
    return messages_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Message> messages_;
};

class MqttTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/iotpki-mqtt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cas_ = dir_ / "device-cas.pem";
    ASSERT_TRUE(WriteFileAtomic(cas_, pki_.root.ToPem() + pki_.ops.ToPem(), 0644));
    a_ = Device("SN-A");
    b_ = Device("SN-B");
    // The server's identity: CN iotpki-server, clientAuth (the command certificate of the
    // campaign layer takes this role in serve).
    crypto::PrivateKey server_key = NewKey();
    x509::CertificateTemplate t = pki_.ServerTemplate(server_key.public_key());
    t.not_before = SystemClock().NowUnix() - 300;
    t.not_after = t.not_before + 86400;
    t.subject.common_name = "iotpki-server";
    x509::Certificate server = x509::testing::Mutate(
        Must(pki_.IssueFor(t), "server"), pki_.ops_key,
        [](X509* x) { x509::testing::ReplaceExtension(x, NID_ext_key_usage, "clientAuth"); });
    server_ = Write("server", server, server_key);
    auto broker = testing::TestBroker::Start(dir_ / "broker", cas_);
    if (!broker && broker.error().code() == Code::kNotFound) GTEST_SKIP() << "no mosquitto";
    ASSERT_TRUE(broker) << broker.error().ToString();
    broker_ = std::move(*broker);
  }
  void TearDown() override {
    broker_.Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  struct Identity {
    std::string device_id;
    fs::path cert, key;
    Bytes serial;  // the certificate's
  };

  // An LDevID valid now (the broker checks the real time).
  Identity Device(const std::string& serial) {
    crypto::PrivateKey key = NewKey();
    x509::CertificateTemplate t = x509::NewTemplate(x509::ProfileKind::kLDevID, key.public_key(),
                                                    SystemClock().NowUnix(), pki_.policy);
    t.device = x509::testing::Identity(serial);
    Identity id = Write(serial, Must(pki_.IssueFor(t), "ldevid"), key);
    id.device_id = t.device.device_id;
    return id;
  }
  Identity Write(const std::string& name, const x509::Certificate& cert,
                 const crypto::PrivateKey& key) {
    Identity id{
        .cert = dir_ / (name + ".pem"), .key = dir_ / (name + ".key"), .serial = cert.serial()};
    EXPECT_TRUE(WriteFileAtomic(id.cert, cert.ToPem(), 0644));
    EXPECT_TRUE(WriteFileAtomic(id.key, PlainKeyPem(key), 0600));
    return id;
  }

  ClientOptions Options(const Identity& id) const {
    return {.port = broker_.port(),
            .client_id = id.device_id,
            .ca_file = broker_.certificate(),
            .cert_file = id.cert,
            .key_file = id.key};
  }
  std::unique_ptr<Client> Connected(const Identity& id, Inbox* inbox = nullptr) {
    auto c = Must(Client::Create(Options(id), inbox ? inbox->handler() : nullptr), "create");
    auto connected = c->Connect();
    EXPECT_TRUE(connected) << connected.error().ToString();
    c->Start();
    return c;
  }

  x509::testing::Pki pki_;
  fs::path dir_, cas_;
  Identity a_, b_, server_;
  testing::TestBroker broker_;
};

TEST(BrokerUrl, Parses) {
  auto a = ParseBrokerUrl("mqtts://broker.example.com:8884");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "broker.example.com");
  EXPECT_EQ(a->port, 8884);
  auto b = ParseBrokerUrl("mqtts://10.0.0.1");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->port, 8883);
  auto c = ParseBrokerUrl("mqtts://[::1]:9000");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  for (const char* bad : {"mqtt://h:1883", "h:8883", "mqtts://", "mqtts://h:0", "mqtts://h:70000",
                          "mqtts://h:12x", "mqtts://u@h:1"}) {
    auto r = ParseBrokerUrl(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
}

TEST_F(MqttTest, MissingFilesAreNamed) {
  ClientOptions o = Options(a_);
  o.key_file = dir_ / "nope.key";
  auto c = Client::Create(o, nullptr);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(c.error().message().find("nope.key"), std::string::npos);
}

TEST_F(MqttTest, DeviceAndServerExchangeOnTheDevicesOwnTopics) {
  Inbox server_inbox, device_inbox;
  auto server = Connected(server_, &server_inbox);
  ASSERT_TRUE(server->Subscribe("iotpki/devices/+/status"));
  auto device = Connected(a_, &device_inbox);
  std::string cmd_topic = "iotpki/devices/" + a_.device_id + "/cmd";
  ASSERT_TRUE(device->Subscribe(cmd_topic));

  auto sent = server->Publish(cmd_topic, R"({"op":"rotate"})");
  ASSERT_TRUE(sent) << sent.error().ToString();
  auto got = device_inbox.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, cmd_topic);
  EXPECT_EQ(got[0].payload, R"({"op":"rotate"})");
  EXPECT_EQ(got[0].qos, 1);

  std::string status_topic = "iotpki/devices/" + a_.device_id + "/status";
  ASSERT_TRUE(device->Publish(status_topic, R"({"status":"failed"})"));
  auto status = server_inbox.WaitFor(1);
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].topic, status_topic);
}

// A TLS context of the caller's (how the agent signs with a key in a token or TPM): used as it
// is, so the broker's chain and name are verified by what the context says. libmosquitto's own
// checks are off (MOSQ_OPT_SSL_CTX_WITH_DEFAULTS 0): a context that names another host must fail.
std::shared_ptr<SSL_CTX> DeviceContext(const fs::path& broker_cert, const fs::path& cert,
                                       const fs::path& key, const char* host) {
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  EXPECT_EQ(SSL_CTX_load_verify_locations(ctx.get(), broker_cert.c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  EXPECT_EQ(X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx.get()), host), 1);
  EXPECT_EQ(SSL_CTX_use_certificate_file(ctx.get(), cert.c_str(), SSL_FILETYPE_PEM), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM), 1);
  return ctx;
}

TEST_F(MqttTest, ACallersTlsContextIsUsedAsItIs) {
  Inbox server_inbox;
  auto server = Connected(server_, &server_inbox);
  ASSERT_TRUE(server->Subscribe("iotpki/devices/+/status"));
  // No files: the context carries everything.
  ClientOptions o{.port = broker_.port(),
                  .client_id = a_.device_id,
                  .ssl_ctx = DeviceContext(broker_.certificate(), a_.cert, a_.key, "127.0.0.1")};
  auto device = Client::Create(o, nullptr);
  ASSERT_TRUE(device) << device.error().ToString();
  auto connected = (*device)->Connect();
  ASSERT_TRUE(connected) << connected.error().ToString();
  (*device)->Start();
  ASSERT_TRUE((*device)->Publish("iotpki/devices/" + a_.device_id + "/status", "ok"));
  auto got = server_inbox.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "ok");

  // The broker's certificate names 127.0.0.1; a context that expects another address refuses it.
  o.ssl_ctx = DeviceContext(broker_.certificate(), a_.cert, a_.key, "10.9.9.9");
  o.connect_timeout = std::chrono::milliseconds(3000);
  auto other = Client::Create(o, nullptr);
  ASSERT_TRUE(other);
  auto refused = (*other)->Connect();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kUnavailable) << refused.error().ToString();
}

TEST_F(MqttTest, AnotherDevicesTopicsAreRefused) {
  Inbox a_inbox;
  auto device = Connected(a_, &a_inbox);
  // Mosquitto 2.0 may grant a subscription its ACL forbids, but never delivers a message on it:
  // what matters is that A never reads B's commands.
  (void)device->Subscribe("iotpki/devices/" + b_.device_id + "/cmd");
  (void)device->Subscribe("iotpki/devices/+/cmd");
  std::string own = "iotpki/devices/" + a_.device_id + "/cmd";
  ASSERT_TRUE(device->Subscribe(own));
  auto server = Connected(server_);
  ASSERT_TRUE(server->Publish("iotpki/devices/" + b_.device_id + "/cmd", "for b"));
  ASSERT_TRUE(server->Publish(own, "for a"));
  auto got = a_inbox.WaitFor(1);
  for (const auto& m : got) EXPECT_EQ(m.payload, "for a") << m.topic;
  ASSERT_GE(got.size(), 1u);  // One per matching subscription; B's command would come first.
  EXPECT_EQ(got[0].payload, "for a");

  auto pub = device->Publish("iotpki/devices/" + b_.device_id + "/status", "{}");
  ASSERT_FALSE(pub);
  EXPECT_EQ(pub.error().code(), Code::kPermissionDenied);
  // A device may not send itself commands either.
  auto own_cmd = device->Publish("iotpki/devices/" + a_.device_id + "/cmd", "{}");
  ASSERT_FALSE(own_cmd);
  EXPECT_EQ(own_cmd.error().code(), Code::kPermissionDenied);
}

TEST_F(MqttTest, AnEncryptedKeyFileWorksWithItsPassphrase) {
  crypto::PrivateKey key = NewKey();
  x509::CertificateTemplate t = x509::NewTemplate(x509::ProfileKind::kLDevID, key.public_key(),
                                                  SystemClock().NowUnix(), pki_.policy);
  t.device = x509::testing::Identity("SN-ENC");
  Identity id = Write("enc", Must(pki_.IssueFor(t), "ldevid"), key);
  id.device_id = t.device.device_id;
  ASSERT_TRUE(crypto::SaveKeyFile(id.key, key, "key passphrase"));
  ClientOptions o = Options(id);
  o.key_passphrase = "key passphrase";
  auto c = Must(Client::Create(o, nullptr), "create");
  auto connected = c->Connect();
  EXPECT_TRUE(connected) << connected.error().ToString();

  o.key_passphrase = "wrong";
  auto wrong = Must(Client::Create(o, nullptr), "create");
  EXPECT_FALSE(wrong->Connect());
}

TEST_F(MqttTest, ACertificateFromAnotherCaIsRefused) {
  x509::testing::Pki other;
  crypto::PrivateKey key = NewKey();
  x509::CertificateTemplate t = x509::NewTemplate(x509::ProfileKind::kLDevID, key.public_key(),
                                                  SystemClock().NowUnix(), other.policy);
  t.device = x509::testing::Identity("SN-A");
  Identity id = Write("other", Must(other.IssueFor(t), "ldevid"), key);
  id.device_id = t.device.device_id;
  auto c = Must(Client::Create(Options(id), nullptr), "create");
  auto connected = c->Connect();
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error().code(), Code::kUnavailable);
}

TEST_F(MqttTest, AClientWithoutACertificateIsRefused) {
  // libmosquitto directly: our Client never connects without a certificate.
  mosquitto* m = mosquitto_new(nullptr, true, nullptr);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(mosquitto_tls_set(m, broker_.certificate().c_str(), nullptr, nullptr, nullptr, nullptr),
            MOSQ_ERR_SUCCESS);
  int rc = mosquitto_connect(m, "127.0.0.1", broker_.port(), 10);
  bool refused = rc != MOSQ_ERR_SUCCESS;
  for (int i = 0; i < 50 && !refused; ++i) refused = mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS;
  mosquitto_destroy(m);
  EXPECT_TRUE(refused);
}

TEST_F(MqttTest, ARevokedCertificateIsRefusedByTheBrokersCrl) {
  int64_t now = SystemClock().NowUnix();
  x509::RevokedEntry revoked{.serial = a_.serial,
                             .revoked_at = now - 10,
                             .reason = x509::RevocationReason::kKeyCompromise};
  auto ops_crl = Must(
      x509::BuildCrl(pki_.ops, pki_.ops_key, {&revoked, 1}, now - 60, now + 86400, 1), "ops crl");
  auto root_crl =
      Must(x509::BuildCrl(pki_.root, pki_.root_key, {}, now - 60, now + 86400, 1), "root crl");
  fs::path crl = dir_ / "crl.pem";
  ASSERT_TRUE(WriteFileAtomic(crl, root_crl.ToPem() + ops_crl.ToPem(), 0644));
  broker_.Stop();
  broker_ = Must(testing::TestBroker::Start(dir_ / "broker-crl", cas_, crl), "broker with crl");

  auto revoked_client = Must(Client::Create(Options(a_), nullptr), "create");
  EXPECT_FALSE(revoked_client->Connect());
  auto other = Must(Client::Create(Options(b_), nullptr), "create");
  auto ok = other->Connect();
  EXPECT_TRUE(ok) << ok.error().ToString();
}

TEST_F(MqttTest, ReconnectsAndResubscribesAfterTheBrokerRestarts) {
  Inbox inbox;
  ClientOptions o = Options(a_);
  o.reconnect_min = std::chrono::milliseconds(50);
  o.reconnect_max = std::chrono::milliseconds(200);
  auto device = Must(Client::Create(o, inbox.handler()), "create");
  ASSERT_TRUE(device->Connect());
  device->Start();
  std::string cmd_topic = "iotpki/devices/" + a_.device_id + "/cmd";
  ASSERT_TRUE(device->Subscribe(cmd_topic));

  int port = broker_.port();
  broker_.Stop();
  // Same directory, so the same broker certificate the client trusts.
  broker_ = Must(testing::TestBroker::Start(dir_ / "broker", cas_, {}, port), "restart");
  for (int i = 0; i < 400 && device->reconnects() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(device->reconnects(), 1);
  // The subscription came back with the connection: a command still arrives. The SUBACK may
  // trail the CONNACK, so the server publishes until the device has one.
  auto server = Must(Client::Create(Options(server_), nullptr), "create");
  ASSERT_TRUE(server->Connect());
  server->Start();
  std::vector<Message> got;
  for (int i = 0; i < 100 && got.empty(); ++i) {
    ASSERT_TRUE(server->Publish(cmd_topic, "again"));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    got = inbox.WaitFor(0);
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].payload, "again");
}

// The fleet simulator's mode: one thread polls many clients. Its sockets are numbered above
// FD_SETSIZE here (1,100 descriptors held open first), where select() -- and so Connect and
// RunOnce -- cannot go: BeginConnect and Service work there, subscribe and receive.
TEST_F(MqttTest, EventLoopModeWorksAboveFdSetSize) {
  auto server = Connected(server_);  // threaded, below FD_SETSIZE
  std::vector<int> filler;
  for (int i = 0; i < 550; ++i) {
    int p[2];
    if (::pipe(p) != 0) break;
    filler.push_back(p[0]);
    filler.push_back(p[1]);
  }
  if (filler.size() < 1100) {
    for (int fd : filler) ::close(fd);
    GTEST_SKIP() << "ulimit -n is too low to get past FD_SETSIZE";
  }
  Inbox inbox;
  auto device = Must(Client::Create(Options(a_), inbox.handler()), "create");
  ASSERT_TRUE(device->BeginConnect());
  auto drive = [&](const std::function<bool()>& until) {
    for (int i = 0; i < 400 && !until(); ++i) {
      pollfd p{.fd = device->socket(),
               .events = static_cast<short>(POLLIN | (device->WantWrite() ? POLLOUT : 0)),
               .revents = 0};
      if (p.fd >= 0) ::poll(&p, 1, 50);
      device->Service((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0, (p.revents & POLLOUT) != 0);
    }
  };
  drive([&] { return device->connected(); });
  ASSERT_TRUE(device->connected());
  EXPECT_GE(device->socket(), FD_SETSIZE);
  std::string cmd_topic = "iotpki/devices/" + a_.device_id + "/cmd";
  ASSERT_TRUE(device->Subscribe(cmd_topic));
  std::vector<Message> got;
  for (int i = 0; i < 50 && got.empty(); ++i) {
    ASSERT_TRUE(server->Publish(cmd_topic, "polled"));
    int passes = 0;
    drive([&] { return ++passes > 4; });
    got = inbox.WaitFor(0);
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].payload, "polled");
  device.reset();
  for (int fd : filler) ::close(fd);
}

// A persistent session outlives its connection: a command published while the device is away
// is delivered when it connects again, without subscribing again. MQTT 5 ends a session with
// its connection unless CONNECT carries a Session Expiry Interval; both ways of connecting must
// send it.
TEST_F(MqttTest, PersistentSessionKeepsCommandsWhileTheDeviceIsAway) {
  auto server = Connected(server_);
  ClientOptions o = Options(a_);
  o.clean_session = false;
  std::string cmd_topic = "iotpki/devices/" + a_.device_id + "/cmd";
  {
    auto device = Must(Client::Create(o, nullptr), "create");
    ASSERT_TRUE(device->Connect());
    device->Start();
    ASSERT_TRUE(device->Subscribe(cmd_topic));
  }  // DISCONNECT: away
  ASSERT_TRUE(server->Publish(cmd_topic, "while away"));
  Inbox inbox;
  auto device = Must(Client::Create(o, inbox.handler()), "create");
  ASSERT_TRUE(device->Connect());
  device->Start();
  auto got = inbox.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "while away");

  // A clean session keeps nothing.
  device.reset();
  o.clean_session = true;
  {
    auto clean = Must(Client::Create(o, nullptr), "create");
    ASSERT_TRUE(clean->Connect());
  }
  ASSERT_TRUE(server->Publish(cmd_topic, "nobody"));
  Inbox none;
  auto again = Must(Client::Create(o, none.handler()), "create");
  ASSERT_TRUE(again->Connect());
  again->Start();
  EXPECT_TRUE(none.WaitFor(1, std::chrono::milliseconds(500)).empty());
}

TEST_F(MqttTest, PersistentSessionKeepsCommandsInEventLoopMode) {
  auto server = Connected(server_);
  ClientOptions o = Options(a_);
  o.clean_session = false;
  std::string cmd_topic = "iotpki/devices/" + a_.device_id + "/cmd";
  auto drive = [](Client& c, const std::function<bool()>& until) {
    for (int i = 0; i < 400 && !until(); ++i) {
      pollfd p{.fd = c.socket(),
               .events = static_cast<short>(POLLIN | (c.WantWrite() ? POLLOUT : 0)),
               .revents = 0};
      if (p.fd >= 0) ::poll(&p, 1, 50);
      c.Service((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0, (p.revents & POLLOUT) != 0);
    }
  };
  {
    auto device = Must(Client::Create(o, nullptr), "create");
    ASSERT_TRUE(device->BeginConnect());
    drive(*device, [&] { return device->connected(); });
    ASSERT_TRUE(device->connected());
    ASSERT_TRUE(device->Subscribe(cmd_topic));
    drive(*device, [&] { return device->subacks() > 0; });
    ASSERT_EQ(device->subacks(), 1);
  }
  ASSERT_TRUE(server->Publish(cmd_topic, "queued"));
  Inbox inbox;
  auto device = Must(Client::Create(o, inbox.handler()), "create");
  ASSERT_TRUE(device->BeginConnect());
  drive(*device, [&] { return !inbox.WaitFor(0).empty(); });
  auto got = inbox.WaitFor(0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "queued");
}

}  // namespace
}  // namespace iotpki::mqtt
