#include "fleet.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstring>
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
constexpr uint64_t kWakeEvent = ~uint64_t{0};  // epoll's mark for the workers' eventfd
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
  int watched_fd = -1;         // the socket registered with epoll for this device
  bool watched_out = false;    // ... and whether for writing too
  bool touched = false;        // in Fleet::touched_, to be looked at this pass
  bool connecting = false;     // woken, not connected yet: counted in Fleet::connecting_
  bool subscribed = false;     // SUBSCRIBE sent on this session
  bool registered = false;     // a SUBACK seen once: the broker keeps its session from now on
  bool rotated_awake = false;  // rotated since it last woke (--max-online: sleeps at once)
  SteadyClock::time_point woke_at{};
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
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
  }
  ~Fleet() {
    for (auto& d : devices_) d.client.reset();
    if (wake_ >= 0) close(wake_);
    if (epoll_ >= 0) close(epoll_);
  }

  int Run();

 private:
  iotpki::Result<void> Load();
  iotpki::Result<void> Connect(Device& d);
  void Dispatch(size_t i);
  void Recover(size_t i);
  void Handle(Device& dev, const AgentOptions& a, const std::string& envelope, Result& r);
  void Finish(Result r);
  void Watch(size_t i);
  void Unwatch(size_t i);
  void Touch(size_t i) {
    if (devices_[i].touched) return;
    devices_[i].touched = true;
    touched_.push_back(i);
  }
  void Look(size_t i, SteadyClock::time_point now);
  void Sleep(size_t i);
  void Drop(size_t i);
  void WakeSleepers();
  void Wake() {
    uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
  }
  std::string Serial(const Device& d) const;
  void Report(double elapsed);

  const RunOptions& o_;
  Pool pool_;
  int wake_ = -1;
  int epoll_ = -1;
  std::vector<Device> devices_;
  std::vector<size_t> fd_owner_;  // socket -> device index + 1 (0: none), for Unwatch
  std::vector<size_t> touched_;   // devices to look at after this pass's events
  std::deque<size_t> sleepers_;   // --max-online: devices waiting for their turn online
  size_t online_ = 0;             // devices with a session (connected or connecting)
  size_t connecting_ = 0;         // ... of which not connected yet (woken sleepers only)
  static constexpr size_t kMaxConnecting = 64;
  size_t peak_online_ = 0;
  int64_t sessions_ = 0;   // sessions begun (Connect)
  size_t registered_ = 0;  // devices whose subscription the broker acknowledged
  bool ready_ = false;
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
  Drop(index);
  d.rotated_awake = false;
  d.woke_at = SteadyClock::now();
  IOTPKI_TRY(d.client,
             iotpki::mqtt::Client::Create(mo, [this, index, topic](const iotpki::mqtt::Message& m) {
               if (m.topic != topic) return;
               Device& dev = devices_[index];
               // A flood keeps the newest: the older ones expire first.
               if (dev.inbox.size() >= 16) dev.inbox.pop_front();
               dev.inbox.push_back(m.payload);
             }));
  ++online_;
  ++sessions_;
  peak_online_ = std::max(peak_online_, online_);
  (void)d.client->BeginConnect();  // a failure is retried by Service after its backoff
  Watch(index);
  return {};
}

// Keeps epoll's registration in step with the device's socket, which libmosquitto closes and
// opens again on a reconnect (a closed socket leaves epoll by itself; its number may then be
// another device's, hence fd_owner_). Called after anything that may change the socket or
// whether it wants writing.
void Fleet::Watch(size_t i) {
  Device& d = devices_[i];
  int fd = d.client ? d.client->socket() : -1;
  bool out = fd >= 0 && d.client->WantWrite();
  if (fd == d.watched_fd && out == d.watched_out && fd >= 0 && fd_owner_[fd] == i + 1) return;
  if (fd != d.watched_fd) Unwatch(i);
  if (fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
  ev.data.u64 = i;
  // The same number may be a new socket (the old one closed and left epoll): MOD, else ADD.
  if (epoll_ctl(epoll_, EPOLL_CTL_MOD, fd, &ev) != 0)
    (void)epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  if (static_cast<size_t>(fd) >= fd_owner_.size()) fd_owner_.resize(static_cast<size_t>(fd) + 1, 0);
  fd_owner_[static_cast<size_t>(fd)] = i + 1;
  d.watched_fd = fd;
  d.watched_out = out;
}

void Fleet::Unwatch(size_t i) {
  Device& d = devices_[i];
  if (d.watched_fd >= 0 && static_cast<size_t>(d.watched_fd) < fd_owner_.size() &&
      fd_owner_[static_cast<size_t>(d.watched_fd)] == i + 1) {
    (void)epoll_ctl(epoll_, EPOLL_CTL_DEL, d.watched_fd, nullptr);
    fd_owner_[static_cast<size_t>(d.watched_fd)] = 0;
  }
  d.watched_fd = -1;
  d.watched_out = false;
}

// --max-online: the device goes to sleep (DISCONNECT; the broker keeps its session and queues
// its commands) and waits for its turn to wake at the back of the line.
void Fleet::Sleep(size_t i) {
  Drop(i);
  sleepers_.push_back(i);
}

// Ends the device's session, if it has one (DISCONNECT: the broker keeps the session), and its
// place in the counts.
void Fleet::Drop(size_t i) {
  Device& d = devices_[i];
  Unwatch(i);
  if (d.client) {
    d.client.reset();
    --online_;
  }
  if (d.connecting) {
    d.connecting = false;
    --connecting_;
  }
  d.subscribed = false;
}

// A few at a time: thousands of TLS connections opened at once overflow the broker's listen
// backlog (Mosquitto's is 100), and dropped SYNs come back only after TCP's backoff of seconds.
void Fleet::WakeSleepers() {
  for (size_t tries = sleepers_.size(); tries > 0 && online_ < static_cast<size_t>(o_.max_online) &&
                                        !sleepers_.empty() && connecting_ < kMaxConnecting;
       --tries) {
    size_t i = sleepers_.front();
    sleepers_.pop_front();
    if (devices_[i].client) continue;
    if (!Connect(devices_[i])) {
      sleepers_.push_back(i);
      continue;
    }
    devices_[i].connecting = true;
    ++connecting_;
    Touch(i);
  }
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
    d.rotated_awake = true;
    // The session moves to the new certificate (the old one is revoked now); with
    // --max-online the device sleeps instead, and its next session is on the new one.
    if (!d.offline && o_.max_online == 0) (void)Connect(d);
  }
  Touch(r.device);
}

// What a device does next, after its socket, its worker or a timer had news: subscribe once
// connected, act on the commands it holds, recover a rotation left pending, or (--max-online)
// go back to sleep once it has nothing left to do online.
void Fleet::Look(size_t i, SteadyClock::time_point now) {
  Device& d = devices_[i];
  if (d.client) {
    if (d.connecting && d.client->connected()) {
      d.connecting = false;
      --connecting_;
    } else if (d.connecting && now - d.woke_at > std::chrono::seconds(30)) {
      Sleep(i);  // the broker does not answer: back of the line, the slot to another
      return;
    }
    if (!d.subscribed && d.client->connected()) {
      d.ever_online = true;
      if (d.client->Subscribe(iotpki::agent::CommandTopic(d.id), 1)) d.subscribed = true;
    }
    if (d.subscribed && !d.registered && d.client->subacks() > 0) {
      d.registered = true;
      ++registered_;
    }
  }
  if (d.busy) return;
  if (d.recover_at && now >= *d.recover_at) {
    Recover(i);
    return;
  }
  if (!d.inbox.empty() && ready_) {
    if (d.slow) {
      d.busy = true;
      delayed_.emplace(now + o_.slow_by, i);
    } else {
      Dispatch(i);
    }
    return;
  }
  if (o_.max_online == 0 || !d.client || !d.inbox.empty()) return;
  // Asleep once its subscription is in place (before the campaign) or it rotated, or after
  // --awake with nothing to do; a rotation left pending recovers on its timer meanwhile.
  bool in_place = d.subscribed && d.client->subacks() > 0;
  if ((!ready_ && in_place) || (ready_ && d.rotated_awake) ||
      (ready_ && in_place && now - d.woke_at >= o_.awake)) {
    Sleep(i);
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
  if (wake_ < 0 || epoll_ < 0) {
    std::cerr << "iotpki-fleet: cannot make the event loop: " << std::strerror(errno) << std::endl;
    return 1;
  }
  epoll_event wake_ev{};
  wake_ev.events = EPOLLIN;
  wake_ev.data.u64 = kWakeEvent;
  (void)epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &wake_ev);
  if (o_.max_online == 0) {
    for (auto& d : devices_) {
      if (auto c = Connect(d); !c) {
        std::cerr << "iotpki-fleet: " << c.error().message() << std::endl;
        return 1;
      }
    }
  } else {
    for (size_t i = 0; i < devices_.size(); ++i) sleepers_.push_back(i);
  }
  // Phases: every device connects and subscribes once (so the broker keeps a session for
  // each; with --max-online, that many at a time); then the offline share drops off and the
  // fleet is ready; they come back later.
  std::optional<SteadyClock::time_point> settled_at;
  bool coming_back = false;
  SteadyClock::time_point back_at{};
  std::vector<epoll_event> events(1024);
  auto last_sweep = SteadyClock::now();
  while (!g_stop) {
    if (o_.max_online > 0) WakeSleepers();
    int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 100);
    if (n < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      const epoll_event& ev = events[static_cast<size_t>(k)];
      if (ev.data.u64 == kWakeEvent) {
        uint64_t v = 0;
        (void)!read(wake_, &v, sizeof v);
        continue;
      }
      size_t i = static_cast<size_t>(ev.data.u64);
      Device& d = devices_[i];
      if (!d.client) continue;
      d.client->Service((ev.events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0,
                        (ev.events & EPOLLOUT) != 0);
      Watch(i);
      Touch(i);
    }
    auto now = SteadyClock::now();
    if (now - last_sweep >= std::chrono::milliseconds(250)) {
      // Keepalives, reconnect backoffs and timers (Service wants a call at least once a second).
      last_sweep = now;
      for (size_t i = 0; i < devices_.size(); ++i) {
        if (devices_[i].client) {
          devices_[i].client->Service(false, false);
          Watch(i);
        }
        Touch(i);
      }
    }
    std::deque<Result> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.swap(results_);
    }
    for (auto& r : done) Finish(std::move(r));
    while (!delayed_.empty() && delayed_.begin()->first <= now) {
      size_t i = delayed_.begin()->second;
      delayed_.erase(delayed_.begin());
      if (devices_[i].inbox.empty()) {
        devices_[i].busy = false;
        Touch(i);
      } else {
        Dispatch(i);
      }
    }
    // Look may queue more (a Connect after a rotation): taken in the same pass.
    for (size_t k = 0; k < touched_.size(); ++k) {
      size_t i = touched_[k];
      devices_[i].touched = false;
      Look(i, now);
      Watch(i);
    }
    touched_.clear();
    if (!ready_ && registered_ == devices_.size()) {
      // One more second for the broker to settle the last sessions.
      if (!settled_at) settled_at = now + std::chrono::seconds(1);
      if (now >= *settled_at) {
        size_t offline = 0;
        for (size_t i = 0; i < devices_.size(); ++i) {
          Device& d = devices_[i];
          if (!d.offline) continue;
          // Off: the broker keeps the session and queues its commands.
          Drop(i);
          ++offline;
        }
        if (offline > 0 && o_.max_online > 0) {
          std::erase_if(sleepers_, [&](size_t i) { return devices_[i].offline; });
        }
        ready_ = true;
        coming_back = offline > 0;
        back_at = now + o_.back_after;
        double s = std::chrono::duration<double>(now - start).count();
        std::cout << "ready: " << devices_.size() - offline << " devices online";
        if (o_.max_online > 0) std::cout << " (at most " << o_.max_online << " at once)";
        std::cout << ", " << offline << " offline for " << o_.back_after.count()
                  << " s (connected in " << std::fixed << std::setprecision(1) << s << " s)"
                  << std::endl;
        if (!o_.ready_file.empty()) (void)iotpki::WriteFileAtomic(o_.ready_file, "ready\n");
        // Commands that arrived before the fleet was ready.
        for (size_t i = 0; i < devices_.size(); ++i) Touch(i);
      }
    }
    if (coming_back && now >= back_at) {
      coming_back = false;
      size_t back = 0;
      for (size_t i = 0; i < devices_.size(); ++i) {
        Device& d = devices_[i];
        if (!d.offline) continue;
        d.offline = false;
        ++back;
        if (o_.max_online > 0) {
          sleepers_.push_back(i);
        } else {
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
  std::cout << "sessions " << sessions_ << ", at most " << peak_online_ << " online at once\n";
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
