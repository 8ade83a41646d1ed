// An MQTT 5 client over libmosquitto with mutual TLS: the server's notifier and the device
// agent both use it (docs/rotation.md#mqtt).
//
// Threading: each Client is independent (no process-wide state beyond libmosquitto's one-time
// init), so one process may hold thousands. A Client is driven either by its own thread
// (Start: the server, the agent) or by its caller (RunOnce from an event loop that polls
// socket(): a fleet simulator with many clients and few threads). Both paths share the same
// reconnect logic: after a lost connection, exponential backoff from reconnect_min to
// reconnect_max with a random jitter of up to half the delay, so that a fleet cut off together
// does not come back together. Subscriptions are renewed after every reconnect.
//
// Callbacks (on_message) run on the thread that drives the client; they must not call Stop.
// Publish, Subscribe and Stop may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/error.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace iotpki::mqtt {

struct ClientOptions {
  std::string host = "127.0.0.1";
  int port = 8883;
  // Empty: libmosquitto makes a random one. Devices use their device id.
  std::string client_id;
  // false: the broker keeps the session (subscriptions, queued QoS 1 messages) while the client
  // is away, so a device offline during a notification still gets it when it comes back; for
  // `session_expiry` after the connection closed (MQTT 5's Session Expiry Interval, which every
  // CONNECT then carries: without it an MQTT 5 session ends with its connection). The default,
  // 0xFFFFFFFF, is "never" as MQTT 5 defines it, which leaves the bound to the broker's operator
  // (Mosquitto's persistent_client_expiration), as MQTT 3.1.1's persistent sessions did; it is
  // also what Mosquitto 2.0 keeps cheaply: a session with a finite expiry goes into a sorted
  // list at every disconnect, a walk over every such session (26% of the broker's CPU with
  // 15,000 sleepy devices).
  bool clean_session = true;
  std::chrono::seconds session_expiry{0xFFFFFFFFLL};
  std::filesystem::path ca_file;    // CAs that sign the broker's certificate (PEM).
  std::filesystem::path cert_file;  // This client's certificate (PEM, chain allowed).
  std::filesystem::path key_file;   // Its key: PKCS#8 PEM, plain or encrypted.
  // For an encrypted key file; empty for a plain one. Handed to OpenSSL only.
  std::string key_passphrase;
  // Instead of the three files: a TLS client context of the caller's, complete (trust anchors,
  // the broker's name to verify, client certificate and key), used as it is for every
  // connection (libmosquitto adds none of its defaults). This is how a key that OpenSSL cannot
  // load from a file (in a PKCS#11 token or a TPM) signs the handshake (agent/https_client.h,
  // MakeClientTlsContext). Shared: the client keeps a reference for its lifetime.
  std::shared_ptr<SSL_CTX> ssl_ctx;
  int keepalive_seconds = 30;
  std::chrono::milliseconds connect_timeout{10000};  // for CONNACK in Connect
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{30000};
};

struct Message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
};

// "mqtts://host:port" (port defaults to 8883). InvalidArgument naming the accepted form.
struct BrokerAddress {
  std::string host;
  int port = 8883;
};
Result<BrokerAddress> ParseBrokerUrl(std::string_view url);

class Client {
 public:
  using MessageHandler = std::function<void(const Message&)>;

  // Checks the files exist (FailedPrecondition naming the missing one) unless ssl_ctx is given;
  // does not connect.
  static Result<std::unique_ptr<Client>> Create(ClientOptions options, MessageHandler on_message);
  ~Client();  // Stops and disconnects.
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects and waits for the broker's CONNACK, driving the network itself (call before
  // Start, or instead of it with RunOnce afterwards). Unavailable if the broker cannot be reached
  // or the TLS handshake fails (a refused certificate often shows here), PermissionDenied if the
  // broker refuses the connection.
  Result<void> Connect();

  // Runs the network loop on a thread of its own, reconnecting when the connection drops, until
  // Stop.
  void Start();
  // Disconnects cleanly and joins the thread. Idempotent.
  void Stop();

  // Caller-driven mode: one pass of the network loop, waiting at most `timeout` for traffic;
  // after a lost connection it reconnects when the backoff delay has passed. Not with Start.
  void RunOnce(std::chrono::milliseconds timeout);
  // The socket to poll in caller-driven mode (-1 while disconnected).
  int socket() const;

  // Event-loop mode, for one thread driving thousands of clients (the fleet simulator): nothing
  // here uses select(), whose FD_SETSIZE (1024) RunOnce and Connect are bound by. BeginConnect
  // starts connecting (TCP and TLS without blocking) and returns; the caller polls socket() for
  // POLLIN, and POLLOUT too while WantWrite(), and calls Service with what poll said, and with
  // (false, false) at least once a second for keepalives and the reconnect backoff. connected()
  // turns true at the CONNACK. Not with Start or RunOnce.
  Result<void> BeginConnect();
  bool WantWrite() const;
  void Service(bool readable, bool writable);
  bool connected() const;

  // Subscribes (and again after every reconnect). With the thread running, waits for the
  // SUBACK: PermissionDenied if the broker refused the subscription (its ACL).
  Result<void> Subscribe(const std::string& topic_filter, int qos = 1);

  // Hands a message to libmosquitto; it is sent while the client is driven. Returns at once.
  Result<void> PublishAsync(const std::string& topic, std::string_view payload, int qos = 1);
  // QoS 1: waits (the thread running) for the broker's PUBACK. Unavailable when not connected
  // or no PUBACK arrives within `timeout`; PermissionDenied when the broker refuses the topic.
  Result<void> Publish(const std::string& topic, std::string_view payload,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

  // SUBACKs received, over every connection of this client: an event loop that must know a
  // subscription is in place at the broker (before it drops the connection) waits for it.
  int64_t subacks() const;

  // Connections made after the first (for tests and metrics).
  int64_t reconnects() const;

  struct State;  // libmosquitto's callbacks reach it; opaque outside client.cc.

 private:
  explicit Client(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace iotpki::mqtt
