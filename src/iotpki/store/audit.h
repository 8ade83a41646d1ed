// The audit log's hash chain: how a row's hash is computed (shared by every backend, which must
// produce identical chains) and how a chain is verified.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/store/store.h"

namespace iotpki::store {

inline constexpr size_t kAuditHashSize = 32;

// hash = SHA-256(prev_hash || u64be(seq) || i64be(time) || f(actor) || f(action) || f(subject)
//                || f(details)),  where f(s) = u32be(byte length of s) || s.
// Every field is fixed-width or length-prefixed, so no two different rows serialize alike.
// prev_hash is the previous row's hash, or 32 zero bytes for seq 1.
Bytes ComputeAuditHash(ByteView prev_hash, int64_t seq, int64_t time, const AuditEvent& event);

enum class AuditProblem {
  kNone,
  kSeqGap,            // A row is missing (or seqs do not start at 1).
  kPrevHashMismatch,  // prev_hash is not the previous row's hash.
  kHashMismatch,      // The row's contents do not hash to its stored hash.
  kAnchorMismatch,    // The row at an anchor's seq does not have the anchor's hash, or the log
                      // ends before it (rows were edited and the chain recomputed, or cut off).
};

// An external anchor: the seq and hash of a row, kept by the operator outside the database (a
// ticket, a log server, paper). Text form "SEQ:HASH" (decimal seq, 64 lowercase hex digits), as
// `iotpki audit head` prints it. Whoever can rewrite the database can recompute the whole chain;
// they cannot change an anchor they never saw.
struct AuditAnchor {
  int64_t seq = 0;
  Bytes hash;
};
std::string FormatAuditAnchor(const AuditAnchor& anchor);
// InvalidArgument saying the expected form for anything but SEQ:HASH with seq >= 1.
Result<AuditAnchor> ParseAuditAnchor(std::string_view text);

// The latest row of the log (nullopt for an empty log), found with O(log n) one-row reads.
Result<std::optional<AuditRecord>> ReadAuditHead(Store& store);

// The outcome of a verification. A broken chain is a verdict, not an error.
struct AuditVerdict {
  bool intact = true;
  int64_t rows_checked = 0;
  // Last seq checked and its hash, when intact: record them elsewhere (a ticket, a log server)
  // to detect a later truncation of the tail, which no chain can reveal by itself.
  int64_t last_seq = 0;
  Bytes head_hash;
  // When broken: the first row that does not verify, and why.
  std::optional<int64_t> first_broken_seq;
  AuditProblem problem = AuditProblem::kNone;
  std::string explanation;  // One line for operators: "row 17: hash does not match ...".
};

// Reads the whole log in pages of `page_size` rows (memory stays bounded) and recomputes the
// chain; the row at each anchor's seq must have that anchor's hash. Error only if the log cannot
// be read.
// `cancel`, when given, is read before each page: once it is true the verification stops there
// with Aborted, so a server shutting down does not wait for a whole log of millions of rows.
Result<AuditVerdict> VerifyAuditChain(Store& store, size_t page_size = 1000,
                                      std::span<const AuditAnchor> anchors = {},
                                      const std::atomic<bool>* cancel = nullptr);

// A write that an operation could not do but went on without: a refusal's audit row (the
// refusal is still the answer), the replay table's prune. Never silent: logged at error level as
// event "audit.write_failed" with `what` and the error (message and detail; never a secret), and
// counted for the process. `iotpki serve` also counts it in /metrics
// (iotpki_audit_write_failures_total{what=...}).
void ReportAuditWriteFailure(std::string_view what, const Error& error);
// How many ReportAuditWriteFailure calls this process made.
uint64_t AuditWriteFailures();

}  // namespace iotpki::store
