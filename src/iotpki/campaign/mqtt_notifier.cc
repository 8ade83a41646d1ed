#include "iotpki/campaign/mqtt_notifier.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "iotpki/campaign/command.h"
#include "iotpki/common/log.h"

namespace iotpki::campaign {
namespace {

constexpr std::string_view kTopicPrefix = "iotpki/devices/";
constexpr size_t kMaxStatus = 4096;  // bytes of a status message
constexpr size_t kMaxReason = 256;   // bytes of a device's reason kept as the job's last error

bool IsDeviceId(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The device id of iotpki/devices/<id>/status, or empty.
std::string_view StatusTopicDevice(std::string_view topic) {
  constexpr std::string_view kSuffix = "/status";
  if (topic.size() != kTopicPrefix.size() + 64 + kSuffix.size()) return {};
  if (topic.substr(0, kTopicPrefix.size()) != kTopicPrefix) return {};
  if (topic.substr(kTopicPrefix.size() + 64) != kSuffix) return {};
  std::string_view id = topic.substr(kTopicPrefix.size(), 64);
  return IsDeviceId(id) ? id : std::string_view{};
}

// Keeps printable ASCII of a device's reason: it ends up in the store, the CLI and logs.
std::string Sanitize(std::string_view reason) {
  std::string out;
  for (char c : reason.substr(0, kMaxReason)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::string_view StatusOutcomeName(StatusOutcome outcome) {
  switch (outcome) {
    case StatusOutcome::kApplied:
      return "applied";
    case StatusOutcome::kMalformed:
      return "malformed";
    case StatusOutcome::kUnknownJob:
      return "unknown_job";
    case StatusOutcome::kNotThisDevice:
      return "not_this_device";
    case StatusOutcome::kStale:
      return "stale";
    case StatusOutcome::kIgnored:
      return "ignored";
  }
  return "unknown";
}

std::string CommandTopic(std::string_view device_id) {
  return std::string(kTopicPrefix) + std::string(device_id) + "/cmd";
}
std::string StatusTopic(std::string_view device_id) {
  return std::string(kTopicPrefix) + std::string(device_id) + "/status";
}

MqttNotifier::MqttNotifier(mqtt::Client& client, const crypto::Signer& key,
                           x509::Certificate certificate, store::Store& store, const Clock& clock,
                           Jitter& jitter, std::string actor)
    : client_(client),
      signing_(std::make_shared<const Signing>(Signing{nullptr, &key, std::move(certificate)})),
      store_(store),
      clock_(clock),
      jitter_(jitter),
      actor_(std::move(actor)) {}

std::shared_ptr<const MqttNotifier::Signing> MqttNotifier::signing() const {
  std::lock_guard lock(signing_mu_);
  return signing_;
}

void MqttNotifier::SetSigner(std::shared_ptr<const crypto::Signer> key,
                             x509::Certificate certificate) {
  const crypto::Signer* raw = key.get();
  auto next = std::make_shared<const Signing>(Signing{std::move(key), raw, std::move(certificate)});
  std::lock_guard lock(signing_mu_);
  signing_ = std::move(next);
}

Result<void> MqttNotifier::Notify(const RotateCommand& command) {
  Command signed_command{
      .campaign = command.campaign,
      .job = command.job,
      .device_id = command.device_id,
      .mode = std::string(store::CampaignModeName(command.mode)),
      .nonce = NewNonce(),
      .not_after = command.answer_by > 0 ? command.answer_by : clock_.NowUnix() + 3600};
  std::shared_ptr<const Signing> signer = signing();
  IOTPKI_TRY(std::string envelope, SignCommand(signed_command, *signer->key, signer->certificate));
  auto sent = client_.Publish(CommandTopic(command.device_id), envelope);
  if (!sent) {
    ++publish_failures_;
    return Fail(Code::kUnavailable, "MQTT: " + sent.error().message(), sent.error().detail());
  }
  ++published_;
  return {};
}

StatusOutcome MqttNotifier::HandleStatus(const mqtt::Message& message) {
  std::string detail;
  StatusOutcome outcome = Apply(message, detail);
  ++status_[static_cast<size_t>(outcome)];
  std::string_view device = StatusTopicDevice(message.topic);
  if (outcome == StatusOutcome::kApplied) {
    log::Info("campaign.status",
              {{"device", device}, {"outcome", StatusOutcomeName(outcome)}, {"detail", detail}});
  } else {
    // The topic is logged only when it is well formed: it comes from a client.
    log::Warn("campaign.status_refused",
              {{"device", device.empty() ? std::string_view("-") : device},
               {"outcome", StatusOutcomeName(outcome)},
               {"detail", detail}});
  }
  return outcome;
}

StatusOutcome MqttNotifier::Apply(const mqtt::Message& message, std::string& detail) {
  std::string_view device = StatusTopicDevice(message.topic);
  if (device.empty()) {
    detail = "not a device status topic";
    return StatusOutcome::kMalformed;
  }
  if (message.payload.size() > kMaxStatus) {
    detail = "larger than 4 KiB";
    return StatusOutcome::kMalformed;
  }
  auto j = nlohmann::json::parse(message.payload, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("campaign") || !j["campaign"].is_string() ||
      !j.contains("job") || !j["job"].is_number_integer() || !j.contains("status") ||
      !j["status"].is_string() || (j.contains("reason") && !j["reason"].is_string())) {
    detail = "expected {\"campaign\":string,\"job\":integer,\"status\":string,\"reason\":string}";
    return StatusOutcome::kMalformed;
  }
  std::string status = j["status"].get<std::string>();
  if (status != "failed") {
    // Confirmations come over mutual TLS (POST /api/v1/devices/<id>/rotation); progress
    // reports need no action here.
    detail = "status " + Sanitize(status) + " needs no action";
    return StatusOutcome::kIgnored;
  }
  std::string campaign_name = j["campaign"].get<std::string>();
  int64_t ordinal = j["job"].get<int64_t>();
  auto campaign = store_.GetCampaign(campaign_name);
  if (!campaign) {
    detail = "no campaign named " + Sanitize(campaign_name);
    return campaign.error().code() == Code::kNotFound ? StatusOutcome::kUnknownJob
                                                      : StatusOutcome::kStale;
  }
  auto job = store_.GetJob(campaign->id, ordinal);
  if (!job) {
    detail = "campaign " + campaign->spec.name + " has no job " + std::to_string(ordinal);
    return job.error().code() == Code::kNotFound ? StatusOutcome::kUnknownJob
                                                 : StatusOutcome::kStale;
  }
  if (job->device_id != device) {
    detail = "job " + std::to_string(ordinal) + " of " + campaign->spec.name +
             " belongs to another device";
    return StatusOutcome::kNotThisDevice;
  }
  if (job->state != store::JobState::kNotified && job->state != store::JobState::kEnrolled) {
    detail = "job is " + std::string(store::JobStateName(job->state));
    return StatusOutcome::kStale;
  }
  std::string reason = j.contains("reason") ? Sanitize(j["reason"].get<std::string>()) : "";
  JobStep step = StepForFailure(*campaign, *job, "device: " + (reason.empty() ? "failed" : reason),
                                clock_.NowUnix(), jitter_);
  auto committed = store_.Commit(JobTransition(*campaign, *job, step, actor_));
  if (!committed) {
    detail = committed.error().code() == Code::kAborted ? "the job moved on meanwhile"
                                                        : committed.error().ToString();
    return StatusOutcome::kStale;
  }
  detail = "job " + std::to_string(ordinal) + " of " + campaign->spec.name + " is " +
           std::string(store::JobStateName(step.to)) + " (" + reason + ")";
  return StatusOutcome::kApplied;
}

}  // namespace iotpki::campaign
