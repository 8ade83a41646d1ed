#include "fleet.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "iotpki/agent/commands.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/mfg/transport.h"
#include "iotpki/mqtt/client.h"
#include "iotpki/x509/certificate.h"

namespace fleet {
namespace {

namespace fs = std::filesystem;
using iotpki::agent::AgentOptions;
using SteadyClock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void OnStopSignal(int) { g_stop = true; }

// A fixed pool of threads running tasks in order of submission.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 0; i < std::max(threads, 1); ++i) {
      threads_.emplace_back([this] { Work(); });
    }
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return done_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // Guarded by mu_.
  bool done_ = false;                        // Guarded by mu_.
  std::vector<std::thread> threads_;
};

// The device folders of DIR (a factory batch or a fleet), sorted by name.
std::vector<std::string> Folders(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    // Hidden ones are work in progress (mfg provision's .partial).
    if (e.is_directory() && !name.empty() && name[0] != '.') out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The active certificate of a state directory.
iotpki::Result<iotpki::x509::Certificate> ActiveCertificate(const fs::path& state) {
  IOTPKI_TRY(std::string pem, iotpki::ReadTextFile(state / "active" / "cert.pem", 1 << 16));
  return iotpki::x509::Certificate::FromPem(pem);
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// The batch's transport key (batch.json), derived once: the simulator plays the factory station
// that injects each device's key into its secure element, so a device holds its key in the
// clear (STATE/factory/key.pem, 0600) and nobody pays PBKDF2's 100,000 iterations per device.
// Nothing (no batch.json, or not --keys ca): the agent reads the folder's key as it is.
iotpki::Result<std::optional<iotpki::mfg::TransportKey>> BatchTransportKey(
    const fs::path& factory, const std::string& passphrase) {
  std::error_code ec;
  if (!fs::exists(factory / "batch.json", ec)) return std::nullopt;
  IOTPKI_TRY(std::string text, iotpki::ReadTextFile(factory / "batch.json", 1 << 20));
  auto batch = nlohmann::json::parse(text, nullptr, false);
  if (batch.is_discarded() || !batch.contains("transport") || passphrase.empty()) {
    return std::nullopt;
  }
  const auto& t = batch["transport"];
  IOTPKI_TRY(auto salt, iotpki::FromHex(t.value("salt", "")));
  IOTPKI_TRY(auto key,
             iotpki::mfg::TransportKey::Derive(passphrase, salt, t.value("iterations", 0)));
  return std::optional<iotpki::mfg::TransportKey>(std::move(key));
}

// Copies the factory folder into STATE/factory, with the key in the clear when `transport`.
iotpki::Result<void> InstallFactoryFolder(const fs::path& from, const fs::path& to,
                                          const iotpki::mfg::TransportKey* transport) {
  std::error_code ec;
  fs::remove_all(to, ec);
  fs::copy(from, to, fs::copy_options::recursive, ec);
  if (ec) {
    return iotpki::Fail(iotpki::Code::kInternal,
                        "cannot copy " + from.string() + ": " + ec.message());
  }
  if (transport == nullptr) return {};
  IOTPKI_TRY(std::string pem, iotpki::ReadTextFile(to / "key.pem", 1 << 16));
  IOTPKI_TRY(auto key, transport->Decrypt(pem));
  IOTPKI_TRY(auto der, key.ToDer());
  return iotpki::WriteFileAtomic(to / "key.pem", iotpki::ossl::PemEncode("PRIVATE KEY", der), 0600);
}

}  // namespace

int BootstrapFleet(const BootstrapOptions& o) {
  std::vector<std::string> names = Folders(o.factory);
  if (names.empty()) {
    std::cerr << "iotpki-fleet: no device folders in " << o.factory
              << " (make them with iotpki mfg provision --out)" << std::endl;
    return 2;
  }
  if (o.devices > 0) {
    if (static_cast<size_t>(o.devices) > names.size()) {
      std::cerr << "iotpki-fleet: --devices " << o.devices << " but " << o.factory << " holds "
                << names.size() << " devices (provision more)" << std::endl;
      return 2;
    }
    names.resize(static_cast<size_t>(o.devices));
  }
  std::error_code ec;
  fs::create_directories(o.fleet, ec);
  if (ec) {
    std::cerr << "iotpki-fleet: cannot create " << o.fleet << ": " << ec.message() << std::endl;
    return 1;
  }
  auto transport = BatchTransportKey(o.factory, o.agent.key_passphrase);
  if (!transport) {
    std::cerr << "iotpki-fleet: the batch's transport key: " << transport.error().message()
              << std::endl;
    return 1;
  }
  const iotpki::mfg::TransportKey* tk = *transport ? &**transport : nullptr;
  std::atomic<int> done{0}, kept{0}, failed{0};
  std::mutex err_mu;
  std::string first_error;
  auto start = SteadyClock::now();
  {
    Pool pool(o.workers);
    for (const auto& name : names) {
      pool.Submit([&, name] {
        AgentOptions a = o.agent;
        a.state = o.fleet / name;
        std::error_code e;
        if (fs::exists(a.state / "active", e)) {
          ++kept;
          return;
        }
        fs::create_directories(a.state, e);
        auto installed = InstallFactoryFolder(o.factory / name, a.state / "factory", tk);
        if (tk != nullptr) a.key_passphrase.clear();
        auto r = !installed ? iotpki::Result<iotpki::agent::Installed>(
                                  iotpki::Fail(std::move(installed).error()))
                            : iotpki::agent::Bootstrap(a, iotpki::agent::BootstrapMode::kEst);
        if (r) {
          ++done;
          return;
        }
        ++failed;
        std::lock_guard<std::mutex> lock(err_mu);
        if (first_error.empty()) first_error = name + ": " + OneLine(r.error().message());
      });
    }
  }
  double s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  std::cout << "bootstrap: " << done << " devices onboarded, " << kept << " already, " << failed
            << " failed in " << std::fixed << std::setprecision(1) << s << " s" << std::endl;
  if (failed > 0) {
    std::cerr << "iotpki-fleet: bootstrap failed for " << failed
              << " devices; first: " << first_error << std::endl;
    return 1;
  }
  return 0;
}

namespace {

struct Device {
  std::string name;
  fs::path state;
  std::string id;
  bool offline = false;
  bool fail_install = false;
  bool slow = false;
  std::unique_ptr<iotpki::agent::FileReplayCache> replay;

  // The event loop's alone.
  std::unique_ptr<iotpki::mqtt::Client> client;
  bool subscribed = false;
  bool busy = false;  // on a worker
  std::deque<std::string> inbox;
  std::optional<SteadyClock::time_point> recover_at;
  int recover_failures = 0;

  // Written by the worker holding the device, read by the loop after it returned.
  std::string initial_serial;
  bool ever_online = false;
  int commands = 0;  // verified rotate commands acted on
  int rotations = 0;
  int failures = 0;
  int rejected = 0;
  int recoveries = 0;
  std::string last_error;
};

struct Result {
  size_t device = 0;
  std::vector<std::string> statuses;  // to publish, in order
  bool rotated = false;               // the session moves to the new certificate
  bool pending_left = false;          // STATE/pending remains: Recover later
};

class Fleet {
 public:
  explicit Fleet(const RunOptions& o) : o_(o), pool_(o.workers) {
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  }
  ~Fleet() {
    for (auto& d : devices_) d.client.reset();
    if (wake_ >= 0) close(wake_);
  }

  int Run();

 private:
  iotpki::Result<void> Load();
  iotpki::Result<void> Connect(Device& d);
  void Dispatch(size_t i);
  void Recover(size_t i);
  void Handle(Device& dev, const AgentOptions& a, const std::string& envelope, Result& r);
  void Finish(Result r);
  void Wake() {
    uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
  }
  std::string Serial(const Device& d) const;
  void Report(double elapsed);

  const RunOptions& o_;
  Pool pool_;
  int wake_ = -1;
  std::vector<Device> devices_;
  iotpki::mqtt::BrokerAddress broker_;
  std::mutex mu_;
  std::deque<Result> results_;                              // Guarded by mu_.
  std::multimap<SteadyClock::time_point, size_t> delayed_;  // slow devices' next command
  std::map<std::string, int> rejections_;                   // reason -> count. Guarded by mu_.
  int rotated_devices_ = 0;
  std::optional<SteadyClock::time_point> first_command_, last_rotation_;
};

iotpki::Result<void> Fleet::Load() {
  std::vector<std::string> names = Folders(o_.fleet);
  if (static_cast<size_t>(o_.first) > names.size()) names.clear();
  names.erase(names.begin(), names.begin() + std::min<size_t>(o_.first, names.size()));
  if (o_.devices > 0) {
    if (static_cast<size_t>(o_.devices) > names.size()) {
      return iotpki::Fail(iotpki::Code::kInvalidArgument,
                          "--devices " + std::to_string(o_.devices) + " but " + o_.fleet.string() +
                              " holds " + std::to_string(names.size()) +
                              " devices from --first (iotpki-fleet bootstrap makes more)");
    }
    names.resize(static_cast<size_t>(o_.devices));
  }
  if (names.empty()) {
    return iotpki::Fail(iotpki::Code::kInvalidArgument,
                        "no devices in " + o_.fleet.string() + " (run iotpki-fleet bootstrap)");
  }
  devices_.resize(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    Device& d = devices_[i];
    d.name = names[i];
    d.state = o_.fleet / names[i];
    auto cert = ActiveCertificate(d.state);
    if (!cert) {
      return iotpki::Fail(iotpki::Code::kFailedPrecondition,
                          d.name + " has no working certificate (iotpki-fleet bootstrap): " +
                              cert.error().message());
    }
    d.id = cert->common_name();
    d.initial_serial = cert->serial_hex();
    IOTPKI_TRY(d.replay, iotpki::agent::FileReplayCache::Open(d.state / "nonces"));
  }
  // Disjoint sets of exact sizes, drawn with the seed: offline, failing, slow.
  std::vector<size_t> order(devices_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(o_.seed);
  std::shuffle(order.begin(), order.end(), rng);
  auto count = [&](double share) {
    return static_cast<size_t>(share * static_cast<double>(devices_.size()) + 0.5);
  };
  size_t k = 0;
  for (size_t n = count(o_.offline_share); n > 0 && k < order.size(); --n) {
    devices_[order[k++]].offline = true;
  }
  for (size_t n = count(o_.fail_install_share); n > 0 && k < order.size(); --n) {
    devices_[order[k++]].fail_install = true;
  }
  for (size_t n = count(o_.slow_share); n > 0 && k < order.size(); --n) {
    devices_[order[k++]].slow = true;
  }
  return {};
}

// A session with the active slot's files (resolved: a later rotation does not change what this
// session presents), persistent (the broker queues commands while the device is away).
iotpki::Result<void> Fleet::Connect(Device& d) {
  std::error_code ec;
  fs::path slot = fs::canonical(d.state / "active", ec);
  if (ec) {
    return iotpki::Fail(iotpki::Code::kFailedPrecondition,
                        d.name + ": no active working certificate");
  }
  size_t index = static_cast<size_t>(&d - devices_.data());
  std::string topic = iotpki::agent::CommandTopic(d.id);
  iotpki::mqtt::ClientOptions mo{.host = broker_.host,
                                 .port = broker_.port,
                                 .client_id = d.id,
                                 .clean_session = false,
                                 .ca_file = o_.mqtt_ca,
                                 .cert_file = slot / "cert.pem",
                                 .key_file = slot / "key.pem",
                                 .keepalive_seconds = 60,
                                 .reconnect_min = std::chrono::milliseconds(1000),
                                 // Bounded low: a simulated fleet is on loopback, where a failed
                                 // connection means a busy broker, not one that is away.
                                 .reconnect_max = std::chrono::milliseconds(5000)};
  d.client.reset();
  d.subscribed = false;
  IOTPKI_TRY(d.client,
             iotpki::mqtt::Client::Create(mo, [this, index, topic](const iotpki::mqtt::Message& m) {
               if (m.topic != topic) return;
               Device& dev = devices_[index];
               // A flood keeps the newest: the older ones expire first.
               if (dev.inbox.size() >= 16) dev.inbox.pop_front();
               dev.inbox.push_back(m.payload);
             }));
  (void)d.client->BeginConnect();  // a failure is retried by Service after its backoff
  return {};
}

std::string Fleet::Serial(const Device& d) const {
  auto cert = ActiveCertificate(d.state);
  return cert ? cert->serial_hex() : "";
}

// Hands the device's commands received so far to a worker, which acts on them in order, as
// the agent does: the agent's own HandleCommand, after a Recover if a rotation was left pending.
// All at once, so that commands the broker kept while the device was away or busy (expired by
// now, most of them) cost one trip through the pool, not one each.
void Fleet::Dispatch(size_t i) {
  Device& d = devices_[i];
  std::vector<std::string> envelopes(std::make_move_iterator(d.inbox.begin()),
                                     std::make_move_iterator(d.inbox.end()));
  d.inbox.clear();
  d.busy = true;
  if (!first_command_) first_command_ = SteadyClock::now();
  pool_.Submit([this, i, envelopes = std::move(envelopes)] {
    Device& dev = devices_[i];
    AgentOptions a = o_.agent;
    a.state = dev.state;
    Result r{.device = i};
    for (const auto& envelope : envelopes) Handle(dev, a, envelope, r);
    {
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(std::move(r));
    }
    Wake();
  });
}

void Fleet::Handle(Device& dev, const AgentOptions& a, const std::string& envelope, Result& r) {
  {
    std::error_code ec;
    if (fs::exists(dev.state / "pending", ec)) {
      auto rec = iotpki::agent::Recover(a);
      if (rec && rec->what != iotpki::agent::Recovery::kNothing) ++dev.recoveries;
    }
    iotpki::agent::RotateHooks hooks;
    hooks.fail_install = dev.fail_install;
    auto out = iotpki::agent::HandleCommand(a, envelope, *dev.replay, hooks);
    r.statuses.push_back(out.status_json);
    switch (out.kind) {
      case iotpki::agent::CommandOutcome::kRejected: {
        ++dev.rejected;
        std::lock_guard<std::mutex> lock(mu_);
        ++rejections_[OneLine(out.error->message()).substr(0, 80)];
        break;
      }
      case iotpki::agent::CommandOutcome::kFailed:
        ++dev.commands;
        ++dev.failures;
        dev.last_error = OneLine(out.error->message());
        r.pending_left = fs::exists(dev.state / "pending", ec);
        break;
      case iotpki::agent::CommandOutcome::kRotated:
        ++dev.commands;
        ++dev.rotations;
        r.rotated = true;
        r.pending_left = false;
        break;
    }
  }
}

// A rotation left pending (its confirmation did not reach the server): Recover, as the agent
// does at start, until it settles.
void Fleet::Recover(size_t i) {
  Device& d = devices_[i];
  d.busy = true;
  d.recover_at.reset();
  pool_.Submit([this, i] {
    Device& dev = devices_[i];
    AgentOptions a = o_.agent;
    a.state = dev.state;
    Result r{.device = i};
    auto rec = iotpki::agent::Recover(a);
    if (rec) {
      if (rec->what != iotpki::agent::Recovery::kNothing) ++dev.recoveries;
      r.rotated = rec->what == iotpki::agent::Recovery::kCompleted ||
                  rec->what == iotpki::agent::Recovery::kActivated;
      if (r.rotated) ++dev.rotations;
    } else {
      r.pending_left = true;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(std::move(r));
    }
    Wake();
  });
}

void Fleet::Finish(Result r) {
  Device& d = devices_[r.device];
  d.busy = false;
  for (const auto& status : r.statuses) {
    if (!d.client || !d.client->connected()) break;
    // QoS 1, queued in the session: a status lost with the connection is repeated over HTTPS
    // by the agent's own report (Rotate), so nothing waits for the PUBACK here.
    (void)d.client->PublishAsync(iotpki::agent::StatusTopic(d.id), status);
  }
  if (r.pending_left) {
    d.recover_failures = std::min(d.recover_failures + 1, 6);
    d.recover_at = SteadyClock::now() + std::chrono::seconds(1 << d.recover_failures);
  } else {
    d.recover_failures = 0;
  }
  if (r.rotated) {
    if (d.rotations == 1) ++rotated_devices_;
    last_rotation_ = SteadyClock::now();
    // The session moves to the new certificate (the old one is revoked now).
    if (!d.offline) (void)Connect(d);
  }
}

int Fleet::Run() {
  if (auto loaded = Load(); !loaded) {
    std::cerr << "iotpki-fleet: " << loaded.error().message() << std::endl;
    return 2;
  }
  auto broker = iotpki::mqtt::ParseBrokerUrl(o_.mqtt_url);
  if (!broker) {
    std::cerr << "iotpki-fleet: " << broker.error().message() << std::endl;
    return 2;
  }
  broker_ = *broker;
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGINT, OnStopSignal);
  auto start = SteadyClock::now();
  for (auto& d : devices_) {
    if (auto c = Connect(d); !c) {
      std::cerr << "iotpki-fleet: " << c.error().message() << std::endl;
      return 1;
    }
  }
  // Phases: every device connects and subscribes once (so the broker keeps a session for
  // each); then the offline share drops off and the fleet is ready; they come back later.
  bool ready = false;
  std::optional<SteadyClock::time_point> settled_at;
  bool coming_back = false;
  SteadyClock::time_point back_at{};
  std::vector<pollfd> fds;
  std::vector<size_t> who;
  auto last_sweep = SteadyClock::now();
  size_t subscribed = 0;
  while (!g_stop) {
    fds.clear();
    who.clear();
    fds.push_back({.fd = wake_, .events = POLLIN, .revents = 0});
    for (size_t i = 0; i < devices_.size(); ++i) {
      auto& c = devices_[i].client;
      if (!c) continue;
      int fd = c->socket();
      if (fd < 0) continue;
      fds.push_back({.fd = fd,
                     .events = static_cast<short>(POLLIN | (c->WantWrite() ? POLLOUT : 0)),
                     .revents = 0});
      who.push_back(i);
    }
    int n = poll(fds.data(), fds.size(), 100);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      uint64_t v = 0;
      (void)!read(wake_, &v, sizeof v);
    }
    for (size_t k = 1; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      bool readable = (fds[k].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
      devices_[who[k - 1]].client->Service(readable, (fds[k].revents & POLLOUT) != 0);
    }
    auto now = SteadyClock::now();
    if (now - last_sweep >= std::chrono::milliseconds(250)) {
      last_sweep = now;
      for (auto& d : devices_) {
        if (d.client) d.client->Service(false, false);
      }
    }
    std::deque<Result> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.swap(results_);
    }
    for (auto& r : done) Finish(std::move(r));
    for (size_t i = 0; i < devices_.size(); ++i) {
      Device& d = devices_[i];
      if (!d.client) continue;
      if (!d.subscribed && d.client->connected()) {
        d.ever_online = true;
        if (d.client->Subscribe(iotpki::agent::CommandTopic(d.id), 1)) {
          d.subscribed = true;
          if (!ready) ++subscribed;
        }
      }
      if (d.busy) continue;
      if (d.recover_at && now >= *d.recover_at) {
        Recover(i);
        continue;
      }
      if (d.inbox.empty() || !ready) continue;
      if (d.slow) {
        d.busy = true;
        delayed_.emplace(now + o_.slow_by, i);
        continue;
      }
      Dispatch(i);
    }
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      size_t i = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      if (devices_[i].inbox.empty()) {
        devices_[i].busy = false;
      } else {
        Dispatch(i);
      }
    }
    if (!ready && subscribed == devices_.size()) {
      // The SUBSCRIBEs went out with the last pass; one more second for the broker to take them.
      if (!settled_at) settled_at = now + std::chrono::seconds(1);
      if (now >= *settled_at) {
        size_t offline = 0;
        for (auto& d : devices_) {
          if (d.offline) {
            d.client.reset();  // power off: no DISCONNECT, the broker keeps the session
            ++offline;
          }
        }
        ready = true;
        coming_back = offline > 0;
        back_at = now + o_.back_after;
        double s = std::chrono::duration<double>(now - start).count();
        std::cout << "ready: " << devices_.size() - offline << " devices online, " << offline
                  << " offline for " << o_.back_after.count() << " s (connected in " << std::fixed
                  << std::setprecision(1) << s << " s)" << std::endl;
        if (!o_.ready_file.empty()) (void)iotpki::WriteFileAtomic(o_.ready_file, "ready\n");
      }
    }
    if (coming_back && now >= back_at) {
      coming_back = false;
      size_t back = 0;
      for (auto& d : devices_) {
        if (d.offline) {
          d.offline = false;
          ++back;
          (void)Connect(d);
        }
      }
      std::cout << "back online: " << back << " devices" << std::endl;
    }
    if (o_.until_rotated > 0 && rotated_devices_ >= o_.until_rotated) break;
  }
  // Let the workers finish what they hold (a rotation is not cut in half by the simulator).
  for (auto& [t, i] : delayed_) devices_[i].busy = false;
  delayed_.clear();
  for (;;) {
    std::deque<Result> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.swap(results_);
    }
    for (auto& r : done) Finish(std::move(r));
    if (std::none_of(devices_.begin(), devices_.end(), [](const Device& d) { return d.busy; })) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Report(std::chrono::duration<double>(SteadyClock::now() - start).count());
  return 0;
}

void Fleet::Report(double elapsed) {
  std::map<std::string, int> by_outcome;
  std::ofstream out;
  if (!o_.out.empty()) out.open(o_.out, std::ios::trunc);
  int commands = 0, rotations = 0, failures = 0, rejected = 0, recoveries = 0, retried = 0;
  for (const auto& d : devices_) {
    std::string now_serial = Serial(d);
    std::error_code ec;
    bool pending = fs::exists(d.state / "pending", ec);
    std::string outcome = !d.ever_online                   ? "never_online"
                          : pending                        ? "pending"
                          : now_serial != d.initial_serial ? "rotated"
                          : d.failures > 0                 ? "rolled_back"
                                                           : "untouched";
    ++by_outcome[outcome];
    commands += d.commands;
    rotations += d.rotations;
    failures += d.failures;
    rejected += d.rejected;
    recoveries += d.recoveries;
    if (d.commands > 1) ++retried;
    if (out.is_open()) {
      nlohmann::json j = {
          {"device_id", d.id},
          {"name", d.name},
          {"outcome", outcome},
          {"attempts", d.commands},
          {"old_serial", d.initial_serial},
          {"new_serial", now_serial},
          {"failures", d.failures},
          {"rejected", d.rejected},
          {"recoveries", d.recoveries},
          {"fail_install", d.fail_install},
          {"slow", d.slow},
          {"error", d.last_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.last_error)}};
      out << j.dump() << "\n";
    }
  }
  std::cout << "\n"
            << std::left << std::setw(14) << "outcome" << std::right << std::setw(9) << "devices"
            << "\n";
  for (const auto& [name, n] : by_outcome) {
    std::cout << std::left << std::setw(14) << name << std::right << std::setw(9) << n << "\n";
  }
  std::cout << std::left << std::setw(14) << "total" << std::right << std::setw(9)
            << devices_.size() << "\n\n";
  std::cout << "commands acted on " << commands << " (devices retried: " << retried
            << "), rotations " << rotations << ", failed installs " << failures
            << ", rejected commands " << rejected << ", recoveries " << recoveries << "\n";
  for (const auto& [reason, n] : rejections_) {
    std::cout << "  rejected " << n << "x: " << reason << "\n";
  }
  std::cout << std::fixed << std::setprecision(1) << "elapsed " << elapsed << " s";
  if (first_command_ && last_rotation_ && *last_rotation_ > *first_command_) {
    double s = std::chrono::duration<double>(*last_rotation_ - *first_command_).count();
    std::cout << "; first command to last rotation " << s << " s, " << rotated_devices_ / s
              << " devices/s";
  }
  std::cout << std::endl;
  if (out.is_open()) {
    out.close();
    std::cout << "outcomes: " << o_.out.string() << std::endl;
  }
}

}  // namespace

int RunFleet(const RunOptions& options) {
  Fleet fleet(options);
  return fleet.Run();
}

}  // namespace fleet
