// Versioned schema migrations of the PostgreSQL store. Private to the PostgreSQL store.
#pragma once

#include <cstdint>

#include "iotpki/common/error.h"
#include "iotpki/store/postgres/pg_db.h"

namespace iotpki::store::postgres {

// Applies every migration newer than the database, in one transaction that holds an advisory
// lock, so concurrent openers (several nodes starting at once) apply each migration once; DDL is
// transactional in PostgreSQL, so a failure leaves the schema as it was. On an up-to-date
// database it only reads. FailedPrecondition if the database was written by a newer build.
Result<void> Migrate(Connection& conn, int64_t now);

}  // namespace iotpki::store::postgres
