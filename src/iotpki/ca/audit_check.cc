#include "iotpki/ca/audit_check.h"

#include <nlohmann/json.hpp>

#include "iotpki/crypto/primitives.h"

namespace iotpki::ca {
namespace {

void Problem(CrossCheckVerdict& v, std::string line) {
  v.consistent = false;
  if (v.problems.size() < kMaxProblems) v.problems.push_back(std::move(line));
}

// The JSON details of a row, or null when they are not a JSON object.
nlohmann::json Details(const store::AuditRecord& row) {
  auto j = nlohmann::json::parse(row.details, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : nlohmann::json();
}

std::string Text(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string At(const store::AuditRecord& row) {
  return "audit row " + std::to_string(row.seq) + " (" + row.action + ")";
}

Result<void> CheckIssue(store::Store& store, const store::AuditRecord& row, CrossCheckVerdict& v) {
  nlohmann::json d = Details(row);
  std::string serial = Text(d, "cert_serial");
  if (serial.empty()) serial = row.subject;  // server certificates
  auto cert = store.GetCertificate(serial);
  if (!cert) {
    if (cert.error().code() != Code::kNotFound) return Fail(std::move(cert).error());
    Problem(v, At(row) + ": certificate " + serial + " is not in the certificates table");
    return {};
  }
  std::string sha = Text(d, "sha256");
  if (!sha.empty() && sha != ToHex(crypto::Sha256(cert->der))) {
    Problem(v, At(row) + ": certificate " + serial + "'s DER is not the one issued (sha256)");
  }
  return {};
}

Result<void> CheckRevoke(store::Store& store, const store::AuditRecord& row, CrossCheckVerdict& v) {
  nlohmann::json d = Details(row);
  auto cert = store.GetCertificate(row.subject);
  if (!cert) {
    if (cert.error().code() != Code::kNotFound) return Fail(std::move(cert).error());
    Problem(v, At(row) + ": certificate " + row.subject + " is not in the certificates table");
    return {};
  }
  if (cert->status != store::CertStatus::kRevoked) {
    Problem(v, At(row) + ": certificate " + cert->serial +
                   " is revoked in the log but its row says " +
                   std::string(store::CertStatusName(cert->status)));
    return {};
  }
  std::string reason = Text(d, "reason");
  auto at = d.find("revoked_at");
  bool reason_ok =
      cert->revocation_reason && reason == store::RevocationReasonName(*cert->revocation_reason);
  bool at_ok = at != d.end() && at->is_number_integer() && cert->revoked_at &&
               at->get<int64_t>() == *cert->revoked_at;
  if (!reason_ok || !at_ok) {
    Problem(v, At(row) + ": certificate " + cert->serial +
                   "'s revocation reason or time differs from the log's");
  }
  return {};
}

}  // namespace

Result<CrossCheckVerdict> CrossCheckCertificates(store::Store& store, size_t page_size) {
  CrossCheckVerdict v;
  for (int64_t from = 1;;) {
    IOTPKI_TRY(auto rows, store.ReadAudit(from, page_size));
    for (const auto& row : rows) {
      if (row.action == "ca.init") {
        v.accounted += 3;
      } else if (row.action == "cert.issue") {
        ++v.accounted;
        IOTPKI_CHECK(CheckIssue(store, row, v));
      } else if (row.action == "mfg.issue") {
        nlohmann::json d = Details(row);
        auto devices = d.find("devices");
        // A malformed row was altered after the chain was computed, or the chain is broken:
        // VerifyAuditChain reports that.
        if (devices != d.end() && devices->is_number_unsigned()) {
          v.accounted += devices->get<int64_t>();
        }
      } else if (row.action == "cert.revoke") {
        ++v.revocation_rows;
        IOTPKI_CHECK(CheckRevoke(store, row, v));
      }
      from = row.seq + 1;
    }
    if (rows.size() < page_size) break;
  }
  std::string after;
  for (;;) {
    IOTPKI_TRY(auto certs, store.ListCertificates(after, page_size));
    for (const auto& c : certs) {
      ++v.certificates;
      if (c.status == store::CertStatus::kRevoked) ++v.revoked;
    }
    if (certs.size() < page_size) break;
    after = certs.back().serial;
  }
  if (v.certificates != v.accounted) {
    Problem(v, "the certificates table holds " + std::to_string(v.certificates) +
                   " certificates; the audit log issued " + std::to_string(v.accounted) +
                   " (rows were added or removed outside the CA)");
  }
  if (v.revoked != v.revocation_rows) {
    Problem(v, std::to_string(v.revoked) + " certificates are revoked; the audit log revoked " +
                   std::to_string(v.revocation_rows) + " (a status was changed outside the CA)");
  }
  return v;
}

std::string CheckpointMessage(const store::AuditAnchor& anchor) {
  return "iotpki-audit-checkpoint-v1\n" + store::FormatAuditAnchor(anchor) + "\n";
}

Result<store::AuditAnchor> WriteCheckpoint(store::Store& store, const crypto::Signer& audit_key,
                                           const std::string& actor) {
  IOTPKI_TRY(auto head, store::ReadAuditHead(store));
  if (!head) return Fail(Code::kFailedPrecondition, "the audit log is empty: nothing to sign");
  store::AuditAnchor anchor{.seq = head->seq, .hash = head->hash};
  IOTPKI_TRY(Bytes signature, audit_key.Sign(AsBytes(CheckpointMessage(anchor))));
  store::WriteBatch batch;
  batch.AppendAudit(
      {.actor = actor,
       .action = "audit.checkpoint",
       .subject = std::to_string(anchor.seq),
       .details = nlohmann::ordered_json{{"seq", anchor.seq},
                                         {"hash", ToHex(anchor.hash)},
                                         {"signature", ToHex(signature)},
                                         {"key", ToHex(audit_key.public_key().Fingerprint())}}
                      .dump()});
  IOTPKI_CHECK(store.Commit(batch));
  return anchor;
}

Result<CheckpointVerdict> VerifyCheckpoints(store::Store& store,
                                            const crypto::PublicKey& audit_public_key,
                                            size_t page_size) {
  CheckpointVerdict v;
  auto bad = [&](const store::AuditRecord& row, const std::string& why) {
    v.valid = false;
    v.problem = "audit checkpoint at row " + std::to_string(row.seq) + ": " + why;
    return v;
  };
  for (int64_t from = 1;;) {
    IOTPKI_TRY(auto rows, store.ReadAudit(from, page_size));
    for (const auto& row : rows) {
      from = row.seq + 1;
      if (row.action != "audit.checkpoint") continue;
      nlohmann::json d = Details(row);
      auto seq = d.find("seq");
      auto hash = FromHex(Text(d, "hash"));
      auto signature = FromHex(Text(d, "signature"));
      if (seq == d.end() || !seq->is_number_integer() || !hash || !signature) {
        return bad(row, "malformed details");
      }
      store::AuditAnchor anchor{.seq = seq->get<int64_t>(), .hash = *hash};
      if (anchor.seq < 1 || anchor.seq >= row.seq) return bad(row, "names a later row");
      if (!audit_public_key.Verify(AsBytes(CheckpointMessage(anchor)), *signature,
                                   crypto::DigestAlgorithm::kSha256)) {
        return bad(row, "the signature does not verify with the audit key");
      }
      IOTPKI_TRY(auto signed_row, store.ReadAudit(anchor.seq, 1));
      if (signed_row.empty() || signed_row.front().seq != anchor.seq ||
          signed_row.front().hash != anchor.hash) {
        return bad(row, "row " + std::to_string(anchor.seq) +
                            " no longer has the signed hash (the chain was rewritten)");
      }
      ++v.checkpoints;
      v.last_checkpoint_seq = anchor.seq;
    }
    if (rows.size() < page_size) break;
  }
  return v;
}

}  // namespace iotpki::ca
