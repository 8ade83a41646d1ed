#include "iotpki/mqtt/client.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace iotpki::mqtt {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Client::State {
  ClientOptions options;
  MessageHandler on_message;
  mosquitto* mosq = nullptr;

  mutable std::mutex mu;
  std::condition_variable cv;
  // Guarded by mu.
  bool connected = false;
  int connack = -1;  // -1: no CONNACK yet since the last connect.
  bool ever_connected = false;
  int64_t reconnects = 0;
  std::map<int, int> pubacks;  // mid -> reason code
  std::map<int, int> subacks;  // mid -> granted QoS (>= 0x80: refused)
  int64_t suback_count = 0;
  std::vector<std::pair<std::string, int>> subscriptions;
  bool threaded = false;

  // Reconnect schedule; touched only by the thread that drives the client.
  milliseconds backoff{0};
  Clock::time_point next_reconnect{};
  bool reconnect_scheduled = false;
  std::mt19937_64 rng{std::random_device{}()};

  std::atomic<bool> stopping{false};
  std::thread thread;

  ~State() {
    if (mosq != nullptr) mosquitto_destroy(mosq);
  }

  // Bounded: acknowledgements nobody waits for (PublishAsync, renewed subscriptions) are
  // dropped oldest first.
  static void Remember(std::map<int, int>& acks, int mid, int value) {
    acks[mid] = value;
    while (acks.size() > 1024) acks.erase(acks.begin());
  }
};

namespace {

std::string MosqError(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::string("system error: ") + std::strerror(errno);
  return mosquitto_strerror(rc);
}

Client::State* StateOf(void* obj) { return static_cast<Client::State*>(obj); }

void OnConnect(mosquitto* mosq, void* obj, int rc, int /*flags*/, const mosquitto_property*) {
  auto* s = StateOf(obj);
  std::vector<std::pair<std::string, int>> renew;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->connack = rc;
    s->connected = rc == 0;
    if (rc == 0) {
      if (s->ever_connected) {
        ++s->reconnects;
        renew = s->subscriptions;
      }
      s->ever_connected = true;
    }
  }
  if (rc == 0) {
    s->backoff = milliseconds(0);
    s->reconnect_scheduled = false;
  }
  for (const auto& [topic, qos] : renew) {
    // A refused renewal shows as a SUBACK nobody waits for; the first Subscribe reported it.
    mosquitto_subscribe_v5(mosq, nullptr, topic.c_str(), qos, 0, nullptr);
  }
  s->cv.notify_all();
}

void OnDisconnect(mosquitto*, void* obj, int, const mosquitto_property*) {
  auto* s = StateOf(obj);
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->connected = false;
  }
  s->cv.notify_all();
}

void OnPublish(mosquitto*, void* obj, int mid, int reason, const mosquitto_property*) {
  auto* s = StateOf(obj);
  {
    std::lock_guard<std::mutex> lock(s->mu);
    Client::State::Remember(s->pubacks, mid, reason);
  }
  s->cv.notify_all();
}

void OnSubscribe(mosquitto*, void* obj, int mid, int count, const int* granted,
                 const mosquitto_property*) {
  auto* s = StateOf(obj);
  {
    std::lock_guard<std::mutex> lock(s->mu);
    Client::State::Remember(s->subacks, mid, count > 0 ? granted[0] : 0x80);
    ++s->suback_count;
  }
  s->cv.notify_all();
}

void OnMessage(mosquitto*, void* obj, const mosquitto_message* m, const mosquitto_property*) {
  auto* s = StateOf(obj);
  if (!s->on_message) return;
  Message msg{.topic = m->topic != nullptr ? m->topic : "",
              .payload = std::string(static_cast<const char*>(m->payload),
                                     static_cast<size_t>(std::max(m->payloadlen, 0))),
              .qos = m->qos,
              .retain = m->retain};
  s->on_message(msg);
}

// OpenSSL's passphrase callback; libmosquitto passes the struct mosquitto as userdata. Without
// it OpenSSL would prompt on the terminal for an encrypted key.
int OnPassphrase(char* buf, int size, int /*rwflag*/, void* userdata) {
  auto* s = StateOf(mosquitto_userdata(static_cast<mosquitto*>(userdata)));
  const std::string& p = s->options.key_passphrase;
  if (p.empty() || static_cast<int>(p.size()) > size) return 0;
  std::memcpy(buf, p.data(), p.size());
  return static_cast<int>(p.size());
}

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

}  // namespace

Result<BrokerAddress> ParseBrokerUrl(std::string_view url) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                "bad MQTT broker URL '" + std::string(url) + "': use mqtts://HOST[:PORT]");
  };
  constexpr std::string_view kScheme = "mqtts://";
  if (url.substr(0, kScheme.size()) != kScheme) return bad();
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  BrokerAddress out;
  size_t colon = rest.rfind(':');
  std::string_view host = colon == std::string_view::npos ? rest : rest.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host.find_first_of("/@?#[] ") != std::string_view::npos) return bad();
  if (colon != std::string_view::npos) {
    std::string_view port = rest.substr(colon + 1);
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p < 1 || p > 65535) return bad();
    out.port = p;
  }
  out.host = std::string(host);
  return out;
}

Client::Client(std::unique_ptr<State> state) : state_(std::move(state)) {}

Client::~Client() { Stop(); }

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options, MessageHandler on_message) {
  InitLibrary();
  for (const auto* f : {&options.ca_file, &options.cert_file, &options.key_file}) {
    std::error_code ec;
    if (options.ssl_ctx == nullptr && (f->empty() || !std::filesystem::is_regular_file(*f, ec))) {
      return Fail(Code::kFailedPrecondition,
                  "MQTT client: missing file '" + f->string() +
                      "' (a CA file, a client certificate and its key are all needed)");
    }
  }
  auto state = std::make_unique<State>();
  state->options = std::move(options);
  state->on_message = std::move(on_message);
  const ClientOptions& o = state->options;
  state->mosq = mosquitto_new(o.client_id.empty() ? nullptr : o.client_id.c_str(), o.clean_session,
                              state.get());
  if (state->mosq == nullptr) {
    return Fail(Code::kInvalidArgument,
                "MQTT client: cannot create a session (a persistent session needs a client id)",
                std::strerror(errno));
  }
  mosquitto_int_option(state->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  int rc = MOSQ_ERR_SUCCESS;
  if (o.ssl_ctx != nullptr) {
    // Without defaults libmosquitto uses the context as given: ours verifies the broker's chain
    // and name itself (with defaults it would want cafile and replace the verify callback).
    rc = mosquitto_int_option(state->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    if (rc == MOSQ_ERR_SUCCESS) {
      rc = mosquitto_void_option(state->mosq, MOSQ_OPT_SSL_CTX, o.ssl_ctx.get());
    }
  } else {
    rc = mosquitto_tls_set(state->mosq, o.ca_file.c_str(), nullptr, o.cert_file.c_str(),
                           o.key_file.c_str(), OnPassphrase);
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Code::kInvalidArgument, "MQTT client: bad TLS settings", MosqError(rc));
  }
  mosquitto_connect_v5_callback_set(state->mosq, OnConnect);
  mosquitto_disconnect_v5_callback_set(state->mosq, OnDisconnect);
  mosquitto_publish_v5_callback_set(state->mosq, OnPublish);
  mosquitto_subscribe_v5_callback_set(state->mosq, OnSubscribe);
  mosquitto_message_v5_callback_set(state->mosq, OnMessage);
  return std::unique_ptr<Client>(new Client(std::move(state)));
}

namespace {

// The CONNECT's properties: a persistent session's Session Expiry Interval (none for a clean
// one). Freed by the deleter.
struct PropertiesFree {
  void operator()(mosquitto_property* p) const { mosquitto_property_free_all(&p); }
};
using Properties = std::unique_ptr<mosquitto_property, PropertiesFree>;

Properties ConnectProperties(const ClientOptions& o) {
  mosquitto_property* p = nullptr;
  if (!o.clean_session) {
    auto s = std::clamp<int64_t>(o.session_expiry.count(), 0, UINT32_MAX);
    mosquitto_property_add_int32(&p, MQTT_PROP_SESSION_EXPIRY_INTERVAL, static_cast<uint32_t>(s));
  }
  return Properties(p);
}

}  // namespace

Result<void> Client::Connect() {
  State& s = *state_;
  const ClientOptions& o = s.options;
  std::string where = o.host + ":" + std::to_string(o.port);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.connack = -1;
  }
  // The properties are kept for every reconnect (mosquitto_reconnect).
  Properties props = ConnectProperties(o);
  int rc = mosquitto_connect_bind_v5(s.mosq, o.host.c_str(), o.port, o.keepalive_seconds, nullptr,
                                     props.get());
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Code::kUnavailable, "cannot connect to the MQTT broker at " + where, MosqError(rc));
  }
  auto deadline = Clock::now() + o.connect_timeout;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(s.mu);
      if (s.connack == 0) return {};
      if (s.connack > 0) {
        return Fail(Code::kPermissionDenied,
                    "the MQTT broker at " + where + " refused the connection",
                    mosquitto_reason_string(s.connack));
      }
    }
    if (Clock::now() >= deadline) {
      mosquitto_disconnect(s.mosq);
      return Fail(Code::kUnavailable, "no answer from the MQTT broker at " + where);
    }
    rc = mosquitto_loop(s.mosq, 100, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      return Fail(Code::kUnavailable,
                  "the MQTT broker at " + where +
                      " closed the connection (is this client's certificate trusted and valid?)",
                  MosqError(rc));
    }
  }
}

namespace {

// Lost: back off, doubling from reconnect_min, plus up to half again as jitter.
void ScheduleReconnect(Client::State& s) {
  const ClientOptions& o = s.options;
  s.backoff = s.backoff.count() == 0 ? o.reconnect_min : std::min(s.backoff * 2, o.reconnect_max);
  auto half = static_cast<uint64_t>(s.backoff.count() / 2);
  milliseconds jitter(half == 0 ? 0 : static_cast<int64_t>(s.rng() % (half + 1)));
  s.next_reconnect = Clock::now() + s.backoff + jitter;
  s.reconnect_scheduled = true;
}

}  // namespace

void Client::RunOnce(milliseconds timeout) {
  State& s = *state_;
  if (s.stopping.load()) return;
  if (!s.reconnect_scheduled) {
    int rc = mosquitto_loop(s.mosq, static_cast<int>(timeout.count()), 1);
    if (rc == MOSQ_ERR_SUCCESS || s.stopping.load()) return;
    ScheduleReconnect(s);
    return;
  }
  auto now = Clock::now();
  if (now < s.next_reconnect) {
    std::this_thread::sleep_for(std::min<Clock::duration>(timeout, s.next_reconnect - now));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.connack = -1;
  }
  s.reconnect_scheduled = false;
  // A failure here is seen by the next pass's mosquitto_loop, which schedules the next try.
  (void)mosquitto_reconnect(s.mosq);
}

Result<void> Client::BeginConnect() {
  State& s = *state_;
  const ClientOptions& o = s.options;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.connack = -1;
  }
  if (Properties props = ConnectProperties(o)) {
    // libmosquitto has no asynchronous connect with properties. mosquitto_connect_bind_v5 keeps
    // its properties for every later connect before it checks its arguments (libmosquitto 2.0,
    // lib/connect.c), so with port -1 it keeps them and connects nowhere; the connect below
    // sends them. PersistentSessionKeepsCommandsInEventLoopMode fails if that ever changes.
    (void)mosquitto_connect_bind_v5(s.mosq, o.host.c_str(), -1, o.keepalive_seconds, nullptr,
                                    props.get());
  }
  int rc = mosquitto_connect_async(s.mosq, o.host.c_str(), o.port, o.keepalive_seconds);
  if (rc != MOSQ_ERR_SUCCESS) {
    ScheduleReconnect(s);  // Service tries again after the backoff
    return Fail(Code::kUnavailable,
                "cannot connect to the MQTT broker at " + o.host + ":" + std::to_string(o.port),
                MosqError(rc));
  }
  return {};
}

namespace {

// Still in the TLS handshake. libmosquitto then takes the handshake's steps in its read step
// only (loop_write writes nothing until it is done), and its own select loop watches for
// writing only while OpenSSL's last call wanted to write; an event loop must do the same, or a
// socket that is writable all along wakes it without end while the broker takes its time.
bool Handshaking(mosquitto* mosq) {
  auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq));
  return ssl != nullptr && !SSL_is_init_finished(ssl);
}

}  // namespace

bool Client::WantWrite() const {
  mosquitto* mosq = state_->mosq;
  if (Handshaking(mosq)) return SSL_want_write(static_cast<SSL*>(mosquitto_ssl_get(mosq)));
  return mosquitto_want_write(mosq);
}

void Client::Service(bool readable, bool writable) {
  State& s = *state_;
  if (s.stopping.load()) return;
  if (s.reconnect_scheduled) {
    if (Clock::now() < s.next_reconnect) return;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.connack = -1;
    }
    s.reconnect_scheduled = false;
    if (mosquitto_reconnect_async(s.mosq) != MOSQ_ERR_SUCCESS) ScheduleReconnect(s);
    return;
  }
  int rc = mosquitto_socket(s.mosq) < 0 ? MOSQ_ERR_NO_CONN : MOSQ_ERR_SUCCESS;
  if (rc == MOSQ_ERR_SUCCESS && (readable || (writable && Handshaking(s.mosq)))) {
    rc = mosquitto_loop_read(s.mosq, 1);
  }
  if (rc == MOSQ_ERR_SUCCESS && writable && mosquitto_want_write(s.mosq)) {
    rc = mosquitto_loop_write(s.mosq, 1);
  }
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_misc(s.mosq);
  if (rc != MOSQ_ERR_SUCCESS) {
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.connected = false;
    }
    ScheduleReconnect(s);
  }
}

void Client::Start() {
  State& s = *state_;
  if (s.thread.joinable()) return;
  mosquitto_threaded_set(s.mosq, true);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.threaded = true;
  }
  s.thread = std::thread([this] {
    while (!state_->stopping.load()) RunOnce(milliseconds(100));
  });
}

void Client::Stop() {
  State& s = *state_;
  if (s.stopping.exchange(true)) return;
  mosquitto_disconnect(s.mosq);
  if (s.thread.joinable()) s.thread.join();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.connected = false;
    s.threaded = false;
  }
  s.cv.notify_all();
}

int Client::socket() const { return mosquitto_socket(state_->mosq); }

bool Client::connected() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->connected;
}

int64_t Client::subacks() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->suback_count;
}

int64_t Client::reconnects() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->reconnects;
}

Result<void> Client::Subscribe(const std::string& topic_filter, int qos) {
  State& s = *state_;
  bool threaded = false;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = std::find_if(s.subscriptions.begin(), s.subscriptions.end(),
                           [&](const auto& e) { return e.first == topic_filter; });
    if (it == s.subscriptions.end()) s.subscriptions.emplace_back(topic_filter, qos);
    threaded = s.threaded;
  }
  int mid = 0;
  int rc = mosquitto_subscribe_v5(s.mosq, &mid, topic_filter.c_str(), qos, 0, nullptr);
  if (rc == MOSQ_ERR_NO_CONN) return {};  // Sent when the connection comes back.
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Code::kInvalidArgument, "cannot subscribe to '" + topic_filter + "'",
                MosqError(rc));
  }
  if (!threaded) return {};
  std::unique_lock<std::mutex> lock(s.mu);
  if (!s.cv.wait_for(lock, s.options.connect_timeout, [&] { return s.subacks.count(mid) != 0; })) {
    return Fail(Code::kUnavailable, "no SUBACK from the MQTT broker for '" + topic_filter + "'");
  }
  int granted = s.subacks[mid];
  s.subacks.erase(mid);
  if (granted >= 0x80) {
    return Fail(Code::kPermissionDenied,
                "the MQTT broker refused the subscription to '" + topic_filter + "'",
                mosquitto_reason_string(granted));
  }
  return {};
}

Result<void> Client::PublishAsync(const std::string& topic, std::string_view payload, int qos) {
  int rc =
      mosquitto_publish_v5(state_->mosq, nullptr, topic.c_str(), static_cast<int>(payload.size()),
                           payload.data(), qos, false, nullptr);
  if (rc == MOSQ_ERR_NO_CONN) return Fail(Code::kUnavailable, "not connected to the MQTT broker");
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Code::kInvalidArgument, "cannot publish to '" + topic + "'", MosqError(rc));
  }
  return {};
}

Result<void> Client::Publish(const std::string& topic, std::string_view payload,
                             milliseconds timeout) {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.connected) return Fail(Code::kUnavailable, "not connected to the MQTT broker");
    if (!s.threaded) {
      return Fail(Code::kFailedPrecondition, "Publish waits for the broker: call Start first");
    }
  }
  int mid = 0;
  int rc = mosquitto_publish_v5(s.mosq, &mid, topic.c_str(), static_cast<int>(payload.size()),
                                payload.data(), 1, false, nullptr);
  if (rc == MOSQ_ERR_NO_CONN) return Fail(Code::kUnavailable, "not connected to the MQTT broker");
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Code::kInvalidArgument, "cannot publish to '" + topic + "'", MosqError(rc));
  }
  std::unique_lock<std::mutex> lock(s.mu);
  bool acked = s.cv.wait_for(lock, timeout, [&] {
    return s.pubacks.count(mid) != 0 || !s.connected || s.stopping.load();
  });
  if (!acked || s.pubacks.count(mid) == 0) {
    return Fail(Code::kUnavailable, "the MQTT broker did not acknowledge the message on '" + topic +
                                        "' (connection lost or too slow)");
  }
  int reason = s.pubacks[mid];
  s.pubacks.erase(mid);
  if (reason >= 0x80) {
    return Fail(Code::kPermissionDenied, "the MQTT broker refused the message on '" + topic + "'",
                mosquitto_reason_string(reason));
  }
  return {};
}

}  // namespace iotpki::mqtt
