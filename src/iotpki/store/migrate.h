// `iotpki store migrate`: a whole store moved from one backend (or database) to another.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/open.h"

namespace iotpki::store {

struct MigrateReport {
  std::vector<std::pair<std::string, int64_t>> tables;  // rows copied, in copy order
  int64_t audit_rows = 0;
  int64_t audit_head_seq = 0;
  Bytes audit_head_hash;  // empty for an empty log
};

// Opens both stores (migrating their schemas to this build's), verifies the source's audit chain,
// copies every row into the target in one transaction (sql::SqlStore::CopyInto), then verifies
// the target's chain and that it ends at the source's head. Errors: InvalidArgument (a URL, or
// both naming the same store), FailedPrecondition (a non-empty target), DataLoss (a broken chain
// in the source, or a copy that does not verify), and those of opening either store.
Result<MigrateReport> MigrateStore(std::string_view from_url, std::string_view to_url,
                                   const Clock& clock, const OpenOptions& options = {});

}  // namespace iotpki::store
