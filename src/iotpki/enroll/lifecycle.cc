// The certificate lifecycle rules of enrollment, apart from the handlers' straight lines:
//
// Renewal is bound to the device's current working certificate. simplereenroll is accepted only
// with the newest valid LDevID of the device, or the one before it while the newest has not been
// seen in use (a device that crashed before installing its renewal is not stranded). The first
// time a device authenticates with an LDevID, that use is recorded (first_used_at) and every
// valid LDevID of the device issued before it is revoked (superseded), in one transaction (the
// renewal's own, or alone when the renewal is refused); a
// renewal revokes, in its issuance transaction, every other valid LDevID of the device (a newer
// one the device never installed). So a copied old LDevID stops working once its successor is
// used.
//
// Re-entry after expiry: a device whose working certificates have all ended (expired, or revoked
// for a reason other than keyCompromise) may enroll again with its IDevID, within
// policy.reentry_max_days_expired days of the end of the last of them; the issuance carries a
// cert.reentry audit row. A device with an LDevID revoked for keyCompromise may not.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "iotpki/ca/revocation.h"
#include "iotpki/enroll/service.h"

namespace iotpki::enroll {
namespace {

using store::CertificateRecord;
using store::CertProfile;
using store::CertStatus;

bool IsValidLdevid(const CertificateRecord& c) {
  return c.profile == CertProfile::kLDevId && c.status == CertStatus::kValid;
}

}  // namespace

Result<EnrollService::Renewal> EnrollService::BindRenewal(const Client& client) {
  // AuthorizeReenroll has established that the record is this device's LDevID.
  const std::string& serial = client.record->serial;
  IOTPKI_TRY(auto certs, authority_.store().ListCertificatesForDevice(client.device_id));
  auto self = std::find_if(certs.begin(), certs.end(),
                           [&](const CertificateRecord& c) { return c.serial == serial; });
  if (self == certs.end() || self->status != CertStatus::kValid) {
    return Fail(Code::kPermissionDenied, "client certificate refused: certificate revoked");
  }
  // Newer: issued in a later second. Ties (two certificates of one second) count as not newer,
  // so the rule never depends on the order of equal timestamps.
  int newer = 0;
  for (const auto& c : certs) {
    if (!IsValidLdevid(c) || c.not_before <= self->not_before) continue;
    if (c.first_used_at) {
      return Fail(Code::kPermissionDenied,
                  "client certificate refused: a newer working certificate of this device (" +
                      c.serial + ") is in use; renew with it");
    }
    ++newer;
  }
  if (newer >= 2) {
    return Fail(Code::kPermissionDenied,
                "client certificate refused: it is not the device's current working certificate "
                "nor the one before it");
  }
  int64_t now = authority_.clock().NowUnix();
  Renewal renewal;
  std::vector<std::string> revoked_now;
  if (!self->first_used_at) {
    // First use: the earlier working certificates are retired whatever this request's outcome:
    // in the renewal's transaction, or alone if the renewal is refused (SimpleReenroll).
    renewal.first_use.MarkCertificateUsed(serial);
    for (const auto& c : certs) {
      if (!IsValidLdevid(c) || c.serial == serial || c.not_before > self->not_before) continue;
      ca::PlanRevocation(renewal.first_use, c, store::RevocationReason::kSuperseded, now,
                         options_.actor);
      revoked_now.push_back(c.serial);
    }
  }
  // What the renewal replaces: every other working certificate still valid.
  for (const auto& c : certs) {
    if (!IsValidLdevid(c) || c.serial == serial ||
        std::find(revoked_now.begin(), revoked_now.end(), c.serial) != revoked_now.end()) {
      continue;
    }
    ca::PlanRevocation(renewal.replaced, c, store::RevocationReason::kSuperseded, now,
                       options_.actor);
  }
  return renewal;
}

Result<store::WriteBatch> EnrollService::CheckReentry(const std::string& device_id) {
  IOTPKI_TRY(auto certs, authority_.store().ListCertificatesForDevice(device_id));
  int64_t now = authority_.clock().NowUnix();
  const CertificateRecord* last = nullptr;  // the working certificate that ended last
  int64_t last_end = 0;
  for (const auto& c : certs) {
    if (c.profile != CertProfile::kLDevId) continue;
    if (c.status == CertStatus::kRevoked &&
        c.revocation_reason == store::RevocationReason::kKeyCompromise) {
      return Fail(Code::kPermissionDenied,
                  "device " + device_id + " may not enroll again: its working certificate " +
                      c.serial +
                      " was revoked for keyCompromise (an operator must investigate the device)");
    }
    // A device in service (a retry, or a second enrollment) is not re-entering.
    if (c.status == CertStatus::kValid && c.not_after > now) return store::WriteBatch();
    int64_t end = c.status == CertStatus::kRevoked && c.revoked_at
                      ? std::min(c.not_after, *c.revoked_at)
                      : c.not_after;
    if (last == nullptr || end > last_end) {
      last = &c;
      last_end = end;
    }
  }
  if (last == nullptr) return store::WriteBatch();  // the first enrollment
  int max_days = authority_.config().reentry_max_days_expired;
  if (max_days == 0) {
    return Fail(Code::kPermissionDenied,
                "device " + device_id +
                    " has no valid working certificate, and re-entry with the IDevID is disabled "
                    "(policy.reentry_max_days_expired = 0)");
  }
  int64_t days = (now - last_end) / 86400;
  if (now - last_end > int64_t{max_days} * 86400) {
    return Fail(Code::kPermissionDenied,
                "device " + device_id + ": its last working certificate ended " +
                    std::to_string(days) + " days ago, beyond the " + std::to_string(max_days) +
                    " days of policy.reentry_max_days_expired");
  }
  store::WriteBatch audit;
  audit.AppendAudit({.actor = options_.actor,
                     .action = "cert.reentry",
                     .subject = device_id,
                     .details = nlohmann::json{
                         {"previous_serial", last->serial},
                         {"previous_status", store::CertStatusName(last->status)},
                         {"ended_at", last_end},
                         {"days_since_end",
                          days}}.dump()});
  return audit;
}

}  // namespace iotpki::enroll
