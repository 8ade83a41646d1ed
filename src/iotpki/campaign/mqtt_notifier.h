// The campaign Notifier over MQTT (docs/rotation.md#mqtt-topics-and-acls): publishes each rotate
// command, signed with the server's command key, to iotpki/devices/<device_id>/cmd (QoS 1, the
// broker's PUBACK awaited), and takes the devices' reports from iotpki/devices/+/status: a
// reported failure puts the job back to pending until its retry delay has passed (waves.h
// StepForFailure), written with its audit row. The broker's ACL lets only a device publish on
// its own status topic, so the topic names who speaks; a report about a job that is not that
// device's changes nothing.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "iotpki/campaign/scheduler.h"
#include "iotpki/campaign/waves.h"
#include "iotpki/common/clock.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/mqtt/client.h"
#include "iotpki/store/store.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::campaign {

// What became of a status message; each is counted (metrics) and logged.
enum class StatusOutcome {
  kApplied,        // a failure report moved its job (pending with its retry delay, or failed)
  kMalformed,      // not JSON, a field missing or mistyped, a bad topic
  kUnknownJob,     // no such campaign or job
  kNotThisDevice,  // the job belongs to another device
  kStale,          // the job is not waiting for this device (already answered, retried, done)
  kIgnored,        // a status this server does not act on (e.g. progress reports)
};
inline constexpr size_t kStatusOutcomeCount = 6;
std::string_view StatusOutcomeName(StatusOutcome outcome);  // "applied", "malformed", ...

// iotpki/devices/<device_id>/cmd and .../status.
std::string CommandTopic(std::string_view device_id);
std::string StatusTopic(std::string_view device_id);
inline constexpr std::string_view kAllStatusTopics = "iotpki/devices/+/status";

class MqttNotifier final : public Notifier {
 public:
  // Everything must outlive the notifier. `client` is connected and driven by the caller (its
  // message handler forwards to HandleStatus); `key` is the command certificate's.
  MqttNotifier(mqtt::Client& client, const crypto::Signer& key, x509::Certificate certificate,
               store::Store& store, const Clock& clock, Jitter& jitter, std::string actor);

  // Unavailable when the command could not be handed to the broker (not connected, no PUBACK):
  // the scheduler counts a failed attempt.
  Result<void> Notify(const RotateCommand& command) override;

  // A renewed command certificate and its key (`iotpki serve` renews it at half its life):
  // commands signed from now on carry them; one being signed finishes with the old pair, which
  // `key` keeps alive until then. Thread-safe with Notify.
  void SetSigner(std::shared_ptr<const crypto::Signer> key, x509::Certificate certificate);

  // One message from a status topic. Never throws; errors of the store are logged and counted
  // as kStale (the job is left as it was; the scheduler's wait covers it).
  StatusOutcome HandleStatus(const mqtt::Message& message);

  int64_t published() const { return published_.load(); }
  int64_t publish_failures() const { return publish_failures_.load(); }
  int64_t status_count(StatusOutcome outcome) const {
    return status_[static_cast<size_t>(outcome)].load();
  }

 private:
  StatusOutcome Apply(const mqtt::Message& message, std::string& detail);

  mqtt::Client& client_;
  // The signer in use: the constructor's (not owned) until SetSigner replaces it (owned).
  struct Signing {
    std::shared_ptr<const crypto::Signer> owned;
    const crypto::Signer* key;
    x509::Certificate certificate;
  };
  std::shared_ptr<const Signing> signing() const;
  mutable std::mutex signing_mu_;
  std::shared_ptr<const Signing> signing_;
  store::Store& store_;
  const Clock& clock_;
  Jitter& jitter_;
  const std::string actor_;
  std::atomic<int64_t> published_{0};
  std::atomic<int64_t> publish_failures_{0};
  std::array<std::atomic<int64_t>, kStatusOutcomeCount> status_{};
};

}  // namespace iotpki::campaign
