#include "iotpki/ca/revocation.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

namespace iotpki::ca {
namespace {

using store::CertificateRecord;
using store::CertStatus;
using store::RevocationReason;

std::string Describe(const CertificateRecord& c) {
  std::string text = "certificate " + c.serial + " is already revoked";
  if (c.revocation_reason) {
    text += " (" + std::string(store::RevocationReasonName(*c.revocation_reason));
    if (c.revoked_at) text += ", " + FormatUtc(*c.revoked_at);
    text += ")";
  }
  return text;
}

// A concurrent writer may revoke one of ours between the read and the commit (Aborted): read
// and decide again, a few times.
constexpr int kAttempts = 3;

}  // namespace

Result<RevocationReason> ParseOperatorReason(std::string_view name) {
  for (RevocationReason r :
       {RevocationReason::kKeyCompromise, RevocationReason::kSuperseded,
        RevocationReason::kCessationOfOperation, RevocationReason::kAffiliationChanged,
        RevocationReason::kUnspecified}) {
    if (name == store::RevocationReasonName(r)) return r;
  }
  return Fail(Code::kInvalidArgument,
              "unknown revocation reason '" + std::string(name) +
                  "': use keyCompromise, superseded, cessationOfOperation, affiliationChanged or "
                  "unspecified");
}

void PlanRevocation(store::WriteBatch& batch, const CertificateRecord& cert,
                    RevocationReason reason, int64_t revoked_at, std::string_view actor) {
  nlohmann::json details = {{"reason", store::RevocationReasonName(reason)},
                            {"revoked_at", revoked_at},
                            {"actor", actor},
                            {"profile", store::CertProfileName(cert.profile)}};
  if (cert.device_id) details["device_id"] = *cert.device_id;
  batch.RevokeCertificate(cert.serial, reason, revoked_at);
  batch.AppendAudit({.actor = std::string(actor),
                     .action = "cert.revoke",
                     .subject = cert.serial,
                     .details = details.dump()});
}

Result<Revoked> RevokeSerial(store::Store& store, const Clock& clock, std::string_view serial_hex,
                             RevocationReason reason, std::string_view actor) {
  for (int attempt = 1;; ++attempt) {
    IOTPKI_TRY(CertificateRecord cert, store.GetCertificate(serial_hex));
    if (cert.status == CertStatus::kRevoked) {
      return Fail(Code::kFailedPrecondition, Describe(cert) + "; nothing changed");
    }
    Revoked out{.certificates = {cert}, .revoked_at = clock.NowUnix()};
    store::WriteBatch batch;
    PlanRevocation(batch, cert, reason, out.revoked_at, actor);
    auto committed = store.Commit(batch);
    if (committed) return out;
    if (committed.error().code() != Code::kAborted || attempt >= kAttempts) {
      return Fail(std::move(committed).error());
    }
  }
}

namespace {

std::vector<CertificateRecord> InScope(const std::vector<CertificateRecord>& certs, bool all) {
  std::vector<CertificateRecord> out;
  for (const auto& c : certs) {
    if (c.status != CertStatus::kValid) continue;
    if (all || c.profile == store::CertProfile::kLDevId) out.push_back(c);
  }
  return out;
}

}  // namespace

Result<Revoked> RevokeDevice(store::Store& store, const Clock& clock, std::string_view device_id,
                             bool all, RevocationReason reason, std::string_view actor) {
  for (int attempt = 1;; ++attempt) {
    IOTPKI_TRY(store::Device device, store.GetDevice(device_id));
    IOTPKI_TRY(auto certs, store.ListCertificatesForDevice(device.device_id));
    Revoked out{.certificates = InScope(certs, all), .revoked_at = clock.NowUnix()};
    if (out.certificates.empty()) {
      return Fail(Code::kFailedPrecondition,
                  "device " + device.device_id + " has no valid " +
                      (all ? "certificate" : "working certificate (LDevID)") +
                      " to revoke; nothing changed" +
                      (all ? "" : " (--all revokes its IDevID too)"));
    }
    store::WriteBatch batch;
    for (const auto& c : out.certificates) PlanRevocation(batch, c, reason, out.revoked_at, actor);
    auto committed = store.Commit(batch);
    if (committed) return out;
    if (committed.error().code() != Code::kAborted || attempt >= kAttempts) {
      return Fail(std::move(committed).error());
    }
  }
}

Result<Revoked> Decommission(store::Store& store, const Clock& clock, std::string_view device_id,
                             std::string_view actor) {
  for (int attempt = 1;; ++attempt) {
    IOTPKI_TRY(store::Device device, store.GetDevice(device_id));
    if (device.state == store::DeviceState::kDecommissioned) {
      return Fail(Code::kFailedPrecondition,
                  "device " + device.device_id + " is decommissioned already; nothing changed");
    }
    IOTPKI_TRY(auto certs, store.ListCertificatesForDevice(device.device_id));
    Revoked out{.certificates = InScope(certs, /*all=*/true), .revoked_at = clock.NowUnix()};
    store::WriteBatch batch;
    batch.UpdateDeviceState(device.device_id, device.state, store::DeviceState::kDecommissioned);
    nlohmann::json serials = nlohmann::json::array();
    for (const auto& c : out.certificates) serials.push_back(c.serial);
    batch.AppendAudit({.actor = std::string(actor),
                       .action = "device.decommission",
                       .subject = device.device_id,
                       .details = nlohmann::json{
                           {"from", store::DeviceStateName(device.state)},
                           {"revoked",
                            serials}}.dump()});
    for (const auto& c : out.certificates) {
      PlanRevocation(batch, c, RevocationReason::kCessationOfOperation, out.revoked_at, actor);
    }
    auto committed = store.Commit(batch);
    if (committed) return out;
    if (committed.error().code() != Code::kAborted || attempt >= kAttempts) {
      return Fail(std::move(committed).error());
    }
  }
}

Result<BatchProgress> RevokeBatch(store::Store& store, const Clock& clock, std::string_view batch,
                                  RevocationReason reason, std::string_view actor, bool dry_run,
                                  size_t group_size,
                                  const std::function<void(const BatchProgress&)>& progress) {
  if (batch.empty()) return Fail(Code::kInvalidArgument, "--batch is empty");
  group_size = std::clamp<size_t>(group_size, 1, store::kMaxPageSize);
  store::DeviceFilter filter{.batch = std::string(batch)};
  BatchProgress p;
  IOTPKI_TRY(p.devices_total, store.CountDevices(filter));
  if (p.devices_total == 0) {
    return Fail(Code::kNotFound, "no device in batch '" + std::string(batch) + "'");
  }
  std::string cursor;
  do {
    IOTPKI_TRY(store::DevicePage page, store.ListDevices(filter, group_size, cursor));
    // One group: read its devices' certificates, then revoke the valid ones in one transaction.
    for (int attempt = 1;; ++attempt) {
      BatchProgress group;
      store::WriteBatch writes;
      int64_t now = clock.NowUnix();
      for (const auto& listed : page.devices) {
        IOTPKI_TRY(auto certs, store.ListCertificatesForDevice(listed.device.device_id));
        for (const auto& c : certs) {
          if (c.status == CertStatus::kRevoked) {
            ++group.certificates_skipped;
            continue;
          }
          ++group.certificates_revoked;
          if (!dry_run) PlanRevocation(writes, c, reason, now, actor);
        }
      }
      if (!writes.empty()) {
        auto committed = store.Commit(writes);
        if (!committed) {
          if (committed.error().code() == Code::kAborted && attempt < kAttempts) continue;
          return Fail(std::move(committed).error());
        }
      }
      p.certificates_revoked += group.certificates_revoked;
      p.certificates_skipped += group.certificates_skipped;
      break;
    }
    p.devices_done += static_cast<int64_t>(page.devices.size());
    if (progress) progress(p);
    cursor = page.next_cursor;
  } while (!cursor.empty());
  return p;
}

}  // namespace iotpki::ca
