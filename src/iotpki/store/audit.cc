#include "iotpki/store/audit.h"

#include <atomic>
#include <string_view>

#include "iotpki/common/log.h"
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

namespace {
std::atomic<uint64_t> audit_write_failures{0};
}  // namespace

void ReportAuditWriteFailure(std::string_view what, const Error& error) {
  audit_write_failures.fetch_add(1, std::memory_order_relaxed);
  log::Error("audit.write_failed", {{"what", what},
                                    {"code", CodeName(error.code())},
                                    {"error", error.message()},
                                    {"detail", error.detail()}});
}

uint64_t AuditWriteFailures() { return audit_write_failures.load(std::memory_order_relaxed); }

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

std::string FormatAuditAnchor(const AuditAnchor& anchor) {
  return std::to_string(anchor.seq) + ":" + ToHex(anchor.hash);
}

Result<AuditAnchor> ParseAuditAnchor(std::string_view text) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                "audit anchor '" + std::string(text.substr(0, 80)) +
                    "' is not SEQ:HASH (a row number and 64 hex digits, as iotpki audit head "
                    "prints them)");
  };
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 18) return bad();
  AuditAnchor anchor;
  for (char c : text.substr(0, colon)) {
    if (c < '0' || c > '9') return bad();
    anchor.seq = anchor.seq * 10 + (c - '0');
  }
  std::string_view hex = text.substr(colon + 1);
  auto hash = FromHex(hex);
  if (anchor.seq < 1 || !hash || hash->size() != kAuditHashSize) return bad();
  anchor.hash = std::move(*hash);
  return anchor;
}

Result<std::optional<AuditRecord>> ReadAuditHead(Store& store) {
  IOTPKI_TRY(auto first, store.ReadAudit(1, 1));
  if (first.empty()) return std::optional<AuditRecord>();
  // Seqs have no gaps (a gap is what VerifyAuditChain reports): double until past the end, then
  // bisect between the last seq present and the first absent one.
  int64_t present = first.front().seq, absent = present + 1;
  for (;;) {
    IOTPKI_TRY(auto rows, store.ReadAudit(absent, 1));
    if (rows.empty()) break;
    present = rows.front().seq;
    absent = present * 2;
  }
  while (absent - present > 1) {
    int64_t mid = present + (absent - present) / 2;
    IOTPKI_TRY(auto rows, store.ReadAudit(mid, 1));
    if (rows.empty()) {
      absent = mid;
    } else {
      present = rows.front().seq;
      if (present >= absent) break;
    }
  }
  IOTPKI_TRY(auto head, store.ReadAudit(present, 1));
  if (head.empty()) return Fail(Code::kInternal, "the audit log changed while it was read");
  return std::optional<AuditRecord>(std::move(head.front()));
}

Result<AuditVerdict> VerifyAuditChain(Store& store, size_t page_size,
                                      std::span<const AuditAnchor> anchors,
                                      const std::atomic<bool>* cancel) {
  AuditVerdict verdict;
  Bytes prev(kAuditHashSize, 0);
  int64_t expected_seq = 1;
  for (;;) {
    if (cancel != nullptr && cancel->load()) {
      return Fail(Code::kAborted, "audit verification cancelled",
                  "stopped before row " + std::to_string(expected_seq));
    }
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
      for (const AuditAnchor& anchor : anchors) {
        if (anchor.seq == row.seq && anchor.hash != row.hash) {
          return Broken(std::move(verdict), row.seq, AuditProblem::kAnchorMismatch,
                        "hash " + ToHex(row.hash) + " is not the anchored " + ToHex(anchor.hash) +
                            " (rows up to here were altered and the chain recomputed)");
        }
      }
      prev = row.hash;
      verdict.last_seq = row.seq;
      ++verdict.rows_checked;
      ++expected_seq;
    }
    if (rows.size() < page_size) break;
  }
  for (const AuditAnchor& anchor : anchors) {
    if (anchor.seq > verdict.last_seq) {
      return Broken(std::move(verdict), anchor.seq, AuditProblem::kAnchorMismatch,
                    "the anchored row is missing: the log ends at row " +
                        std::to_string(verdict.last_seq) + " (rows were removed)");
    }
  }
  verdict.head_hash = verdict.rows_checked == 0 ? Bytes{} : prev;
  return verdict;
}

}  // namespace iotpki::store
