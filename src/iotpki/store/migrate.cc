#include "iotpki/store/migrate.h"

#include "iotpki/store/audit.h"
#include "iotpki/store/sql/sql_store.h"

namespace iotpki::store {

Result<MigrateReport> MigrateStore(std::string_view from_url, std::string_view to_url,
                                   const Clock& clock, const OpenOptions& options) {
  IOTPKI_CHECK(ParseStoreUrl(from_url));
  IOTPKI_CHECK(ParseStoreUrl(to_url));
  if (from_url == to_url) {
    return Fail(Code::kInvalidArgument, "--from and --to name the same store");
  }
  IOTPKI_TRY(auto from, Open(from_url, clock, options));
  IOTPKI_TRY(AuditVerdict before, VerifyAuditChain(*from));
  if (!before.intact) {
    return Fail(Code::kDataLoss,
                "the source's audit log is broken, nothing copied: " + before.explanation);
  }
  IOTPKI_TRY(auto to, Open(to_url, clock, options));
  auto* source = dynamic_cast<sql::SqlStore*>(from.get());
  auto* target = dynamic_cast<sql::SqlStore*>(to.get());
  if (source == nullptr || target == nullptr) {
    return Fail(Code::kInternal, "store migrate needs SQL stores");
  }
  IOTPKI_TRY(auto counts, source->CopyInto(*target));
  IOTPKI_TRY(AuditVerdict after, VerifyAuditChain(*to));
  if (!after.intact || after.rows_checked != before.rows_checked ||
      after.head_hash != before.head_hash) {
    return Fail(Code::kDataLoss, "the copied audit log does not verify against the source's",
                after.intact ? "head " + std::to_string(after.last_seq) + " vs " +
                                   std::to_string(before.last_seq)
                             : after.explanation);
  }
  return MigrateReport{.tables = std::move(counts.tables),
                       .audit_rows = after.rows_checked,
                       .audit_head_seq = after.last_seq,
                       .audit_head_hash = after.head_hash};
}

}  // namespace iotpki::store
