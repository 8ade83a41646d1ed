// iotpki serve: the onboarding server (EST and the JSON bootstrap API over mutual TLS).
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <map>
#include <optional>

#include "iotpki/admin/admin_listener.h"
#include "iotpki/ca/authority.h"
#include "iotpki/ca/crl_publisher.h"
#include "iotpki/ca/service_identity.h"
#include "iotpki/campaign/mqtt_notifier.h"
#include "iotpki/campaign/scheduler.h"
#include "iotpki/cli/cli.h"
#include "iotpki/cli/serve_config.h"
#include "iotpki/common/file.h"
#include "iotpki/common/log.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/enroll/ocsp_responder.h"
#include "iotpki/enroll/revocation_handlers.h"
#include "iotpki/enroll/service.h"
#include "iotpki/mqtt/client.h"
#include "iotpki/server/server.h"
#include "iotpki/store/postgres/pg_store.h"

namespace iotpki::cli {
namespace {

namespace fs = std::filesystem;

struct ServeArgs {
  std::string dir;
  std::string store;
  std::string listen;
  std::string config;
  PassphraseSources passphrases;
  std::string port_file;
  std::vector<std::string> names;
  std::string log_format;
  std::string log_level;
  std::string public_url;
  std::string broker_crl;
  bool campaigns = false;
  std::string mqtt_url;
  std::string mqtt_ca;
  std::string broker_reload;
  std::string admin_listen;
  std::string admin_port_file;
};

bool IsIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// The names the server certificate covers: the listen host (unless it is a wildcard address,
// for which localhost and this machine's name stand in) and any configured names.
void ServerNames(const std::string& host, const std::vector<std::string>& extra,
                 std::vector<std::string>& dns, std::vector<std::string>& ips) {
  std::vector<std::string> all;
  if (host == "0.0.0.0" || host == "::") {
    all = {"localhost", "127.0.0.1"};
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') all.push_back(name);
  } else {
    all.push_back(host);
  }
  all.insert(all.end(), extra.begin(), extra.end());
  for (const auto& n : all) {
    auto& into = IsIpAddress(n) ? ips : dns;
    if (std::find(into.begin(), into.end(), n) == into.end()) into.push_back(n);
  }
}

struct ServerIdentity {
  std::unique_ptr<crypto::PrivateKey> key;
  std::vector<Bytes> chain;
  bool issued = false;
};

// The server certificate kept in DIR (certs/server.pem, keys/server.key): reused while it is
// from the current operational CA, covers every name and has 30 days left; otherwise a new key
// and certificate are made, recorded in the store, and saved. Without a passphrase (a CA key in a
// token, no operational passphrase given) the key is never written: a new one is made at each
// start and lives in memory only.
Result<ServerIdentity> LoadOrIssueServerCert(ca::Authority& authority, const ServeConfig& config,
                                             std::optional<std::string_view> passphrase,
                                             const std::vector<std::string>& dns,
                                             const std::vector<std::string>& ips) {
  const x509::Certificate& ops = authority.certificate(ca::CaName::kOperational);
  ServerIdentity id;
  if (!config.certificate.empty()) {
    IOTPKI_TRY(std::string pem, ReadTextFile(config.certificate));
    IOTPKI_TRY(auto chain, x509::Certificate::ChainFromPem(pem));
    IOTPKI_TRY(std::string key_pem, ReadTextFile(config.key));
    IOTPKI_TRY(crypto::PrivateKey key,
               crypto::PrivateKey::FromPem(key_pem, passphrase.value_or("")));
    id.key = std::make_unique<crypto::PrivateKey>(std::move(key));
    for (const auto& c : chain) id.chain.push_back(c.ToDer());
    return id;
  }
  fs::path cert_path = authority.dir() / "certs/server.pem";
  fs::path key_path = authority.dir() / "keys/server.key";
  int64_t now = authority.clock().NowUnix();
  if (passphrase && fs::exists(cert_path) && fs::exists(key_path)) {
    IOTPKI_TRY(std::string pem, ReadTextFile(cert_path));
    IOTPKI_TRY(x509::Certificate cert, x509::Certificate::FromPem(pem));
    auto covers = [](const std::vector<std::string>& have, const std::vector<std::string>& want) {
      return std::all_of(want.begin(), want.end(), [&](const std::string& n) {
        return std::find(have.begin(), have.end(), n) != have.end();
      });
    };
    if (cert.IsSignedBy(ops.public_key()) && cert.not_after() - now > 30 * 86400 &&
        covers(cert.san_dns_names(), dns) && covers(cert.san_ip_addresses(), ips)) {
      IOTPKI_TRY(crypto::PrivateKey key, crypto::LoadKeyFile(key_path, *passphrase));
      if (key.public_key() == cert.public_key()) {
        id.key = std::make_unique<crypto::PrivateKey>(std::move(key));
        id.chain = {cert.ToDer(), ops.ToDer()};
        return id;
      }
    }
  }
  IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(crypto::KeyType::kP256));
  std::string cn = !dns.empty() ? dns[0] : ips[0];
  IOTPKI_TRY(x509::Certificate cert,
             authority.IssueServerCertificate(key.public_key(), cn, dns, ips, "serve"));
  if (passphrase) {
    IOTPKI_CHECK(crypto::SaveKeyFile(key_path, key, *passphrase));
    IOTPKI_CHECK(WriteFileAtomic(cert_path, cert.ToPem() + ops.ToPem()));
  }
  id.key = std::make_unique<crypto::PrivateKey>(std::move(key));
  id.chain = {cert.ToDer(), ops.ToDer()};
  id.issued = true;
  return id;
}

// A delegated OCSP responder of one issuing CA, kept in DIR (certs/ocsp-<ca>.pem,
// keys/ocsp-<ca>.key): reused while it is from that CA and in the first half of its life;
// otherwise a new key and certificate are made, recorded in the store, and saved (without a
// passphrase, as for the server's key: made at each start, in memory only).
struct ResponderIdentity {
  x509::Certificate certificate;
  std::shared_ptr<crypto::PrivateKey> key;
  bool issued = false;
};

Result<ResponderIdentity> LoadOrIssueResponder(ca::Authority& authority, ca::CaName ca,
                                               std::optional<std::string_view> passphrase) {
  std::string name(ca::CaNameText(ca));
  fs::path cert_path = authority.dir() / "certs" / ("ocsp-" + name + ".pem");
  fs::path key_path = authority.dir() / "keys" / ("ocsp-" + name + ".key");
  const x509::Certificate& issuer = authority.certificate(ca);
  int64_t now = authority.clock().NowUnix();
  if (passphrase && fs::exists(cert_path) && fs::exists(key_path)) {
    IOTPKI_TRY(std::string pem, ReadTextFile(cert_path));
    IOTPKI_TRY(x509::Certificate cert, x509::Certificate::FromPem(pem));
    if (cert.IsSignedBy(issuer.public_key()) && ca::InFirstHalfOfLife(cert, now)) {
      IOTPKI_TRY(crypto::PrivateKey key, crypto::LoadKeyFile(key_path, *passphrase));
      if (key.public_key() == cert.public_key()) {
        return ResponderIdentity{cert, std::make_shared<crypto::PrivateKey>(std::move(key))};
      }
    }
  }
  IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(crypto::KeyType::kP256));
  IOTPKI_TRY(x509::Certificate cert,
             authority.IssueOcspResponderCertificate(ca, key.public_key(), "serve"));
  if (passphrase) {
    IOTPKI_CHECK(crypto::SaveKeyFile(key_path, key, *passphrase));
    IOTPKI_CHECK(WriteFileAtomic(cert_path, cert.ToPem()));
  }
  log::Info("serve.ocsp_responder",
            {{"ca", name}, {"serial", cert.serial_hex()}, {"not_after", cert.not_after()}});
  return ResponderIdentity{cert, std::make_shared<crypto::PrivateKey>(std::move(key)), true};
}

std::optional<x509::Certificate> ResponderFile(ca::Authority& authority, ca::CaName ca) {
  auto pem = ReadTextFile(authority.dir() / "certs" /
                          ("ocsp-" + std::string(ca::CaNameText(ca)) + ".pem"));
  if (!pem) return std::nullopt;
  auto cert = x509::Certificate::FromPem(*pem);
  if (!cert) return std::nullopt;
  return *cert;
}

// Counts what the scheduler hands to the MQTT notifier, for /metrics.
class CountingNotifier final : public campaign::Notifier {
 public:
  CountingNotifier(campaign::Notifier& inner, server::Registry& metrics)
      : inner_(inner),
        published_(metrics.GetCounter("iotpki_campaign_notifications_total",
                                      "Rotate commands handed to the MQTT broker, by result",
                                      {{"result", "published"}})),
        failed_(metrics.GetCounter("iotpki_campaign_notifications_total",
                                   "Rotate commands handed to the MQTT broker, by result",
                                   {{"result", "failed"}})) {}
  Result<void> Notify(const campaign::RotateCommand& command) override {
    auto r = inner_.Notify(command);
    (r ? published_ : failed_).Inc();
    return r;
  }

 private:
  campaign::Notifier& inner_;
  server::Counter& published_;
  server::Counter& failed_;
};

// Lease owner and audit actor: unique among the servers sharing a store, and across restarts
// of one (a restarted server must not take its predecessor's leases for its own).
std::string ServerId() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] != '\0' ? host : "server") + "-" + std::to_string(::getpid()) + "-" +
         ToHex(crypto::RandomBytes(3));
}

// The campaigns' gauges, from the per-wave count tables (no scan of the jobs).
void AddCampaignGauges(server::Registry& metrics, store::Store& store) {
  metrics.AddGauge("iotpki_campaign_jobs", "Jobs of each campaign by state", [&store] {
    server::Registry::GaugeSamples out;
    auto campaigns = store.ListCampaigns();
    if (!campaigns) return out;
    for (const auto& c : *campaigns) {
      auto rows = store.CountJobs(c.id);
      if (!rows) continue;
      campaign::WaveCounts sum = campaign::Sum(campaign::ByWave(*rows, c.waves));
      for (size_t s = 0; s < store::kJobStateCount; ++s) {
        auto state = static_cast<store::JobState>(s);
        out.push_back(
            {{{"campaign", c.spec.name}, {"state", std::string(store::JobStateName(state))}},
             static_cast<double>(sum.of(state))});
      }
    }
    return out;
  });
  metrics.AddGauge(
      "iotpki_campaign_current_wave", "The current wave of each campaign (0-based)", [&store] {
        server::Registry::GaugeSamples out;
        auto campaigns = store.ListCampaigns();
        if (!campaigns) return out;
        for (const auto& c : *campaigns) {
          out.push_back({{{"campaign", c.spec.name}}, static_cast<double>(c.current_wave)});
        }
        return out;
      });
  metrics.AddGauge("iotpki_campaign_failure_rate",
                   "Failed jobs / jobs of each campaign's current wave", [&store] {
                     server::Registry::GaugeSamples out;
                     auto campaigns = store.ListCampaigns();
                     if (!campaigns) return out;
                     for (const auto& c : *campaigns) {
                       auto rows = store.CountJobs(c.id);
                       if (!rows) continue;
                       auto waves = campaign::ByWave(*rows, c.waves);
                       double rate =
                           c.current_wave < static_cast<int64_t>(waves.size())
                               ? campaign::FailureRate(waves[static_cast<size_t>(c.current_wave)])
                               : 0.0;
                       out.push_back({{{"campaign", c.spec.name}}, rate});
                     }
                     return out;
                   });
}

constexpr ca::CaName kIssuingCas[] = {ca::CaName::kManufacturing, ca::CaName::kOperational};

// A root key readable on the server's machine defeats the offline root (docs/operations.md,
// "An offline root"): said once at start, as a warning, without stopping the server.
void WarnIfRootKeyOnline(const ca::Authority& authority) {
  fs::path root = ca::KeyFilePath(authority.dir(), authority.config().root_key);
  if (!root.empty() && ::access(root.c_str(), R_OK) == 0) {
    log::Warn("serve.root_key_online",
              {{"path", root.string()},
               {"advice",
                "the server never uses the root key: move it offline (ca init --root-key-dir, "
                "docs/operations.md)"}});
  }
}

// The flags win over [log]; without either, text on a terminal and JSON Lines otherwise, at info.
Result<void> ConfigureLogging(const ServeArgs& args, const ServeConfig& config) {
  log::Format format = config.log_format.value_or(log::DefaultFormat());
  log::Level level = config.log_level.value_or(log::Level::kInfo);
  if (!args.log_format.empty()) {
    auto f = log::ParseFormat(args.log_format);
    if (!f) return Fail(Code::kInvalidArgument, "--log-format: " + f.error().message());
    format = *f;
  }
  if (!args.log_level.empty()) {
    auto l = log::ParseLevel(args.log_level);
    if (!l) return Fail(Code::kInvalidArgument, "--log-level: " + l.error().message());
    level = *l;
  }
  log::Configure(format, level);
  return {};
}

Result<void> RunServe(ServeArgs& args) {
  IOTPKI_TRY(ServeConfig config, LoadServeConfig(args.config));
  IOTPKI_CHECK(ConfigureLogging(args, config));
  if (!args.listen.empty()) config.listen = args.listen;
  if (!args.admin_listen.empty()) config.admin_listen = args.admin_listen;
  config.names.insert(config.names.end(), args.names.begin(), args.names.end());
  IOTPKI_TRY(auto listen, ParseListen(config.listen));
  // Campaign settings are checked before anything is unlocked, issued or logged.
  if (args.campaigns) config.campaigns.enabled = true;
  if (!args.mqtt_url.empty()) config.campaigns.mqtt_url = args.mqtt_url;
  if (!args.mqtt_ca.empty()) config.campaigns.mqtt_ca_file = args.mqtt_ca;
  if (config.campaigns.enabled) {
    if (config.campaigns.mqtt_url.empty() || config.campaigns.mqtt_ca_file.empty()) {
      return Fail(Code::kInvalidArgument,
                  "campaigns need an MQTT broker: give --mqtt mqtts://HOST:PORT and --mqtt-ca "
                  "FILE (the CA of the broker's certificate), or [campaigns] mqtt_url and "
                  "mqtt_ca_file");
    }
    if (auto url = mqtt::ParseBrokerUrl(config.campaigns.mqtt_url); !url) {
      return Fail(Code::kInvalidArgument, "--mqtt: " + url.error().message());
    }
  }
  std::optional<std::pair<std::string, uint16_t>> admin_listen;
  if (!config.admin_listen.empty()) {
    auto parsed = ParseListen(config.admin_listen);
    if (!parsed) return Fail(Code::kInvalidArgument, "--admin-listen: " + parsed.error().message());
    admin_listen = *parsed;
    // The dashboard is served with the same certificate: it must name the admin host too.
    if (admin_listen->first != "0.0.0.0" && admin_listen->first != "::") {
      config.names.push_back(admin_listen->first);
    }
  }

  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance(), args.store));
  // Refused before anything is unlocked or logged.
  if (!args.public_url.empty()) {
    if (auto set = authority->SetPublicUrl(args.public_url); !set) {
      return Fail(Code::kInvalidArgument, "--public-url: " + set.error().message());
    }
  }
  // Only what the server uses: the operational CA key and the bootstrap master. The root key
  // stays out of this process. The manufacturing key is opened only when it is on this machine
  // and its passphrase is given: it signs its CA's CRL and OCSP responder certificate; without
  // it those are published where the key is (`crl export` at the factory station).
  // A CA key in a PKCS#11 token is unlocked by the token's PIN: no passphrase is asked for it.
  // One given for its role is then used only to keep the server's own leaf keys (TLS, OCSP,
  // command) in encrypted files; without one they live in memory (docs/hardware-keys.md).
  auto in_token = [&](std::string_view uri) { return uri.rfind("pkcs11:", 0) == 0; };
  std::optional<crypto::Secret> passphrase;
  if (!in_token(authority->config().operational_key) ||
      HasPassphrase(args.passphrases, KeyRole::kOperational)) {
    IOTPKI_TRY(crypto::Secret p, ReadPassphrase(args.passphrases, KeyRole::kOperational));
    passphrase = std::move(p);
  }
  auto view = [](const std::optional<crypto::Secret>& p) -> std::optional<std::string_view> {
    if (!p) return std::nullopt;
    return p->view();
  };
  IOTPKI_CHECK(authority->Unlock(ca::CaName::kOperational, view(passphrase).value_or("")));
  std::optional<crypto::Secret> mfg_passphrase;
  bool mfg_online = false;
  {
    fs::path mfg_key = ca::KeyFilePath(authority->dir(), authority->config().manufacturing_key);
    bool mfg_token = in_token(authority->config().manufacturing_key);
    bool mfg_given = HasPassphrase(args.passphrases, KeyRole::kManufacturing);
    if (mfg_token || ((mfg_key.empty() || fs::exists(mfg_key)) && mfg_given)) {
      if (mfg_given) {
        IOTPKI_TRY(crypto::Secret p, ReadPassphrase(args.passphrases, KeyRole::kManufacturing));
        mfg_passphrase = std::move(p);
      }
      IOTPKI_CHECK(
          authority->Unlock(ca::CaName::kManufacturing, view(mfg_passphrase).value_or("")));
      mfg_online = true;
    } else {
      log::Info("serve.manufacturing_ca_offline",
                {{"advice",
                  "the manufacturing CA's CRL and OCSP are not served here: publish its CRL with "
                  "crl export where its key is"}});
    }
  }
  {
    IOTPKI_TRY(crypto::Secret bootstrap, ReadPassphrase(args.passphrases, KeyRole::kBootstrap));
    IOTPKI_CHECK(authority->UnlockBootstrap(bootstrap.view()));
  }
  WarnIfRootKeyOnline(*authority);

  std::vector<std::string> dns, ips;
  ServerNames(listen.first, config.names, dns, ips);
  IOTPKI_TRY(ServerIdentity identity,
             LoadOrIssueServerCert(*authority, config, view(passphrase), dns, ips));

  server::Registry metrics;
  if (identity.issued) {
    metrics
        .GetCounter("iotpki_certificates_issued_total",
                    "Certificates issued by this server, by profile", {{"profile", "tls-server"}})
        .Inc();
  }
  IOTPKI_TRY(auto service, enroll::EnrollService::Create(*authority, metrics, config.enroll));
  {
    // serverkeygen's key packages are signed by the server that makes the keys (RFC 7030 4.4.2).
    std::vector<x509::Certificate> chain;
    for (const auto& der : identity.chain) {
      IOTPKI_TRY(x509::Certificate c, x509::Certificate::FromDer(der));
      chain.push_back(std::move(c));
    }
    service->SetKeyPackageSigner(identity.key.get(), std::move(chain));
  }
  server::Router router;
  service->Mount(router);

  // CRLs and OCSP: built before the server accepts a request, then kept current.
  ca::CrlOptions crl_options;
  crl_options.broker_crl = args.broker_crl;
  crl_options.broker_reload = args.broker_reload;
  ca::CrlPublisher crls(*authority, crl_options);
  IOTPKI_CHECK(crls.Refresh());
  enroll::MountCrl(router, crls, authority->clock(), metrics);
  // A PostgreSQL status lookup is a network round trip: those answers wait on the handler pool.
  enroll::OcspResponder ocsp(
      authority->store(), authority->clock(), metrics,
      {.on_io_thread = dynamic_cast<store::PostgresStore*>(&authority->store()) == nullptr});
  auto set_responder = [&](ca::CaName ca) -> Result<void> {
    // A responder's key is kept under the passphrase of the CA that certifies it.
    std::optional<std::string_view> key_passphrase =
        ca == ca::CaName::kManufacturing ? view(mfg_passphrase) : view(passphrase);
    IOTPKI_TRY(ResponderIdentity r, LoadOrIssueResponder(*authority, ca, key_passphrase));
    ocsp.SetIssuer(std::string(ca::CaNameText(ca)), authority->certificate(ca), r.certificate,
                   r.key);
    return {};
  };
  auto serves = [&](ca::CaName ca) { return ca == ca::CaName::kOperational || mfg_online; };
  for (ca::CaName ca : kIssuingCas) {
    if (serves(ca)) IOTPKI_CHECK(set_responder(ca));
  }
  ocsp.Mount(router);

  // Rotation campaigns: one scheduler thread notifying devices over MQTT with signed commands
  // (docs/rotation.md#the-scheduler-in-iotpki-serve). The MQTT client reconnects by itself; a
  // broker that is down at start delays notifications (each a failed attempt), not the server.
  // Declared so that they are destroyed in a safe order on every path: the scheduler (which
  // calls the notifier) first, then the MQTT client (whose thread calls the notifier), then
  // what they used.
  std::atomic<campaign::MqttNotifier*> status_sink{nullptr};
  campaign::RandomJitter jitter;
  std::optional<ca::CommandIdentity> command_identity;
  std::unique_ptr<campaign::MqttNotifier> notifier;
  std::unique_ptr<CountingNotifier> counting;
  std::unique_ptr<mqtt::Client> mqtt_client;
  std::unique_ptr<campaign::Scheduler> scheduler;
  if (config.campaigns.enabled) {
    IOTPKI_TRY(mqtt::BrokerAddress broker, mqtt::ParseBrokerUrl(config.campaigns.mqtt_url));
    if (!passphrase) {
      return Fail(Code::kFailedPrecondition,
                  "campaigns need the operational passphrase (IOTPKI_OPERATIONAL_PASSPHRASE or "
                  "--operational-passphrase-file): the MQTT client reads the command key from an "
                  "encrypted file");
    }
    IOTPKI_TRY(command_identity, ca::LoadOrIssueCommandIdentity(*authority, passphrase->view()));
    const ca::CommandIdentity& command = *command_identity;
    std::string server_id = ServerId();
    mqtt::ClientOptions mo{.host = broker.host,
                           .port = broker.port,
                           .client_id = "iotpki-server-" + server_id,
                           .ca_file = config.campaigns.mqtt_ca_file,
                           .cert_file = command.cert_file,
                           .key_file = command.key_file,
                           .key_passphrase = std::string(passphrase->view())};
    auto client = mqtt::Client::Create(mo, [&status_sink, &metrics](const mqtt::Message& m) {
      campaign::MqttNotifier* n = status_sink.load();
      if (n == nullptr) return;
      campaign::StatusOutcome outcome = n->HandleStatus(m);
      metrics
          .GetCounter("iotpki_campaign_status_messages_total",
                      "Device status messages on MQTT, by what became of them",
                      {{"outcome", std::string(campaign::StatusOutcomeName(outcome))}})
          .Inc();
    });
    if (!client) return Fail(std::move(client).error().Context("--mqtt-ca / command certificate"));
    mqtt_client = std::move(*client);
    if (auto connected = mqtt_client->Connect(); !connected) {
      log::Warn("serve.mqtt_unavailable", {{"broker", config.campaigns.mqtt_url},
                                           {"error", connected.error().message()},
                                           {"detail", connected.error().detail()}});
    }
    mqtt_client->Start();
    notifier = std::make_unique<campaign::MqttNotifier>(
        *mqtt_client, *command.key, command.certificate, authority->store(), authority->clock(),
        jitter, "server:" + server_id);
    status_sink.store(notifier.get());
    if (auto sub = mqtt_client->Subscribe(std::string(campaign::kAllStatusTopics)); !sub) {
      log::Warn("serve.mqtt_subscribe_failed", {{"error", sub.error().message()}});
    }
    counting = std::make_unique<CountingNotifier>(*notifier, metrics);
    scheduler = std::make_unique<campaign::Scheduler>(
        authority->store(), *counting, authority->clock(), jitter,
        campaign::SchedulerOptions{
            .owner = server_id,
            .lease = std::chrono::seconds(config.campaigns.lease_s),
            .interval = std::chrono::milliseconds(config.campaigns.interval_s * 1000)});
    AddCampaignGauges(metrics, authority->store());
    log::Info("serve.campaigns", {{"broker", config.campaigns.mqtt_url},
                                  {"server_id", server_id},
                                  {"command_certificate", command.certificate.serial_hex()}});
  }

  router.Add("GET", "/metrics", "metrics", [&metrics](const server::Request&) {
    return server::Response{.status = 200,
                            .content_type = "text/plain; version=0.0.4; charset=utf-8",
                            .body = metrics.Render()};
  });

  server::ServerOptions options = config.server;
  options.host = listen.first;
  options.port = listen.second;
  options.certificate_chain = identity.chain;
  options.key = identity.key.get();
  options.client_issuers = service->ClientIssuers();

  // SIGTERM and SIGINT are taken synchronously by this thread (sigwait); every thread the
  // server starts inherits the blocked mask, so none of them is interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  IOTPKI_TRY(auto srv, server::Server::Start(options, router, metrics));
  std::string shown =
      srv->address().find(':') != std::string::npos ? "[" + srv->address() + "]" : srv->address();
  if (!args.port_file.empty()) {
    IOTPKI_CHECK(WriteFileAtomic(args.port_file, std::to_string(srv->port()) + "\n"));
  }
  std::string names;
  for (const auto& n : dns) names += (names.empty() ? "" : ", ") + n;
  for (const auto& n : ips) names += (names.empty() ? "" : ", ") + n;
  log::Info("serve.listening", {{"address", shown + ":" + std::to_string(srv->port())},
                                {"server_certificate_names", names}});

  std::unique_ptr<admin::AdminListener> admin_srv;
  if (admin_listen) {
    IOTPKI_TRY(admin_srv, admin::AdminListener::Start({.host = admin_listen->first,
                                                       .port = admin_listen->second,
                                                       .certificate_chain = identity.chain,
                                                       .key = identity.key.get(),
                                                       .api = {.store = &authority->store(),
                                                               .clock = &authority->clock(),
                                                               .dir = authority->dir(),
                                                               .crls = &crls}}));
    if (!args.admin_port_file.empty()) {
      IOTPKI_CHECK(WriteFileAtomic(args.admin_port_file, std::to_string(admin_srv->port()) + "\n"));
    }
    log::Info("serve.admin_listening",
              {{"address", admin_srv->address() + ":" + std::to_string(admin_srv->port())}});
  }

  crls.Start();
  if (scheduler) {
    server::Counter& passes = metrics.GetCounter("iotpki_campaign_scheduler_passes_total",
                                                 "Scheduler passes completed by this server");
    server::Counter& pass_errors = metrics.GetCounter("iotpki_campaign_scheduler_errors_total",
                                                      "Scheduler passes that failed");
    scheduler->Start(
        [&pass_errors](const Error& e) {
          pass_errors.Inc();
          log::Warn("campaign.pass_failed", {{"error", e.message()}, {"detail", e.detail()}});
        },
        [&passes](const campaign::TickReport& r) {
          passes.Inc();
          if (r.claimed > 0 || !r.actions.empty()) {
            log::Info("campaign.pass", {{"claimed", r.claimed},
                                        {"notified", r.notified},
                                        {"retried", r.retried},
                                        {"failed", r.failed},
                                        {"conflicts", r.conflicts}});
          }
        });
  }
  // The responder and command certificates are renewed at half their life (30 days by
  // default); a check a minute costs nothing and needs no timer of its own. The TLS certificate
  // is reissued at start when it has less than 30 days left; a server running past that point
  // is told to restart, once a day, well before it expires.
  IOTPKI_TRY(x509::Certificate tls_cert, x509::Certificate::FromDer(identity.chain[0]));
  int64_t tls_warned_at = 0;
  int sig = 0;
  for (;;) {
    timespec minute{60, 0};
    sig = sigtimedwait(&signals, nullptr, &minute);
    if (sig > 0) break;
    int64_t now = authority->clock().NowUnix();
    if (command_identity && !ca::InFirstHalfOfLife(command_identity->certificate, now)) {
      if (auto renewed = ca::LoadOrIssueCommandIdentity(*authority, passphrase->view()); !renewed) {
        log::Warn("serve.command_certificate_failed",
                  {{"error", renewed.error().message()}, {"detail", renewed.error().detail()}});
      } else {
        // The MQTT client reads the replaced files at its next (re)connection; commands are
        // signed with the new key from now on.
        notifier->SetSigner(renewed->key, renewed->certificate);
        command_identity = std::move(*renewed);
      }
    }
    if (tls_cert.not_after() - now < 30 * 86400 && now - tls_warned_at >= 86400) {
      tls_warned_at = now;
      log::Warn("serve.tls_certificate_expiring",
                {{"serial", tls_cert.serial_hex()},
                 {"not_after", tls_cert.not_after()},
                 {"advice", "restart iotpki serve: it reissues its TLS certificate at start"}});
    }
    for (ca::CaName ca : kIssuingCas) {
      if (!serves(ca)) continue;
      auto current = ResponderFile(*authority, ca);
      if (current && ca::InFirstHalfOfLife(*current, authority->clock().NowUnix())) continue;
      if (auto r = set_responder(ca); !r) {
        log::Warn("serve.ocsp_responder_failed", {{"ca", ca::CaNameText(ca)},
                                                  {"error", r.error().message()},
                                                  {"detail", r.error().detail()}});
      }
    }
  }
  crls.Stop();
  if (scheduler) scheduler->Stop();
  status_sink.store(nullptr);
  if (mqtt_client) mqtt_client->Stop();
  log::Info("serve.stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"},
                               {"drain_timeout_s", options.limits.drain_timeout.count()}});
  if (admin_srv) admin_srv->Shutdown();
  srv->Shutdown();
  srv->Wait();
  if (admin_srv) admin_srv->Wait();
  auto stats = service->committer().stats();
  log::Info("serve.stopped",
            {{"store_batches", stats.batches}, {"store_transactions", stats.transactions}});
  return {};
}

}  // namespace

void AddServeCommands(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* serve = app.add_subcommand(
      "serve", "Run the onboarding server: EST and the JSON bootstrap API over mutual TLS");
  serve->add_option("--dir", args->dir, "CA directory")->required();
  AddStoreOption(serve, args->store);
  serve->add_option("--listen", args->listen,
                    "HOST:PORT to listen on (default 127.0.0.1:8443; port 0 picks a free one)");
  serve->add_option("--config", args->config,
                    "TOML file with [server], [bootstrap] and [log] settings");
  AddPassphraseOptions(serve, args->passphrases,
                       {KeyRole::kOperational, KeyRole::kManufacturing, KeyRole::kBootstrap});
  serve->add_option("--port-file", args->port_file, "Write the port listened on to this file");
  serve->add_option("--name", args->names,
                    "Extra host name or address for the server certificate (repeatable)");
  serve->add_option("--log-format", args->log_format,
                    "text or json (JSON Lines); default: text on a terminal, json otherwise");
  serve->add_option("--log-level", args->log_level, "debug, info (default), warn or error");
  serve->add_option("--public-url", args->public_url,
                    "URL relying parties reach this server at (https://host:port); device "
                    "certificates then name its CRL and OCSP responder (default: [status] "
                    "public_url of iotpki.toml)");
  serve->add_option("--broker-crl", args->broker_crl,
                    "Keep this file the combined PEM CRL set for an MQTT broker (Mosquitto's "
                    "crlfile), replaced atomically");
  serve->add_option("--broker-reload", args->broker_reload,
                    "Shell command run after each --broker-crl change, e.g. 'kill -HUP 1234'");
  serve->add_flag("--campaigns", args->campaigns,
                  "Run rotation campaigns: a scheduler notifying devices over MQTT (default: "
                  "[campaigns] enabled)");
  serve->add_option("--mqtt", args->mqtt_url,
                    "The MQTT broker for campaigns, mqtts://HOST[:PORT] (default: [campaigns] "
                    "mqtt_url)");
  serve->add_option("--mqtt-ca", args->mqtt_ca,
                    "PEM file of the CAs that sign the broker's certificate (default: [campaigns] "
                    "mqtt_ca_file)");
  serve->add_option("--admin-listen", args->admin_listen,
                    "HOST:PORT of the dashboard's own TLS listener, for operator certificates of "
                    "the admin CA only (default: [server] admin_listen; none)");
  serve->add_option("--admin-port-file", args->admin_port_file,
                    "Write the port the admin listener listens on to this file");
  SetAction(serve, [args] { return RunServe(*args); });
}

}  // namespace iotpki::cli
