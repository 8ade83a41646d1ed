#include "iotpki/store/audit.h"

#include <string_view>

#include "iotpki/crypto/primitives.h"

namespace iotpki::store {
namespace {

void AppendU64(Bytes& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void AppendField(Bytes& out, std::string_view s) {
  auto n = static_cast<uint32_t>(s.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(n >> shift));
  out.insert(out.end(), s.begin(), s.end());
}

AuditVerdict Broken(AuditVerdict verdict, int64_t seq, AuditProblem problem,
                    std::string explanation) {
  verdict.intact = false;
  verdict.first_broken_seq = seq;
  verdict.problem = problem;
  verdict.explanation = "audit row " + std::to_string(seq) + ": " + explanation;
  verdict.head_hash.clear();
  return verdict;
}

}  // namespace

Bytes ComputeAuditHash(ByteView prev_hash, int64_t seq, int64_t time, const AuditEvent& event) {
  Bytes buf;
  buf.reserve(prev_hash.size() + 16 + 16 + event.actor.size() + event.action.size() +
              event.subject.size() + event.details.size());
  buf.insert(buf.end(), prev_hash.begin(), prev_hash.end());
  AppendU64(buf, static_cast<uint64_t>(seq));
  AppendU64(buf, static_cast<uint64_t>(time));
  AppendField(buf, event.actor);
  AppendField(buf, event.action);
  AppendField(buf, event.subject);
  AppendField(buf, event.details);
  return crypto::Sha256(buf);
}

Result<AuditVerdict> VerifyAuditChain(Store& store, size_t page_size) {
  AuditVerdict verdict;
  Bytes prev(kAuditHashSize, 0);
  int64_t expected_seq = 1;
  for (;;) {
    IOTPKI_TRY(auto rows, store.ReadAudit(expected_seq, page_size));
    for (const AuditRecord& row : rows) {
      if (row.seq != expected_seq) {
        return Broken(std::move(verdict), row.seq, AuditProblem::kSeqGap,
                      "expected seq " + std::to_string(expected_seq) + "; rows are missing");
      }
      if (row.prev_hash != prev) {
        return Broken(std::move(verdict), row.seq, AuditProblem::kPrevHashMismatch,
                      expected_seq == 1 ? "prev_hash of the first row is not all zeros"
                                        : "prev_hash does not match the hash of row " +
                                              std::to_string(expected_seq - 1));
      }
      Bytes want = ComputeAuditHash(row.prev_hash, row.seq, row.time,
                                    AuditEvent{row.actor, row.action, row.subject, row.details});
      if (row.hash != want) {
        return Broken(std::move(verdict), row.seq, AuditProblem::kHashMismatch,
                      "hash does not match the row's contents (the row was altered)");
      }
      prev = row.hash;
      verdict.last_seq = row.seq;
      ++verdict.rows_checked;
      ++expected_seq;
    }
    if (rows.size() < page_size) break;
  }
  verdict.head_hash = verdict.rows_checked == 0 ? Bytes{} : prev;
  return verdict;
}

}  // namespace iotpki::store
