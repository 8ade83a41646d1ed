// Revocation: the one place that turns "revoke these certificates" into store writes. Every
// revocation is committed together with its audit row (action cert.revoke, subject the serial
// in lowercase hex, details {"reason", "revoked_at", "actor", ...}), and the certificate row's
// revoked_at is the revoked_at of that row: `iotpki audit verify` cross-checks the two.
//
// A revocation is final (no certificateHold). Revoking a certificate that is revoked already is
// never done silently: the single-certificate and per-device forms refuse with
// FailedPrecondition, the batch form skips it and counts it (so that a re-run resumes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/store.h"

namespace iotpki::ca {

// The reasons an operator may give (RFC 5280 names): keyCompromise, superseded,
// cessationOfOperation, affiliationChanged, unspecified. InvalidArgument, listing them, for
// anything else.
Result<store::RevocationReason> ParseOperatorReason(std::string_view name);

// Adds the revocation of `cert` at `revoked_at` and its cert.revoke audit row to `batch`.
void PlanRevocation(store::WriteBatch& batch, const store::CertificateRecord& cert,
                    store::RevocationReason reason, int64_t revoked_at, std::string_view actor);

struct Revoked {
  std::vector<store::CertificateRecord> certificates;  // as they were before, in order
  int64_t revoked_at = 0;
};

// One certificate. NotFound for an unknown serial; FailedPrecondition (naming when and why) if it
// is revoked already.
Result<Revoked> RevokeSerial(store::Store& store, const Clock& clock, std::string_view serial_hex,
                             store::RevocationReason reason, std::string_view actor);

// The certificates of a device: its working certificates (every valid LDevID: the current one
// and a renewal not yet in use), or with `all` its IDevID too. NotFound for an unknown device;
// FailedPrecondition if none of them is valid.
Result<Revoked> RevokeDevice(store::Store& store, const Clock& clock, std::string_view device_id,
                             bool all, store::RevocationReason reason, std::string_view actor);

// State decommissioned and every valid certificate revoked (cessationOfOperation), with a
// device.decommission audit row, in one transaction. FailedPrecondition if the device is
// decommissioned already.
Result<Revoked> Decommission(store::Store& store, const Clock& clock, std::string_view device_id,
                             std::string_view actor);

// A whole factory batch: every valid certificate of every device of `batch`, committed
// `group_size` devices per transaction. Resumable: certificates revoked already are skipped (and
// counted), so running it again after an interruption finishes the job.
struct BatchProgress {
  int64_t devices_total = 0;  // devices in the batch
  int64_t devices_done = 0;
  int64_t certificates_revoked = 0;  // by this run (or, for a dry run, that would be)
  int64_t certificates_skipped = 0;  // revoked before this run
};
Result<BatchProgress> RevokeBatch(store::Store& store, const Clock& clock, std::string_view batch,
                                  store::RevocationReason reason, std::string_view actor,
                                  bool dry_run, size_t group_size = 1000,
                                  const std::function<void(const BatchProgress&)>& progress = {});

}  // namespace iotpki::ca
