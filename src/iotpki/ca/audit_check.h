// What `iotpki audit verify` checks beyond the hash chain: that the certificates table agrees
// with the audit log (a row edited with SQL, say an UPDATE that un-revokes a certificate, is
// reported), and the audit key's signed checkpoints.
//
// The audit rows this relies on (docs/formats.md, "Audit rows"):
//   ca.init      the three CA certificates
//   cert.issue   one certificate: details.cert_serial (device certificates) or the subject
//                (server certificates) names it, details.sha256 is the SHA-256 of its DER
//   mfg.issue    details.devices IDevIDs of one factory group (named by its manifest)
//   cert.revoke  subject = the serial (lowercase hex); details holds at least
//                {"reason": RFC 5280 name as store::RevocationReasonName, "revoked_at": Unix s}
//   audit.checkpoint  details {"seq", "hash", "signature", "key"}: the audit key's ECDSA P-256
//                signature (DER, hex) over CheckpointMessage(seq, hash)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/store.h"

namespace iotpki::ca {

// A disagreement is a verdict, not an error; Error only if the store cannot be read.
struct CrossCheckVerdict {
  bool consistent = true;
  int64_t certificates = 0;           // rows in the certificates table
  int64_t revoked = 0;                // of which revoked
  int64_t accounted = 0;              // certificates the audit log issued
  int64_t revocation_rows = 0;        // cert.revoke rows
  std::vector<std::string> problems;  // one line each, the first kMaxProblems
};
inline constexpr size_t kMaxProblems = 20;

// Pages through the audit log, then the certificates table, `page_size` rows at a time: memory
// stays bounded whatever the fleet's size. Each cert.issue and cert.revoke row is checked
// against the certificate it names (one lookup each); the totals of issued and revoked
// certificates must match the table's.
Result<CrossCheckVerdict> CrossCheckCertificates(store::Store& store, size_t page_size = 1000);

// The bytes an audit checkpoint signs: "iotpki-audit-checkpoint-v1\n" SEQ ":" HASH "\n", SEQ in
// decimal, HASH 64 lowercase hex digits.
std::string CheckpointMessage(const store::AuditAnchor& anchor);

// Appends an audit.checkpoint row that signs the current head with `audit_key`. Returns the
// anchor it signed. FailedPrecondition for an empty log.
Result<store::AuditAnchor> WriteCheckpoint(store::Store& store, const crypto::Signer& audit_key,
                                           const std::string& actor);

struct CheckpointVerdict {
  bool valid = true;
  int64_t checkpoints = 0;
  int64_t last_checkpoint_seq = 0;  // the seq the newest checkpoint signed
  std::string problem;              // the first bad checkpoint, one line
};
// Every audit.checkpoint row: its signature verifies under `audit_public_key`, and the chain
// passes through the row it names (that row's hash is the signed hash). Run it on a chain that
// VerifyAuditChain found intact.
Result<CheckpointVerdict> VerifyCheckpoints(store::Store& store,
                                            const crypto::PublicKey& audit_public_key,
                                            size_t page_size = 1000);

}  // namespace iotpki::ca
