// The rotation confirmation (docs/rotation.md, "The confirmation"):
//
//   POST /api/v1/devices/<device_id>/rotation   {"campaign", "job", "status", "reason"?}
//
// over mutual TLS. "installed" must come with the job's new certificate (new_serial), which
// proves that the new credential works end to end; then, in one transaction, the job becomes
// confirmed, the new certificate is recorded as in use, and every other working certificate of
// the device is revoked (superseded) through ca::PlanRevocation, each with its audit row.
// "failed" may come with any valid working certificate of the device (the agent reports with
// the old one after its rollback): the job goes back to pending with its retry delay, or fails
// after its last attempt, and the new certificate it never installed is revoked (superseded).
//
// The same serial confirming a confirmed job again is answered 200 with the job as it is (a
// device whose first answer was lost retries); anything else on a final job is 409.
#include <nlohmann/json.hpp>

#include "iotpki/ca/revocation.h"
#include "iotpki/campaign/waves.h"
#include "iotpki/common/strings.h"
#include "iotpki/enroll/errors.h"
#include "iotpki/enroll/service.h"
#include "iotpki/x509/profile.h"

namespace iotpki::enroll {
namespace {

using store::JobState;

constexpr size_t kMaxReasonBytes = 300;

bool Final(JobState s) { return s == JobState::kConfirmed || s == JobState::kFailed; }

}  // namespace

Result<EnrollService::Confirmation> EnrollService::ParseConfirmation(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Fail(Code::kInvalidArgument, "the body is not a JSON object");
  Confirmation c;
  if (!j.contains("campaign") || !j["campaign"].is_string() ||
      j["campaign"].get<std::string>().empty() || j["campaign"].get<std::string>().size() > 128) {
    return Fail(Code::kInvalidArgument, "\"campaign\" must be the campaign's name (a string)");
  }
  c.campaign = j["campaign"].get<std::string>();
  if (!j.contains("job") || !j["job"].is_number_integer() || j["job"].get<int64_t>() < 0) {
    return Fail(Code::kInvalidArgument, "\"job\" must be the job's number (an integer >= 0)");
  }
  c.job = j["job"].get<int64_t>();
  std::string status =
      j.contains("status") && j["status"].is_string() ? j["status"].get<std::string>() : "";
  if (status == "installed") {
    c.installed = true;
  } else if (status != "failed") {
    return Fail(Code::kInvalidArgument, "\"status\" must be \"installed\" or \"failed\"");
  }
  if (j.contains("reason")) {
    if (!j["reason"].is_string()) {
      return Fail(Code::kInvalidArgument, "\"reason\" must be a string");
    }
    c.reason = j["reason"].get<std::string>();
    if (c.reason.size() > kMaxReasonBytes || !IsValidUtf8(c.reason)) {
      return Fail(Code::kInvalidArgument, "\"reason\" must be UTF-8 of at most 300 bytes");
    }
    for (char& ch : c.reason) {
      if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
    }
  }
  return c;
}

Result<nlohmann::json> EnrollService::Confirm(const server::Request& request) {
  const std::string& device_id = request.params.empty() ? std::string() : request.params[0];
  if (!x509::ValidateDeviceId(device_id)) {
    return Fail(Code::kNotFound, "no such device: a device id is 64 lowercase hex digits");
  }
  // Who is asking: a working certificate of this very device, valid and not revoked.
  if (!request.client_cert) {
    return Fail(Code::kUnauthenticated,
                "a TLS client certificate is required: the device's working certificate");
  }
  const server::ClientCertificate& cc = *request.client_cert;
  if (!cc.chain_valid) {
    return Fail(Code::kUnauthenticated, "client certificate refused: " + cc.verify_error);
  }
  if (cc.issuer_index != static_cast<int>(ClientCa::kOperational) || !cc.certificate) {
    return Fail(Code::kPermissionDenied,
                "a rotation is confirmed with the device's working certificate (LDevID), not "
                "its birth certificate");
  }
  const x509::Certificate& cert = *cc.certificate;
  if (cert.common_name() != device_id) {
    return Fail(Code::kPermissionDenied,
                "the client certificate belongs to another device than " + device_id);
  }
  std::optional<store::CertificateRecord> record;
  IOTPKI_CHECK(CheckRevocation(cert, &record));
  if (!record || record->profile != store::CertProfile::kLDevId || record->device_id != device_id) {
    return Fail(Code::kPermissionDenied,
                "the client certificate is not a working certificate this CA issued to device " +
                    device_id);
  }
  IOTPKI_TRY(Confirmation in, ParseConfirmation(request.body));
  const std::string serial = cert.serial_hex();

  // The job's state decides; a concurrent writer (the scheduler timing the job out, say) makes
  // the compare-and-set fail, and the decision is taken again on the fresh state.
  for (int attempt = 0;; ++attempt) {
    auto campaign = authority_.store().GetCampaign(in.campaign);
    if (!campaign) {
      if (campaign.error().code() == Code::kNotFound) {
        return Fail(Code::kNotFound, "no campaign named '" + in.campaign + "'");
      }
      return Fail(std::move(campaign).error());
    }
    auto job = authority_.store().GetJob(campaign->id, in.job);
    if (!job && job.error().code() != Code::kNotFound) return Fail(std::move(job).error());
    if (!job || job->device_id != device_id) {
      return Fail(Code::kNotFound, "campaign '" + in.campaign + "' has no job " +
                                       std::to_string(in.job) + " for device " + device_id);
    }
    nlohmann::json answer = {{"campaign", in.campaign}, {"job", in.job}};
    if (in.installed && job->state == JobState::kConfirmed && job->new_serial == serial) {
      answer["state"] = "confirmed";  // a retry of a confirmation whose answer was lost
      return answer;
    }
    if (Final(job->state)) {
      return Fail(Code::kAlreadyExists, "job " + std::to_string(in.job) + " is " +
                                            std::string(store::JobStateName(job->state)) +
                                            " already (final)");
    }
    if (campaign->state == store::CampaignState::kCancelled ||
        campaign->state == store::CampaignState::kDone) {
      return Fail(Code::kAborted, "campaign '" + in.campaign + "' is " +
                                      std::string(store::CampaignStateName(campaign->state)));
    }
    IOTPKI_TRY(auto certs, authority_.store().ListCertificatesForDevice(device_id));
    int64_t now = authority_.clock().NowUnix();
    store::WriteBatch batch;
    std::vector<std::string> revoked;
    campaign::JobStep step;
    if (in.installed) {
      if (job->old_serial == serial) {
        return Fail(Code::kPermissionDenied,
                    "confirm with the new certificate: this is the certificate the job replaces");
      }
      if (!job->new_serial) {
        return Fail(Code::kAborted, "job " + std::to_string(in.job) +
                                        " has no new certificate yet: re-enroll first");
      }
      if (*job->new_serial != serial) {
        return Fail(Code::kPermissionDenied,
                    "confirm with the job's new certificate (" + *job->new_serial + ")");
      }
      step = {.to = JobState::kConfirmed,
              .attempts = job->attempts,
              .next_attempt_at = job->next_attempt_at,
              .new_serial = serial};
      batch = campaign::JobTransition(*campaign, *job, step, options_.actor);
      batch.MarkCertificateUsed(serial);
      for (const auto& c : certs) {
        if (c.profile != store::CertProfile::kLDevId || c.status != store::CertStatus::kValid ||
            c.serial == serial) {
          continue;
        }
        ca::PlanRevocation(batch, c, store::RevocationReason::kSuperseded, now, options_.actor);
        revoked.push_back(c.serial);
      }
    } else {
      if (job->state == JobState::kPending) {
        return Fail(Code::kAborted, "job " + std::to_string(in.job) +
                                        " is not awaiting an answer (pending its next attempt)");
      }
      std::string error = "device: " + (in.reason.empty() ? "install failed" : in.reason);
      step = campaign::StepForFailure(*campaign, *job, error, now, jitter_);
      batch = campaign::JobTransition(*campaign, *job, step, options_.actor);
      // The certificate the device did not install will never be used: retire it now rather
      // than leave a valid credential without a key holder.
      for (const auto& c : certs) {
        if (job->new_serial && c.serial == *job->new_serial && c.serial != serial &&
            c.status == store::CertStatus::kValid) {
          ca::PlanRevocation(batch, c, store::RevocationReason::kSuperseded, now, options_.actor);
          revoked.push_back(c.serial);
        }
      }
    }
    auto committed = committer_.Commit(batch);
    if (!committed) {
      if (committed.error().code() == Code::kAborted && attempt < 2) continue;
      return Fail(std::move(committed).error());
    }
    answer["state"] = std::string(store::JobStateName(step.to));
    if (!step.error.empty()) answer["last_error"] = step.error;
    if (step.to == JobState::kPending) answer["next_attempt_at"] = FormatUtc(step.next_attempt_at);
    answer["revoked"] = revoked;
    return answer;
  }
}

server::Response EnrollService::ConfirmRotation(const server::Request& request) {
  if (!HasMediaType(request.content_type, "application/json")) {
    CountRefusal("rotation", Error(Code::kInvalidArgument, "media type"));
    return UnsupportedMediaType("application/json", ErrorFormat::kJson, request);
  }
  auto answer = Confirm(request);
  if (!answer) {
    CountRefusal("rotation", answer.error());
    return ErrorResponse(answer.error(), ErrorFormat::kJson, request);
  }
  metrics_
      .GetCounter("iotpki_rotation_answers_total", "Rotation answers accepted from devices",
                  {{"state", (*answer)["state"].get<std::string>()}})
      .Inc();
  return {.status = 200,
          .content_type = "application/json",
          .body = answer->dump() + "\n",
          .log = {.device_id = request.params.empty() ? "" : request.params[0]}};
}

// The jobs a new working certificate moves on, in the issuance's own transaction: the device's
// notified (or enrolled, when it re-enrolls once more) jobs record the certificate as their
// new_serial. A pending job of a wave already started moves too, as an attempt of its own (the
// one-shot `iotpki-agent rotate` an operator runs without MQTT): its confirmation is then
// awaited for the retry delay. Jobs of waves not yet started stay as they are.
Result<store::WriteBatch> EnrollService::JobsEnrolled(const std::string& device_id,
                                                      const std::string& serial) {
  store::WriteBatch batch;
  IOTPKI_TRY(auto jobs, authority_.store().ListOpenJobsForDevice(device_id));
  if (jobs.empty()) return batch;
  IOTPKI_TRY(auto campaigns, authority_.store().ListCampaigns());
  int64_t now = authority_.clock().NowUnix();
  for (const auto& job : jobs) {
    if (job.state == JobState::kPending && job.next_attempt_at >= store::kNotYetDue) continue;
    for (const auto& c : campaigns) {
      if (c.id != job.campaign_id) continue;
      campaign::JobStep step{.to = JobState::kEnrolled,
                             .attempts = job.attempts,
                             .next_attempt_at = job.next_attempt_at,
                             .new_serial = serial};
      if (job.state == JobState::kPending) {
        step.attempts = job.attempts + 1;
        step.next_attempt_at =
            now + campaign::RetryDelay(c.spec.retry_after, step.attempts, jitter_);
      }
      batch.Append(campaign::JobTransition(c, job, step, options_.actor));
    }
  }
  return batch;
}

}  // namespace iotpki::enroll
