#include "daemon.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "iotpki/agent/commands.h"
#include "iotpki/agent/https_client.h"
#include "iotpki/common/file.h"
#include "iotpki/mqtt/client.h"

namespace {

namespace fs = std::filesystem;
using iotpki::agent::AgentOptions;

std::atomic<bool> g_stop{false};
void OnStopSignal(int) { g_stop = true; }

std::mt19937_64& Rng() {
  static std::mt19937_64 rng(std::random_device{}());
  return rng;
}
double Unit() { return std::uniform_real_distribution<double>(0.0, 1.0)(Rng()); }

// Sleeps up to `seconds`, waking early on SIGTERM or SIGINT.
void SleepUnlessStopped(int64_t seconds) {
  for (int64_t tenths = seconds * 10; tenths > 0 && !g_stop; --tenths) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// Command envelopes from the client's thread to the daemon's.
class Inbox {
 public:
  void Push(std::string payload) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= 64) return;  // a flood is dropped; the server notifies again
      queue_.push_back(std::move(payload));
    }
    cv_.notify_one();
  }
  // The next envelope, or nothing after `wait`.
  std::optional<std::string> Pop(std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, wait, [&] { return !queue_.empty(); })) return std::nullopt;
    std::string out = std::move(queue_.front());
    queue_.pop_front();
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
};

// The root certificate of factory/chain.pem as a PEM file libmosquitto can read.
iotpki::Result<fs::path> DefaultMqttCa(const AgentOptions& o) {
  IOTPKI_TRY(std::string pem, iotpki::ReadTextFile(o.state / "factory" / "chain.pem", 1 << 20));
  IOTPKI_TRY(auto chain, iotpki::x509::Certificate::ChainFromPem(pem));
  for (const auto& c : chain) {
    if (c.subject() == c.issuer()) {
      fs::path out = o.state / "mqtt-ca.pem";
      IOTPKI_CHECK(iotpki::WriteFileAtomic(out, c.ToPem()));
      return out;
    }
  }
  return iotpki::Fail(iotpki::Code::kFailedPrecondition,
                      "factory/chain.pem holds no root to verify the broker with (--mqtt-ca)");
}

struct Session {
  // Declared before the client, which is destroyed first: the client's TLS context signs with it.
  std::shared_ptr<const iotpki::crypto::Signer> key;
  std::unique_ptr<iotpki::mqtt::Client> client;
  std::string device_id;
};

// Connects with the active slot's certificate and key, read once (a rotation during the session
// does not change what this session presents), through a TLS context of our own: a key in a
// PKCS#11 token or a TPM signs the handshake there, which libmosquitto's key file cannot do.
iotpki::Result<Session> Connect(const AgentOptions& o, const iotpki::mqtt::BrokerAddress& broker,
                                const fs::path& ca, Inbox& inbox) {
  IOTPKI_TRY(auto identity, iotpki::agent::LoadActiveIdentity(o));
  IOTPKI_TRY(std::string ca_pem, iotpki::ReadTextFile(ca, 1 << 20));
  auto anchors = iotpki::x509::Certificate::ChainFromPem(ca_pem);
  if (!anchors || anchors->empty()) {
    return iotpki::Fail(iotpki::Code::kFailedPrecondition,
                        ca.string() + " holds no PEM certificate to verify the broker with");
  }
  iotpki::agent::TlsSettings tls{.client_chain = {identity.certificate.ToDer()},
                                 .client_key = identity.key.get()};
  for (const auto& c : *anchors) tls.trust_anchors.push_back(c.ToDer());
  IOTPKI_TRY(auto ctx, iotpki::agent::MakeClientTlsContext(tls, broker.host));
  std::string id = identity.certificate.common_name();
  std::string topic = iotpki::agent::CommandTopic(id);
  iotpki::mqtt::ClientOptions mo{.host = broker.host,
                                 .port = broker.port,
                                 .client_id = id,
                                 .clean_session = false,
                                 .ssl_ctx = std::move(ctx)};
  Session session{.key = identity.key, .device_id = id};
  IOTPKI_TRY(session.client,
             iotpki::mqtt::Client::Create(mo, [&inbox, topic](const iotpki::mqtt::Message& m) {
               if (m.topic == topic) inbox.Push(m.payload);
             }));
  IOTPKI_CHECK(session.client->Connect());
  session.client->Start();
  IOTPKI_CHECK(session.client->Subscribe(topic, 1));
  return session;
}

void PrintOrphans(const iotpki::agent::Recovered& r) {
  for (const auto& uri : r.orphans_deleted) {
    std::cout << "recover: deleted the orphaned key " << uri << " (no slot names it)" << std::endl;
  }
}

// A rotation whose confirmation did not reach the server (the server went away after the
// request was sent) is left in STATE/pending. The server may have confirmed it and revoked the
// old certificate, so it is settled before anything uses the active certificate again: before
// each command, each renewal and each (re)connection, not only at start. True if the active
// certificate changed. Reports its own errors (STATE/pending is kept for the next try).
bool Settle(const AgentOptions& o) {
  auto r = iotpki::agent::Recover(o);
  if (!r) {
    Report(r.error());
    return false;
  }
  PrintOrphans(*r);
  if (r->what == iotpki::agent::Recovery::kNothing) return false;
  std::cout << "recover: " << iotpki::agent::RecoveryName(r->what) << std::endl;
  return r->what == iotpki::agent::Recovery::kCompleted ||
         r->what == iotpki::agent::Recovery::kActivated;
}

// One "run" step of auto-renewal; the seconds until the next. Reports its own errors.
int64_t AutoRenew(const AgentOptions& o, int& failures, bool& renewed) {
  renewed = false;
  auto pass = iotpki::agent::AutoRenewPass(o);
  if (!pass) {
    ++failures;
    int64_t wait = iotpki::agent::RetryBackoff(failures, Unit());
    Report(pass.error());
    std::cerr << "iotpki-agent: run: retry in " << wait << " s" << std::endl;
    return wait;
  }
  failures = 0;
  if (pass->renewed) {
    renewed = true;
    std::cout << "renewed: certificate " << pass->renewed->certificate.serial_hex() << " until "
              << iotpki::FormatUtc(pass->renewed->certificate.not_after()) << std::endl;
  }
  std::cout << "run: next renewal in " << pass->next_in << " s" << std::endl;
  return pass->next_in;
}

}  // namespace

int RunDaemon(const AgentOptions& options, const DaemonOptions& daemon) {
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGINT, OnStopSignal);
  int failures = 0;
  // A pending rotation first: until it is settled the active certificate may be revoked.
  while (!g_stop) {
    auto r = iotpki::agent::Recover(options);
    if (r) {
      PrintOrphans(*r);
      if (r->what != iotpki::agent::Recovery::kNothing) {
        std::cout << "recover: " << iotpki::agent::RecoveryName(r->what) << std::endl;
      }
      break;
    }
    int64_t wait = iotpki::agent::RetryBackoff(++failures, Unit());
    Report(r.error());
    std::cerr << "iotpki-agent: run: retry in " << wait << " s" << std::endl;
    SleepUnlessStopped(wait);
  }
  failures = 0;
  if (daemon.mqtt_url.empty()) {
    while (!g_stop) {
      bool renewed = false;
      Settle(options);
      SleepUnlessStopped(std::clamp<int64_t>(AutoRenew(options, failures, renewed), 1, 3600));
    }
    return 0;
  }

  auto broker = iotpki::mqtt::ParseBrokerUrl(daemon.mqtt_url);
  if (!broker)
    return Report(iotpki::Error(iotpki::Code::kInvalidArgument, broker.error().message()));
  fs::path ca = daemon.mqtt_ca;
  if (ca.empty()) {
    auto made = DefaultMqttCa(options);
    if (!made) return Report(made.error());
    ca = *made;
  }
  auto replay = iotpki::agent::FileReplayCache::Open(options.state / "nonces");
  if (!replay) return Report(replay.error());
  Inbox inbox;
  int connect_failures = 0;
  while (!g_stop) {
    Settle(options);
    auto session = Connect(options, *broker, ca, inbox);
    if (!session) {
      int64_t wait = iotpki::agent::RetryBackoff(++connect_failures, Unit());
      std::cerr << "iotpki-agent: run: MQTT: " << session.error().message() << "; retry in " << wait
                << " s" << std::endl;
      SleepUnlessStopped(wait);
      continue;
    }
    connect_failures = 0;
    std::cout << "mqtt: connected as " << session->device_id << " to " << broker->host << ":"
              << broker->port << std::endl;
    bool move = false;
    auto next_renewal = std::chrono::steady_clock::now();
    while (!g_stop && !move) {
      if (std::chrono::steady_clock::now() >= next_renewal) {
        if (Settle(options)) {
          move = true;
          continue;
        }
        bool renewed = false;
        int64_t wait = std::clamp<int64_t>(AutoRenew(options, failures, renewed), 1, 3600);
        next_renewal = std::chrono::steady_clock::now() + std::chrono::seconds(wait);
        move = renewed;
        continue;
      }
      auto envelope = inbox.Pop(std::chrono::milliseconds(200));
      if (!envelope) continue;
      if (Settle(options)) move = true;  // the session moves once this command is answered
      auto out = iotpki::agent::HandleCommand(options, *envelope, **replay, daemon.hooks);
      switch (out.kind) {
        case iotpki::agent::CommandOutcome::kRejected:
          std::cerr << "iotpki-agent: run: command rejected: " << out.error->message() << std::endl;
          break;
        case iotpki::agent::CommandOutcome::kFailed:
          Report(*out.error);
          break;
        case iotpki::agent::CommandOutcome::kRotated:
          std::cout << "rotated: certificate " << out.rotated->old_serial << " -> "
                    << out.rotated->installed.certificate.serial_hex() << ", confirmed"
                    << std::endl;
          move = true;  // the session moves to the new certificate
          break;
      }
      auto published =
          session->client->Publish(iotpki::agent::StatusTopic(session->device_id), out.status_json);
      if (!published) {
        std::cerr << "iotpki-agent: run: status not published: " << published.error().message()
                  << std::endl;
      }
    }
    session->client->Stop();
  }
  return 0;
}
