// The MQTT notifier with a real Mosquitto (tests/mqtt_broker.sh), a real SQLite store and the
// scheduler: devices with LDevIDs from our CA receive signed commands on their own topics, and
// their failure reports move their jobs; bad reports change nothing.
#include "iotpki/campaign/mqtt_notifier.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "iotpki/campaign/command.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/file.h"
#include "iotpki/mqtt/testing/broker.h"
#include "iotpki/store/sqlite/sqlite_store.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::campaign {
namespace {

namespace fs = std::filesystem;
using store::JobState;
using x509::testing::Must;
using x509::testing::NewKey;

class NoJitter final : public Jitter {
 public:
  int64_t Below(int64_t) override { return 0; }
};

std::string PlainKeyPem(const crypto::PrivateKey& key) {
  std::string b64 = Base64Encode(Must(key.ToDer(), "key der"));
  std::string pem = "-----BEGIN PRIVATE KEY-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  return pem + "-----END PRIVATE KEY-----\n";
}

class Inbox {
 public:
  mqtt::Client::MessageHandler handler() {
    return [this](const mqtt::Message& m) {
      std::lock_guard<std::mutex> lock(mu_);
      messages_.push_back(m);
      cv_.notify_all();
    };
  }
  std::vector<mqtt::Message> WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return messages_.size() >= n; });
    return messages_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<mqtt::Message> messages_;
};

class MqttNotifierTest : public ::testing::Test {
 protected:
  struct Identity {
    std::string device_id;
    fs::path cert, key;
  };

  void SetUp() override {
    char tmpl[] = "/tmp/iotpki-notifier-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(WriteFileAtomic(dir_ / "cas.pem", pki_.root.ToPem() + pki_.ops.ToPem(), 0644));
    auto broker = mqtt::testing::TestBroker::Start(dir_ / "broker", dir_ / "cas.pem");
    if (!broker && broker.error().code() == Code::kNotFound) GTEST_SKIP() << "no mosquitto";
    ASSERT_TRUE(broker) << broker.error().ToString();
    broker_ = std::move(*broker);

    // The command certificate, valid now (the broker checks the real time): also the server's
    // MQTT identity.
    x509::CertificateTemplate t = x509::NewTemplate(x509::ProfileKind::kCommandSigner,
                                                    command_key_.public_key(), now_, pki_.policy);
    t.subject = {.organization = "Acme Devices", .common_name = "iotpki-server"};
    command_cert_ = std::make_unique<x509::Certificate>(Must(pki_.IssueFor(t), "command cert"));
    server_ = Write("server", *command_cert_, command_key_);
    a_ = Device("SN-A");
    b_ = Device("SN-B");
    stranger_ = Device("SN-STRANGER");

    store_ = Must(store::OpenSqliteStore(dir_ / "iotpki.db", clock_), "store");
    store::WriteBatch batch;
    for (const auto* d : {&a_, &b_}) {
      store::Device device;
      device.device_id = d->device_id;
      device.serial = "S-" + d->device_id.substr(0, 8);
      device.model = "m";
      device.batch = "b";
      batch.InsertDevice(device);
    }
    ASSERT_TRUE(store_->Commit(batch));
    store::CampaignSpec spec{.name = "q3",
                             .filter_json = "{}",
                             .mode = store::CampaignMode::kRekey,
                             .wave_size = 10,
                             .retry_after = 100,
                             .max_attempts = 3,
                             .deadline = now_ + 100000};
    campaign_ = Must(store_->CreateCampaign(
                         spec, store::CampaignCohort{.devices = store::DeviceFilter{.batch = "b"}},
                         {"test", "campaign.create", "q3", "{}"}, false, 0),
                     "campaign")
                    .campaign;

    // The server's client forwards status messages to the notifier, made just after it.
    server_client_ = Must(mqtt::Client::Create(Options(server_), [this](const mqtt::Message& m) {
      if (auto* n = notifier_ptr_.load()) n->HandleStatus(m);
    }));
    ASSERT_TRUE(server_client_->Connect());
    server_client_->Start();
    notifier_ = std::make_unique<MqttNotifier>(*server_client_, command_key_, *command_cert_,
                                               *store_, clock_, jitter_, "server:test");
    notifier_ptr_.store(notifier_.get());
    ASSERT_TRUE(server_client_->Subscribe(std::string(kAllStatusTopics)));
  }
  void TearDown() override {
    notifier_ptr_.store(nullptr);
    if (server_client_) server_client_->Stop();
    broker_.Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Identity Device(const std::string& serial) {
    crypto::PrivateKey key = NewKey();
    x509::CertificateTemplate t =
        x509::NewTemplate(x509::ProfileKind::kLDevID, key.public_key(), now_, pki_.policy);
    t.device = x509::testing::Identity(serial);
    Identity id = Write(serial, Must(pki_.IssueFor(t), "ldevid"), key);
    id.device_id = t.device.device_id;
    return id;
  }
  Identity Write(const std::string& name, const x509::Certificate& cert,
                 const crypto::PrivateKey& key) {
    Identity id{.cert = dir_ / (name + ".pem"), .key = dir_ / (name + ".key")};
    EXPECT_TRUE(WriteFileAtomic(id.cert, cert.ToPem(), 0644));
    EXPECT_TRUE(WriteFileAtomic(id.key, PlainKeyPem(key), 0600));
    return id;
  }
  mqtt::ClientOptions Options(const Identity& id) const {
    return {.port = broker_.port(),
            .client_id = id.device_id.empty() ? "iotpki-server" : id.device_id,
            .ca_file = broker_.certificate(),
            .cert_file = id.cert,
            .key_file = id.key};
  }
  std::unique_ptr<mqtt::Client> DeviceClient(const Identity& id, Inbox* inbox = nullptr) {
    auto c = Must(mqtt::Client::Create(Options(id), inbox ? inbox->handler() : nullptr), "client");
    EXPECT_TRUE(c->Connect());
    c->Start();
    return c;
  }
  // Waits (bounded) until the notifier has judged `n` status messages in all.
  void WaitForStatuses(int64_t n) {
    for (int i = 0; i < 400; ++i) {
      int64_t seen = 0;
      for (size_t o = 0; o < kStatusOutcomeCount; ++o) {
        seen += notifier_->status_count(static_cast<StatusOutcome>(o));
      }
      if (seen >= n) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  store::Job Job(int64_t ordinal) { return Must(store_->GetJob(campaign_.id, ordinal), "job"); }
  int64_t OrdinalOf(const Identity& id) { return Job(0).device_id == id.device_id ? 0 : 1; }

  int64_t now_ = SystemClock().NowUnix();
  FakeClock clock_{now_};
  NoJitter jitter_;
  x509::testing::Pki pki_;
  crypto::PrivateKey command_key_ = NewKey();
  std::unique_ptr<x509::Certificate> command_cert_;
  fs::path dir_;
  mqtt::testing::TestBroker broker_;
  Identity server_, a_, b_, stranger_;
  std::unique_ptr<store::Store> store_;
  store::Campaign campaign_;
  std::unique_ptr<mqtt::Client> server_client_;
  std::unique_ptr<MqttNotifier> notifier_;
  std::atomic<MqttNotifier*> notifier_ptr_{nullptr};
};

TEST_F(MqttNotifierTest, ADeviceReceivesItsSignedCommandAndItsFailureReportIsApplied) {
  Inbox inbox;
  auto device = DeviceClient(a_, &inbox);
  ASSERT_TRUE(device->Subscribe(CommandTopic(a_.device_id)));
  Scheduler scheduler(*store_, *notifier_, clock_, jitter_, {.owner = "test"});
  auto tick = scheduler.Tick();
  ASSERT_TRUE(tick) << tick.error().ToString();
  EXPECT_EQ(tick->notified, 2);
  EXPECT_EQ(notifier_->published(), 2);

  auto got = inbox.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, CommandTopic(a_.device_id));
  InMemoryReplayCache cache;
  auto command = VerifyCommand(got[0].payload, pki_.ops, a_.device_id, now_, cache);
  ASSERT_TRUE(command) << command.error().ToString();
  int64_t ordinal = OrdinalOf(a_);
  EXPECT_EQ(command->campaign, "q3");
  EXPECT_EQ(command->job, ordinal);
  EXPECT_EQ(command->mode, "rekey");
  store::Job notified = Job(ordinal);
  EXPECT_EQ(notified.state, JobState::kNotified);
  EXPECT_EQ(command->not_after, notified.next_attempt_at);

  std::string report = R"({"campaign":"q3","job":)" + std::to_string(ordinal) +
                       R"(,"status":"failed","reason":"install failed"})";
  ASSERT_TRUE(device->Publish(StatusTopic(a_.device_id), report));
  WaitForStatuses(1);
  EXPECT_EQ(notifier_->status_count(StatusOutcome::kApplied), 1);
  store::Job failed = Job(ordinal);
  EXPECT_EQ(failed.state, JobState::kPending);
  EXPECT_EQ(failed.next_attempt_at, now_ + 100);  // retry_after, no jitter
  EXPECT_EQ(failed.last_error, "device: install failed");
  // Nothing is notified again before the retry delay.
  auto again = scheduler.Tick();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->notified, 0);
}

// `iotpki serve` renews its command certificate at half its life without a restart: commands
// published after SetSigner carry the new certificate and its key's signature. (A certificate
// from another CA stands in for the renewed one, so that which pair signed is unambiguous.)
TEST_F(MqttNotifierTest, CommandsAreSignedWithTheRenewedCertificateAfterSetSigner) {
  Inbox inbox;
  auto device = DeviceClient(a_, &inbox);
  ASSERT_TRUE(device->Subscribe(CommandTopic(a_.device_id)));
  RotateCommand rotate{.campaign = "q3",
                       .job = 0,
                       .device_id = a_.device_id,
                       .mode = store::CampaignMode::kRekey,
                       .answer_by = now_ + 600};
  ASSERT_TRUE(notifier_->Notify(rotate));

  x509::testing::Pki other;
  auto renewed_key = std::make_shared<crypto::PrivateKey>(NewKey());
  x509::CertificateTemplate t = x509::NewTemplate(x509::ProfileKind::kCommandSigner,
                                                  renewed_key->public_key(), now_, other.policy);
  t.subject = {.organization = "Acme Devices", .common_name = "iotpki-server"};
  notifier_->SetSigner(renewed_key, Must(other.IssueFor(t), "renewed command cert"));
  ASSERT_TRUE(notifier_->Notify(rotate));

  auto got = inbox.WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  InMemoryReplayCache cache;
  EXPECT_TRUE(VerifyCommand(got[0].payload, pki_.ops, a_.device_id, now_, cache));
  EXPECT_FALSE(VerifyCommand(got[1].payload, pki_.ops, a_.device_id, now_, cache));
  auto renewed = VerifyCommand(got[1].payload, other.ops, a_.device_id, now_, cache);
  EXPECT_TRUE(renewed) << renewed.error().ToString();
}

TEST_F(MqttNotifierTest, BadReportsAreCountedAndChangeNothing) {
  Scheduler scheduler(*store_, *notifier_, clock_, jitter_, {.owner = "test"});
  ASSERT_TRUE(scheduler.Tick());
  int64_t a_job = OrdinalOf(a_);
  store::Job a_before = Job(a_job), b_before = Job(1 - a_job);

  auto b = DeviceClient(b_);
  auto stranger = DeviceClient(stranger_);
  auto a = DeviceClient(a_);
  std::string for_a =
      R"({"campaign":"q3","job":)" + std::to_string(a_job) + R"(,"status":"failed","reason":"x"})";
  // B reports a failure of A's job; a device in no campaign does the same.
  ASSERT_TRUE(b->Publish(StatusTopic(b_.device_id), for_a));
  ASSERT_TRUE(stranger->Publish(StatusTopic(stranger_.device_id), for_a));
  // Malformed JSON, a wrong type, an unknown campaign, an unknown job, a progress report.
  ASSERT_TRUE(a->Publish(StatusTopic(a_.device_id), "{not json"));
  ASSERT_TRUE(a->Publish(StatusTopic(a_.device_id), R"({"campaign":"q3","job":"0","status":1})"));
  ASSERT_TRUE(
      a->Publish(StatusTopic(a_.device_id), R"({"campaign":"nope","job":0,"status":"failed"})"));
  ASSERT_TRUE(
      a->Publish(StatusTopic(a_.device_id), R"({"campaign":"q3","job":99,"status":"failed"})"));
  ASSERT_TRUE(
      a->Publish(StatusTopic(a_.device_id), R"({"campaign":"q3","job":0,"status":"downloading"})"));
  WaitForStatuses(7);
  EXPECT_EQ(notifier_->status_count(StatusOutcome::kNotThisDevice), 2);
  EXPECT_EQ(notifier_->status_count(StatusOutcome::kMalformed), 2);
  EXPECT_EQ(notifier_->status_count(StatusOutcome::kUnknownJob), 2);
  EXPECT_EQ(notifier_->status_count(StatusOutcome::kIgnored), 1);
  EXPECT_EQ(notifier_->status_count(StatusOutcome::kApplied), 0);
  EXPECT_EQ(Job(a_job), a_before);
  EXPECT_EQ(Job(1 - a_job), b_before);

  // Not a status topic at all (the broker's ACL keeps these out; the notifier checks anyway).
  EXPECT_EQ(notifier_->HandleStatus({.topic = "iotpki/devices/x/status", .payload = for_a}),
            StatusOutcome::kMalformed);
  // A report for a job that is not waiting (already back to pending) changes nothing.
  ASSERT_TRUE(a->Publish(StatusTopic(a_.device_id), for_a));
  WaitForStatuses(9);  // seven over MQTT, one direct, this one
  ASSERT_EQ(notifier_->status_count(StatusOutcome::kApplied), 1);
  store::Job pending = Job(a_job);
  EXPECT_EQ(notifier_->HandleStatus({.topic = StatusTopic(a_.device_id), .payload = for_a}),
            StatusOutcome::kStale);
  EXPECT_EQ(Job(a_job), pending);
}

TEST_F(MqttNotifierTest, AnUnreachableBrokerIsAFailedAttempt) {
  broker_.Stop();
  RotateCommand c{.campaign = "q3",
                  .job = 0,
                  .device_id = a_.device_id,
                  .mode = store::CampaignMode::kRekey,
                  .attempt = 1,
                  .answer_by = now_ + 100};
  // The client notices the lost connection on its thread; until then the publish times out.
  Result<void> sent;
  for (int i = 0; i < 100; ++i) {
    sent = notifier_->Notify(c);
    if (!sent) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code(), Code::kUnavailable);
  EXPECT_GE(notifier_->publish_failures(), 1);

  Scheduler scheduler(*store_, *notifier_, clock_, jitter_, {.owner = "test"});
  auto tick = scheduler.Tick();
  ASSERT_TRUE(tick);
  EXPECT_EQ(tick->notified, 0);
  EXPECT_EQ(tick->retried, 2);
  EXPECT_EQ(Job(0).state, JobState::kPending);
  EXPECT_NE(Job(0).last_error->find("notify: MQTT"), std::string::npos);
}

}  // namespace
}  // namespace iotpki::campaign
